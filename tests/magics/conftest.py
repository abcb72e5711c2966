"""Fixtures for the magics' tests: a cell runner that captures outputs, and the loaded magics object."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.utils.capture import capture_output

from .helpers import CellRun, magics_of


@pytest.fixture
def run(shell: Any) -> Any:
    """Run a cell in the real shell (as a user would), capturing its outputs."""

    def run_cell(source: str) -> CellRun:
        with capture_output() as captured:
            result = shell.run_cell(source, store_history=True)
        return CellRun(result, captured)

    return run_cell


@pytest.fixture
def magics(shell: Any) -> Any:
    """The shell's AmpProfileMagics (its client points at the session's emulator)."""
    return magics_of(shell)

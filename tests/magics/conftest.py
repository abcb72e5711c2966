"""Fixtures for the magics' tests: the loaded magics object (the cell runner ``run`` is in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import magics_of


@pytest.fixture
def magics(shell: Any) -> Any:
    """The shell's AmpProfileMagics (its client points at the session's emulator)."""
    return magics_of(shell)

"""Fixtures for the form's tests: the loaded magics, a form on the real shell, and a clean widget registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def magics(shell: Any) -> Any:
    """The shell's AmpProfileMagics (its client points at the session's emulator)."""
    return next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")


@pytest.fixture
def form(shell: Any) -> Iterator[Any]:
    """A fresh form from ``%ampprofile_form``, waited for and closed after the test."""
    created = shell.run_line_magic("ampprofile_form", "")
    yield created
    assert created.wait(timeout=30), "a form lookup was still running at teardown"
    created.widget.close()


@pytest.fixture(autouse=True)
def _close_widgets() -> Iterator[None]:
    """Widgets of one test must not linger in ipywidgets' registry for the next one."""
    yield
    import ipywidgets

    ipywidgets.Widget.close_all()


def fill(form: Any, *, who: str = "", kind: str = "user", out: str = "", **controls: Any) -> None:
    """Set the form's widgets as a user would: identity, section controls by keyword, variable name."""
    form.identity_kind.value = kind
    form.identity_value.value = who
    for keyword, value in controls.items():
        form.fields[keyword].widget.value = value
    form.out_name.value = out


def click_and_wait(form: Any, timeout: float = 30) -> None:
    """Press Fetch and wait for the background lookup to finish."""
    form.fetch_button.click()
    assert form.wait(timeout=timeout), "the lookup did not finish in time"


def output_data(form: Any) -> list[dict[str, Any]]:
    """The data bundles in the form's Output widget, in order."""
    return [output["data"] for output in form.output.outputs]


@pytest.fixture
def restore_config(shell: Any) -> Iterator[None]:
    """%config writes into the shell's Config, which outlives the test's magics: put it back afterwards."""
    import copy

    saved = copy.deepcopy(shell.config)
    yield
    shell.config.clear()
    shell.config.merge(saved)

"""Where widgets do not render (terminal IPython, nbconvert HTML, static previews) the form says so in text."""

from __future__ import annotations

import html
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from nbformat.v4 import new_code_cell, new_notebook

from amp_profile_magic._form import FALLBACK_INTRO

from .conftest import fill

ROOT = Path(__file__).resolve().parents[2]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def terminal_ipython(source: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``source`` in a real terminal IPython (this checkout importable), capturing what it printed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "--HistoryManager.enabled=False"],
        input=source,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


def test_terminal_ipython_shows_the_text_fallback_with_the_equivalent_line(tmp_path: Path) -> None:
    """In a real terminal IPython, the form prints what it needs and the %ampprofile line, not a VBox repr."""
    source = "%load_ext amp_profile_magic\n%ampprofile_form user=12345 recs=testRecId,testRecId2 props -o profile\n"
    completed = terminal_ipython(source, tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert FALLBACK_INTRO in completed.stdout
    assert "  %ampprofile user=12345 recs=testRecId,testRecId2 props -o profile\n" in completed.stdout
    assert "VBox(children" not in completed.stdout + completed.stderr


def test_text_form_follows_the_selection_and_names_what_is_missing(shell: Any, form: Any) -> None:
    """The text/plain part tracks the controls: the line for a valid selection, the grammar's complaint otherwise."""
    formatter = shell.display_formatter
    data, _ = formatter.format(form, include={"text/plain"})
    assert data["text/plain"].startswith(FALLBACK_INTRO)
    assert f"No equivalent line yet: {form.error}" in data["text/plain"]

    fill(form, who="12345", cohorts=True)
    data, _ = formatter.format(form)
    assert data["text/plain"].endswith("\n  %ampprofile user=12345 cohorts")
    assert data[WIDGET_VIEW]["model_id"] == form.widget.model_id  # live front ends still get the widget


def test_a_closed_form_still_has_its_text_form(shell: Any, form: Any) -> None:
    """After the widgets are closed there is no widget view left, but the text form still displays."""
    fill(form, who="12345", props=True)
    form.widget.close()
    data, _ = shell.display_formatter.format(form)
    assert WIDGET_VIEW not in data
    assert data["text/plain"].endswith("\n  %ampprofile user=12345 props")


@pytest.mark.slow
def test_nbconvert_html_of_a_notebook_saved_without_widget_state_shows_the_fallback(tmp_path: Path) -> None:
    """A notebook saved without widget state (JupyterLab's default) converts to HTML showing the text form."""
    notebook = new_notebook(
        cells=[new_code_cell("%load_ext amp_profile_magic\n%ampprofile_form user=12345 recs=testRecId")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", store_widget_state=False, resources={"metadata": {"path": "."}}
    ).execute()
    (output,) = notebook.cells[0].outputs
    assert WIDGET_VIEW in output["data"]  # a live front end would render the widget

    body, _ = HTMLExporter().from_notebook_node(notebook)
    assert html.escape(FALLBACK_INTRO, quote=False) in body
    assert "%ampprofile user=12345 recs=testRecId" in body
    assert "VBox(children" not in body


def test_text_form_of_a_batch_gives_the_cell_or_the_users_line(shell: Any, form: Any) -> None:
    """Pasted ids give the equivalent %%ampprofile cell, indented whole; a variable gives the --users line."""
    fill(form, recs="testRecId", out="recs")
    form.batch.mode.value = "paste"
    form.batch.pasted.value = "12345\nit's me\n"
    data, _ = shell.display_formatter.format(form)
    assert data["text/plain"] == (
        f"{FALLBACK_INTRO}\nThe equivalent cell, to run instead:\n"
        "  %%ampprofile recs=testRecId -o recs\n  12345\n  'it''s me'"
    )
    shell.run_cell("ids = ['12345']")
    form.batch.mode.value = "variable"
    form.batch.variable.value = "ids"
    data, _ = shell.display_formatter.format(form)
    assert data["text/plain"].endswith(
        "The equivalent line, to run instead:\n  %ampprofile --users ids recs=testRecId -o recs"
    )


def test_terminal_ipython_shows_a_batch_forms_users_line(tmp_path: Path) -> None:
    """A form opened on a variable in a terminal IPython prints the --users line to run instead."""
    source = "%load_ext amp_profile_magic\nids = ['12345', 'user-00001']\n%ampprofile_form --users ids props -o res\n"
    completed = terminal_ipython(source, tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert FALLBACK_INTRO in completed.stdout
    assert "  %ampprofile --users ids props -o res\n" in completed.stdout
    assert "VBox(children" not in completed.stdout + completed.stderr

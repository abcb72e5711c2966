"""The example notebooks meant for CI run under papermill, as a CI job would call it: a subprocess, another cwd."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

#: The examples papermill runs to the end (notebooks/README.md says so too); errors.ipynb is not one, by design.
PAPERMILL_READY = ["quickstart", "batch_analysis", "configuration", "replay", "widget_form"]


def papermill(notebook: str, cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run ``papermill notebooks/NOTEBOOK out.ipynb ARGS`` from ``cwd``; return the process and the output notebook."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("AMPLITUDE_SECRET_KEY", "AMPLITUDE_PROFILE_CASSETTE", "AMPLITUDE_PROFILE_CASSETTE_MODE")
    }
    # The kernel papermill starts imports this tree's package, whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    output = cwd / f"{notebook}.out.ipynb"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(NOTEBOOKS / f"{notebook}.ipynb"),
            str(output),
            "--no-progress-bar",
            "--execution-timeout",
            "120",
            *args,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    return completed, nbformat.read(output, as_version=4)


def texts(cell: Any) -> list[str]:
    """Each output of ``cell`` as the text a reader sees (stream text or text/plain)."""
    return [output.get("text") or output.get("data", {}).get("text/plain", "") for output in cell.outputs]


def cell_after(notebook: Any, source_start: str) -> Any:
    """The code cell whose source starts with ``source_start``."""
    return next(cell for cell in notebook.cells if cell.source.startswith(source_start))


@pytest.mark.slow  # runs papermill once: a kernel and the notebook
@pytest.mark.timeout(400)
def test_batch_analysis_takes_its_parameters_from_another_directory(tmp_path: Path) -> None:
    """`-p n_users 20 -p unknown_user ...` from an unrelated cwd looks up 20 users plus the unknown one."""
    completed, notebook = papermill("batch_analysis", tmp_path, "-p", "n_users", "20", "-p", "unknown_user", "no-one")
    assert completed.returncode == 0, completed.stderr[-3000:]
    injected = next(cell for cell in notebook.cells if "injected-parameters" in cell.metadata.get("tags", []))
    assert "n_users = 20" in injected.source
    assert texts(cell_after(notebook, "import pandas as pd")) == ["21"]
    batch_cell = cell_after(notebook, "batch = %ampprofile --users users")
    assert texts(batch_cell)[0] == "20 profiles · 1 failed: unknown_user ×1"
    assert "no-one" in texts(cell_after(notebook, "batch.failures"))[0]


@pytest.mark.slow  # runs papermill once: a kernel and the notebook
@pytest.mark.timeout(400)
def test_replay_runs_with_cwd_from_anywhere_offline_and_without_a_key(
    tmp_path: Path, closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`papermill --cwd notebooks` replays the cassette beside the notebook and shows what the stored notebook shows."""
    monkeypatch.setenv("AMPLITUDE_PROFILE_URL", closed_url)  # nothing answers there: a request sent would fail
    completed, notebook = papermill("replay", tmp_path, "--cwd", str(NOTEBOOKS))
    assert completed.returncode == 0, completed.stderr[-3000:]
    stored = nbformat.read(NOTEBOOKS / "replay.ipynb", as_version=4)
    # Papermill tags every cell (an empty list but for the parameters): compare the untagged code cells.
    ran = [texts(cell) for cell in notebook.cells if cell.cell_type == "code" and not cell.metadata.get("tags")]
    kept = [texts(cell) for cell in stored.cells if cell.cell_type == "code" and not cell.metadata.get("tags")]
    assert ran == kept
    assert ran[0][0].startswith("Replaying API responses from replay.cassette.json")


@pytest.mark.slow  # runs papermill once: a kernel and the notebook
@pytest.mark.timeout(400)
def test_replay_takes_the_cassette_path_as_a_parameter(tmp_path: Path) -> None:
    """Without --cwd, `-p cassette /abs/path` points the notebook at its cassette."""
    cassette = str(NOTEBOOKS / "replay.cassette.json")
    completed, notebook = papermill("replay", tmp_path, "-p", "cassette", cassette, "-p", "cassette_mode", "replay")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert texts(cell_after(notebook, "%load_ext"))[0].startswith(f"Replaying API responses from {cassette}")


@pytest.mark.slow  # runs papermill once: a kernel and the notebook
@pytest.mark.timeout(400)
def test_replay_from_the_wrong_directory_names_the_full_path_it_tried(tmp_path: Path) -> None:
    """Without --cwd or a path, the run fails at the cassette line, naming the absolute path it looked for."""
    completed, notebook = papermill("replay", tmp_path, "--log-output")
    assert completed.returncode != 0
    tried = f"{tmp_path / 'replay.cassette.json'} does not exist"
    assert tried in completed.stderr  # --log-output puts the cell's error on papermill's console
    assert any(tried in text for text in texts(cell_after(notebook, "%load_ext")))
    assert all(not cell.get("outputs") for cell in notebook.cells[notebook.cells.index(cell_after(notebook, "ids")) :])


@pytest.mark.slow  # runs papermill once: a kernel and the notebook
@pytest.mark.timeout(400)
def test_configuration_runs_to_the_end_under_papermill(tmp_path: Path) -> None:
    """configuration.ipynb shows the EU refusal as a panel without ending in error, so papermill runs it through."""
    completed, notebook = papermill("configuration", tmp_path, "--cwd", str(NOTEBOOKS))
    assert completed.returncode == 0, completed.stderr[-3000:]
    eu_cell = cell_after(notebook, '%config ProfileClient.region = "eu"')
    assert "Not available in the EU region" in eu_cell.outputs[0]["data"]["text/html"]
    assert all(cell.execution_count for cell in notebook.cells if cell.cell_type == "code")


@pytest.mark.parametrize("name", PAPERMILL_READY)
def test_papermill_ready_examples_have_no_cell_meant_to_fail(name: str) -> None:
    """Papermill stops at any cell in error, whatever its raises-exception tag: the ready examples have none.

    (Under nbval they run to the end too, so a notebook that passes nbval and has no such cell passes papermill.)
    """
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert notebook.cells
    assert not [cell.source for cell in notebook.cells if "raises-exception" in cell.metadata.get("tags", [])]
    failing = [cell.source for cell in notebook.cells for out in cell.get("outputs", []) if out.output_type == "error"]
    assert not failing


def test_the_notebooks_readme_says_which_examples_papermill_runs() -> None:
    """notebooks/README.md lists each papermill-ready example, and says errors.ipynb is not one, by design."""
    readme = (NOTEBOOKS / "README.md").read_text()
    section = readme[readme.index("## Running them with papermill") :].split("\n## ", 1)[0]
    for name in PAPERMILL_READY:
        assert f"| `{name}.ipynb` | yes" in section
    assert "| `errors.ipynb` | no, by design" in section
    errors = nbformat.read(NOTEBOOKS / "errors.ipynb", as_version=4)
    assert any("raises-exception" in cell.metadata.get("tags", []) for cell in errors.cells)

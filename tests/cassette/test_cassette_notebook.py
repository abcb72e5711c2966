"""Record and replay through real kernels (nbclient), and the shipped notebooks and cassettes hold no key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from amp_profile_magic.emulator import Emulator
from tests.conftest import CANARY_KEY

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

CELLS = [
    "%load_ext amp_profile_magic\n"
    "%ampprofile_cassette analysis.cassette.json\n"
    "%config AmpProfileMagics.progress = False",
    "%ampprofile user=12345 recs=testRecId props cohorts",
    'ids = [f"user-{n:05d}" for n in range(12)] + ["nobody"]\n'
    "scores = %ampprofile --users ids cohorts propensity=0x10x,0x11x propensity_type=pct\n"
    "scores.failures",
    'scores.propensity.to_csv(index=False, float_format="%.6f")',
]


def execute(directory: Path) -> Any:
    """Write the example notebook into ``directory``, run it there in a fresh kernel, and return it executed."""
    notebook = new_notebook(cells=[new_code_cell(source) for source in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = directory / "analysis.ipynb"
    nbformat.write(notebook, path)
    client = NotebookClient(
        nbformat.read(path, as_version=4),
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(directory)}},
    )
    executed = client.execute()
    nbformat.write(executed, path)
    return executed


def lookup_outputs(notebook: Any) -> list[list[dict[str, Any]]]:
    """Each lookup cell's outputs, minus the first cell's (whose message names the mode)."""
    return [[dict(output) for output in cell.outputs] for cell in notebook.cells[1:]]


@pytest.mark.slow
def test_a_notebook_recorded_in_one_kernel_replays_identically_in_another(
    emulator: Emulator, tmp_path: Path, closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run with the key and record mode, then with no key and no reachable API: every lookup shows the same."""
    monkeypatch.setenv("AMPLITUDE_PROFILE_URL", emulator.url)
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", CANARY_KEY)
    monkeypatch.setenv("AMPLITUDE_PROFILE_CASSETTE_MODE", "record")
    recorded = execute(tmp_path)
    cassette = tmp_path / "analysis.cassette.json"
    assert "Recording API responses to analysis.cassette.json" in recorded.cells[0].outputs[0]["text"]
    requests_after_recording = emulator.request_count

    monkeypatch.setenv("AMPLITUDE_PROFILE_URL", closed_url)
    monkeypatch.delenv("AMPLITUDE_SECRET_KEY")
    monkeypatch.delenv("AMPLITUDE_PROFILE_CASSETTE_MODE")
    replayed = execute(tmp_path)

    assert "Replaying API responses from analysis.cassette.json" in replayed.cells[0].outputs[0]["text"]
    assert emulator.request_count == requests_after_recording
    assert lookup_outputs(replayed) == lookup_outputs(recorded)
    assert "user-00011" in replayed.cells[3].outputs[0]["data"]["text/plain"]
    assert "unknown_user" in replayed.cells[2].outputs[-1]["data"]["text/plain"]
    for text in (cassette.read_text(encoding="utf-8"), (tmp_path / "analysis.ipynb").read_text(encoding="utf-8")):
        assert CANARY_KEY not in text


SHIPPED = sorted([*NOTEBOOKS.glob("*.ipynb"), *NOTEBOOKS.glob("*.cassette.json")])


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_notebooks_and_cassettes_hold_no_key(path: Path) -> None:
    """No example notebook or cassette holds the canary, an emulator key or an Authorization header."""
    text = path.read_text(encoding="utf-8")
    assert CANARY_KEY not in text
    assert not re.search(r"emu-[0-9a-f]{16}", text)  # the emulator's random keys
    assert not re.search(r"(?i)authorization\W+api-key", text)


def test_every_shipped_notebook_cell_was_executed() -> None:
    """Every code cell of every example notebook has an execution count, so nbval compares its stored output."""
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        unrun = [
            index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code" and not cell.execution_count
        ]
        assert not unrun, f"{path.name}: code cells {unrun} were not executed"


def test_the_shipped_cassette_belongs_to_its_notebook() -> None:
    """Each cassette sits next to a notebook of the same name that replays it."""
    for cassette in NOTEBOOKS.glob("*.cassette.json"):
        notebook = cassette.with_name(cassette.name.removesuffix(".cassette.json") + ".ipynb")
        assert notebook.exists(), f"{cassette.name} has no notebook"
        cells = nbformat.read(notebook, as_version=4).cells
        code = "\n".join(cell.source for cell in cells if cell.cell_type == "code")
        # Named on the magic's line, or as the papermill parameter the line uses.
        assert f"%ampprofile_cassette {cassette.name}" in code or (
            f'cassette = "{cassette.name}"' in code and '%ampprofile_cassette {cassette_mode} "{cassette}"' in code
        )

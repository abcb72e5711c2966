"""``%ampprofile_cassette`` in a real IPython shell: record a notebook's lookups, then replay them offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.utils.capture import capture_output

from amp_profile_magic.emulator import Emulator
from tests.conftest import CANARY_KEY

SECTIONS = "recs=testRecId,testRecId2 props cohorts comps propensity=0x10x,0x11x propensity_type=pct"


def magics_of(shell: Any) -> Any:
    """The AmpProfileMagics instance registered on ``shell``."""
    return next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")


def run(shell: Any, source: str) -> tuple[Any, str, str]:
    """Run ``source`` as a cell; return its result and what it printed to stdout and stderr."""
    with capture_output() as captured:
        result = shell.run_cell(source, store_history=True)
    return result, captured.stdout, captured.stderr


def test_replayed_frames_equal_the_recorded_frames(
    shell: Any, emulator: Emulator, cassette: Path, closed_url: str
) -> None:
    """A batch recorded through the magics replays, with the emulator out of reach and no key, to equal frames."""
    shell.user_ns.update(ids=["12345", "user-00001", "user-00002", "no-such-user"], path=str(cassette))
    result, out, _ = run(shell, "%ampprofile_cassette record {path}")
    assert result.success
    assert out == f"Recording API responses to {cassette} (responses only, never the key).\n"
    result, _, _ = run(shell, f"recorded = %ampprofile --users ids {SECTIONS}")
    assert result.success
    recorded = shell.user_ns["recorded"]
    assert recorded.summary == "3 profiles · 1 failed: unknown_user ×1"

    client = magics_of(shell).client
    client.endpoint = closed_url
    client.api_key = ""
    requests_before = emulator.request_count
    result, out, _ = run(shell, "%ampprofile_cassette replay {path}")
    assert out.startswith(f"Replaying API responses from {cassette}: no network and no secret key needed.")
    result, _, _ = run(shell, f"replayed = %ampprofile --users ids {SECTIONS}")
    assert result.success

    replayed = shell.user_ns["replayed"]
    assert emulator.request_count == requests_before
    assert list(replayed) == list(recorded) == ["recs", "props", "cohorts", "comps", "propensity"]
    for name in recorded:
        assert len(recorded[name]) > 0
        pd.testing.assert_frame_equal(replayed[name], recorded[name])
    pd.testing.assert_frame_equal(replayed.failures, recorded.failures)
    assert replayed.summary == recorded.summary


def test_an_unrecorded_lookup_fails_the_cell_with_a_panel(shell: Any, cassette: Path, closed_url: str) -> None:
    """Replaying a lookup the cassette lacks shows the panel naming the request and the cassette, in one line."""
    client = magics_of(shell).client
    shell.user_ns["path"] = str(cassette)
    run(shell, "%ampprofile_cassette record {path}")
    assert run(shell, "%ampprofile user=12345 props")[0].success
    client.endpoint = closed_url
    run(shell, "%ampprofile_cassette replay {path}")

    with capture_output() as captured:
        result = shell.run_cell("%ampprofile user=12345 cohorts")

    assert not result.success
    assert type(result.error_in_exec).__name__ == "CellFailed"
    panel = captured.outputs[0].data["text/plain"]
    assert panel.startswith("✖ Cassette cannot answer (CassetteError)")
    assert "GET /v1/userprofile?get_cohort_ids=true&user_id=12345 is not in the cassette" in panel
    assert str(cassette) in panel
    assert "Traceback" not in captured.stdout + captured.stderr


def test_a_path_alone_replays_unless_the_environment_says_otherwise(
    shell: Any, cassette: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``%ampprofile_cassette PATH`` replays by default, records or ignores the cassette as the variable says."""
    client = magics_of(shell).client
    shell.user_ns["path"] = str(cassette)

    monkeypatch.setenv("AMPLITUDE_PROFILE_CASSETTE_MODE", "record")
    assert run(shell, "%ampprofile_cassette {path}")[1].startswith("Recording API responses to")
    assert (client.cassette_mode, client.cassette) == ("record", str(cassette))
    assert run(shell, "%ampprofile user=12345 cohorts")[0].success

    monkeypatch.setenv("AMPLITUDE_PROFILE_CASSETTE_MODE", "off")
    assert "lookups go to the API" in run(shell, "%ampprofile_cassette {path}")[1]
    assert client.cassette_mode == "off"

    monkeypatch.delenv("AMPLITUDE_PROFILE_CASSETTE_MODE")
    assert run(shell, "%ampprofile_cassette {path}")[1].startswith("Replaying API responses from")
    assert client.cassette_mode == "replay"
    assert run(shell, "%ampprofile_cassette")[1] == f"Cassette: replay ({cassette})\n"
    assert run(shell, "%ampprofile_cassette off")[1] == "Cassette off: lookups go to ProfileClient.endpoint.\n"
    assert run(shell, "%ampprofile_cassette")[1] == "Cassette: off\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("replay nowhere.cassette.json", "does not exist (a relative path starts from the working directory)"),
        ("nowhere.cassette.json", "no cassette 'nowhere.cassette.json' to replay: /"),
        ("record a.json b.json", "expected [record|replay] PATH, or off"),
        ("sideways a.json", "expected [record|replay] PATH, or off"),
        ("record 'unclosed", "No closing quotation"),
    ],
)
def test_usage_errors_are_one_line(shell: Any, tmp_path: Path, line: str, expected: str) -> None:
    """A bad ``%ampprofile_cassette`` line fails with one UsageError line and changes nothing."""
    client = magics_of(shell).client
    shell.run_line_magic("cd", "-q " + str(tmp_path))
    try:
        result, _, err = run(shell, f"%ampprofile_cassette {line}")
    finally:
        shell.run_line_magic("cd", "-q -")
    assert not result.success
    assert err.strip().startswith("UsageError: %ampprofile_cassette:")
    assert expected in err
    assert len(err.strip().splitlines()) == 1
    assert client.cassette_mode == "off"


def test_a_missing_cassette_names_the_full_path_it_tried(shell: Any, tmp_path: Path) -> None:
    """Replaying a relative path that is not there names the absolute path it looked at (papermill's cwd trap)."""
    shell.run_line_magic("cd", "-q " + str(tmp_path))
    try:
        result, _, err = run(shell, "%ampprofile_cassette nowhere.cassette.json")
    finally:
        shell.run_line_magic("cd", "-q -")
    assert not result.success
    assert f": {tmp_path / 'nowhere.cassette.json'} does not exist" in err


def test_a_misspelt_mode_variable_is_a_usage_error(shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With AMPLITUDE_PROFILE_CASSETTE_MODE misspelt, ``%ampprofile_cassette PATH`` says so instead of guessing."""
    monkeypatch.setenv("AMPLITUDE_PROFILE_CASSETTE_MODE", "replya")

    result, _, err = run(shell, "%ampprofile_cassette x.cassette.json")

    assert not result.success
    assert "AMPLITUDE_PROFILE_CASSETTE_MODE='replya' is not off|record|replay" in err


def test_a_misspelt_mode_variable_fails_lookups_not_the_settings_listing(
    shell: Any, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With AMPLITUDE_PROFILE_CASSETTE_MODE misspelt, %config ProfileClient and %ampprofile_cassette show it without
    a traceback, lookups and dry runs fail in one line naming it, and %ampprofile_cassette off makes lookups work."""
    monkeypatch.setenv("AMPLITUDE_PROFILE_CASSETTE_MODE", "recrod")
    assert run(shell, "%unload_ext amp_profile_magic\n%load_ext amp_profile_magic")[0].success
    client = magics_of(shell).client
    client.endpoint, client.api_key = emulator.url, emulator.api_key
    named = "AMPLITUDE_PROFILE_CASSETTE_MODE='recrod' is not one of off, record, replay."

    result, out, err = run(shell, "%config ProfileClient")
    assert result.success, err
    assert "ProfileClient.cassette_mode" in out
    assert "Traceback" not in out + err
    result, out, _ = run(shell, "%ampprofile_cassette")
    assert result.success
    assert named in out
    for line in ("%ampprofile user=12345 props", "%ampprofile user=12345 props --dry-run"):
        with capture_output() as captured:
            result = shell.run_cell(line)
        shown = captured.stdout + captured.stderr + "".join(str(output.data) for output in captured.outputs)
        assert not result.success, line
        assert f"CassetteError: {named}" in shown, line
        assert "Traceback" not in shown
    assert run(shell, "%ampprofile_cassette off")[0].success
    result, _, err = run(shell, "%ampprofile user=12345 props")
    assert result.success, err


def test_cassette_help_and_a_forgotten_path(shell: Any) -> None:
    """%ampprofile_cassette -h prints its help; record or replay without a path says the path is missing."""
    result, out, _ = run(shell, "%ampprofile_cassette -h")
    assert result.success
    assert out.startswith("Record this notebook's API responses to a cassette file")
    for mode in ("record", "replay"):
        result, _, err = run(shell, f"%ampprofile_cassette {mode}")
        assert not result.success
        assert f"UsageError: %ampprofile_cassette: {mode} needs the cassette's path: {mode} PATH" in err


def test_the_key_stays_out_of_the_cassette_and_the_outputs(shell: Any, cassette: Path) -> None:
    """Recording through the magics with the canary key puts it in no cassette line and no cell output."""
    assert magics_of(shell).client.api_key.reveal() == CANARY_KEY
    shell.user_ns["path"] = str(cassette)
    outputs = []
    for source in (
        "%ampprofile_cassette record {path}",
        "%ampprofile user=12345 props cohorts",
        "%ampprofile user=not-a-user props",
        "%ampprofile_cassette",
        "%config ProfileClient",
    ):
        with capture_output() as captured:
            shell.run_cell(source)
        outputs.append(captured.stdout + captured.stderr + repr([o.data for o in captured.outputs]))

    assert CANARY_KEY not in cassette.read_text(encoding="utf-8")
    assert not [text for text in outputs if CANARY_KEY in text]


def test_unloading_removes_the_magic(shell: Any) -> None:
    """``%unload_ext`` removes ``%ampprofile_cassette`` along with the other magics."""
    assert "ampprofile_cassette" in shell.magics_manager.magics["line"]
    shell.run_line_magic("unload_ext", "amp_profile_magic")
    try:
        assert "ampprofile_cassette" not in shell.magics_manager.magics["line"]
    finally:
        shell.run_line_magic("load_ext", "amp_profile_magic")

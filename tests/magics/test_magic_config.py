"""``%config ProfileClient`` / ``%config AmpProfileMagics`` and ``ipython_config.py``, with the key kept secret."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

from amp_profile_magic import ProfileClient
from amp_profile_magic._magics import AmpProfileMagics
from amp_profile_magic.emulator import Emulator

from .helpers import CellRun, magics_of


def _config_listing(shell: Any, target: str) -> str:
    with capture_output() as captured:
        shell.run_line_magic("config", target)
    return captured.stdout


def _first_words(help_text: str) -> str:
    # %config wraps help at ~80 columns; the first few words always stay on one line.
    return " ".join(help_text.split()[:4])


def test_config_lists_every_client_option_with_its_help(shell: Any) -> None:
    """%config ProfileClient shows every configurable trait of the client, each with its help text."""
    listing = _config_listing(shell, "ProfileClient")
    traits = ProfileClient.class_traits(config=True)
    assert {"endpoint", "api_key", "timeout", "max_retries", "requests_per_minute"} <= set(traits)
    for name, trait in traits.items():
        assert f"ProfileClient.{name}=" in listing, name
        assert _first_words(trait.help) in " ".join(listing.split()), name


def test_config_lists_every_magics_option_with_its_help(shell: Any) -> None:
    """%config AmpProfileMagics shows raise_errors, progress, display_max_rows, emulator_seed and their help."""
    listing = _config_listing(shell, "AmpProfileMagics")
    traits = AmpProfileMagics.class_traits(config=True)
    assert {"raise_errors", "progress", "display_max_rows", "emulator_seed"} <= set(traits)
    for name, trait in traits.items():
        assert f"AmpProfileMagics.{name}=" in listing, name
        assert _first_words(trait.help) in " ".join(listing.split()), name


def test_config_magic_sets_options_in_the_running_kernel(shell: Any, run: Any) -> None:
    """%config AmpProfileMagics.display_max_rows = 5 and %config ProfileClient.timeout = 7 take effect at once."""
    done: CellRun = run("%config AmpProfileMagics.display_max_rows = 5\n%config ProfileClient.timeout = 7.5")
    assert done.result.success, done.everything
    magics = next(item for item in shell.configurables if isinstance(item, AmpProfileMagics))
    assert magics.display_max_rows == 5
    assert magics.client.timeout == 7.5


def test_secret_key_never_shows_in_config_listings(shell: Any, run: Any, emulator: Emulator) -> None:
    """A key set with %config is used for requests but never printed by %config, reprs or the listing."""
    canary = emulator.api_key  # the session emulator runs with tests/conftest.py's CANARY_KEY
    assert "SECRET" in canary
    done = run(f"%config ProfileClient.api_key = '{canary}'")
    assert done.result.success, done.everything
    shown = [
        done.everything,
        _config_listing(shell, "ProfileClient"),
        _config_listing(shell, "ProfileClient.api_key"),
        _config_listing(shell, ""),
        run("get_ipython().find_line_magic('ampprofile').__self__.client").everything,
    ]
    looked_up = run("%ampprofile user=12345 cohorts")
    assert looked_up.result.success, looked_up.everything
    shown.append(looked_up.everything)
    for text in shown:
        assert canary not in text
    assert "********" in _config_listing(shell, "ProfileClient")


def test_options_come_from_ipython_config_py(tmp_path: Path, emulator: Emulator) -> None:
    """A real IPython started on a profile whose ipython_config.py sets both classes' options applies them."""
    canary = emulator.api_key
    profile = tmp_path / "profile_amp"
    profile.mkdir()
    (profile / "ipython_config.py").write_text(
        textwrap.dedent(
            f"""
            c.ProfileClient.timeout = 3.5
            c.ProfileClient.endpoint = {emulator.url!r}
            c.ProfileClient.api_key = {canary!r}
            c.AmpProfileMagics.progress = False
            c.AmpProfileMagics.display_max_rows = 7
            """
        )
    )
    code = f"CANARY = {canary!r}\n" + textwrap.dedent(
        """
        import json
        ip = get_ipython()
        ip.run_line_magic("load_ext", "amp_profile_magic")
        magics = ip.find_line_magic("ampprofile").__self__
        frame = ip.run_line_magic("ampprofile", "user=12345 cohorts")
        ip.run_line_magic("config", "ProfileClient")
        print("RESULT=" + json.dumps({
            "timeout": magics.client.timeout,
            "endpoint": magics.client.endpoint,
            "key_is_canary": magics.client.api_key.reveal() == CANARY,
            "progress": magics.progress,
            "display_max_rows": magics.display_max_rows,
            "cohorts": list(frame["cohort_id"]),
        }))
        """
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "IPython",
            f"--ipython-dir={tmp_path}",
            f"--profile-dir={profile}",
            "--no-banner",
            "--colors=NoColor",
            "--HistoryManager.enabled=False",
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": ""},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT="))
    values = json.loads(line.removeprefix("RESULT="))
    assert values == {
        "timeout": 3.5,
        "endpoint": emulator.url,
        "key_is_canary": True,
        "progress": False,
        "display_max_rows": 7,
        "cohorts": ["cohort1", "cohort3", "cohort7"],
    }
    assert "ProfileClient.timeout=<Float>" in done.stdout
    assert canary not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("ProfileClient.timeout = 0", "ProfileClient.timeout must be a positive, finite number"),
        ("ProfileClient.timeout = float('nan')", "ProfileClient.timeout must be a positive, finite number"),
        ("ProfileClient.max_concurrency = 'x'", "'max_concurrency' trait of a ProfileClient instance expected an int"),
        ("AmpProfileMagics.display_max_rows = 0", "display_max_rows"),
        ("ProfileClient.timout = 5", "ProfileClient.timout is not a setting (did you mean ProfileClient.timeout?"),
        ("ProfileClient.api_key = b'SECRET-bytes'", "'api_key' trait of a ProfileClient instance expected a secret"),
    ],
)
@pytest.mark.filterwarnings("ignore:Config option .* not recognized")  # IPython's own warning for the misspelt name
def test_a_setting_config_could_not_apply_fails_the_cell_once_in_one_line(
    shell: Any, run: Any, line: str, named: str
) -> None:
    """A refused value or a misspelt name given to %config fails that cell with one UsageError line naming it (IPython
    only logs it); the value in effect stays, and the next %config cell is not failed for it again."""
    magics = magics_of(shell)
    before = (magics.client.timeout, magics.client.max_concurrency, magics.display_max_rows)
    done: CellRun = run(f"%config {line}")
    assert not done.result.success
    assert isinstance(done.result.error_in_exec, UsageError)
    message = str(done.result.error_in_exec)
    assert named in message
    assert "\n" not in message
    assert f"UsageError: {message}" in done.stderr
    assert "Traceback" not in done.everything
    assert "SECRET" not in done.everything
    assert (magics.client.timeout, magics.client.max_concurrency, magics.display_max_rows) == before
    later: CellRun = run("%config AmpProfileMagics.progress = False")
    assert later.result.success, later.everything


def test_valid_settings_never_fail_a_later_cell(shell: Any, run: Any, tmp_path: Path) -> None:
    """Settings %config applied are checked once: a cassette file deleted afterwards, or an unrelated %config cell,
    fails nothing."""
    cassette = tmp_path / "c.cassette.json"
    cassette.write_text('{"version": 1, "interactions": []}')
    assert run(
        f"%config ProfileClient.cassette = {str(cassette)!r}\n%config ProfileClient.timeout = 7.5"
    ).result.success
    cassette.unlink()
    done: CellRun = run("%config AmpProfileMagics.display_max_rows = 7\nx = 1")
    assert done.result.success, done.everything
    assert magics_of(shell).display_max_rows == 7


def test_with_raise_errors_off_a_refused_setting_is_shown_and_the_cell_goes_on(shell: Any, run: Any) -> None:
    """Under AmpProfileMagics.raise_errors = False the refusal is still shown in one line, and the cell succeeds."""
    magics_of(shell).raise_errors = False
    done: CellRun = run("%config ProfileClient.timeout = -1")
    assert done.result.success
    assert "UsageError: ProfileClient.timeout must be a positive, finite number" in done.stderr


@pytest.mark.slow
def test_a_refused_setting_stops_a_notebook_run_in_a_real_kernel(tmp_path: Path) -> None:
    """In a real kernel run by nbclient, a %config cell with a refused value ends the run with UsageError there."""
    notebook = new_notebook(
        cells=[
            new_code_cell("%load_ext amp_profile_magic"),
            new_code_cell("%config ProfileClient.requests_per_minute = 0"),
            new_code_cell("print('went on')"),
        ]
    )
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with pytest.raises(CellExecutionError) as failed:
        client.execute()
    assert failed.value.ename == "UsageError"
    assert "ProfileClient.requests_per_minute must be a positive, finite number" in failed.value.evalue
    assert notebook.cells[2].outputs == []


def test_a_client_made_in_the_notebook_takes_the_kernels_settings(shell: Any, run: Any, tmp_path: Path) -> None:
    """ProfileClient() made in a cell has the settings %config gave the kernel, so its clear_store() clears the store
    %config moved; keyword arguments still win over them."""
    store = tmp_path / "moved"
    done: CellRun = run(
        f"%config ProfileClient.store = {str(store)!r}\n%config ProfileClient.timeout = 3\n"
        "%ampprofile user=12345 cohorts\n"
        "from amp_profile_magic import ProfileClient\nmade, mine = ProfileClient(), ProfileClient(timeout=4)"
    )
    assert done.result.success, done.everything
    made, mine = shell.user_ns["made"], shell.user_ns["mine"]
    assert (made.store, made.timeout, mine.timeout) == (str(store), 3.0, 4.0)
    cleared = made.clear_store()
    assert str(store) in cleared
    assert "1 " in cleared
    assert magics_of(shell).client.store_info().count("0 answers") == 1
    made.close()
    mine.close()

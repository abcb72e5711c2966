"""``%ampprofile_emulator``: switch a kernel to the bundled emulator and back with ``--stop``."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import pytest
from IPython.core.error import UsageError

from amp_profile_magic.emulator import Emulator

from .helpers import api_requests


def _accepts_connections(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def test_emulator_magic_switches_and_stop_restores(run: Any, magics: Any, emulator: Emulator) -> None:
    """Without a key, %ampprofile_emulator makes lookups work offline; --stop restores the endpoint and empty key."""
    magics.client.api_key = ""
    before = magics.client.endpoint
    started = run("%ampprofile_emulator")
    assert started.result.success, started.everything
    assert "Using the bundled emulator" in started.stdout
    embedded = magics.client.endpoint
    assert embedded != before
    assert urlsplit(embedded).hostname == "127.0.0.1"

    looked_up = run("%ampprofile user=12345 recs=testRecId")
    assert looked_up.result.success, looked_up.everything
    assert list(looked_up.result.result["item"]) == ["cookie", "cracker", "chocolate milk", "donut", "croissant"]
    assert api_requests(emulator) == []  # the session's emulator saw nothing: the bundled one answered

    again = run("%ampprofile_emulator")  # a second call reuses the running emulator
    assert again.result.success
    assert magics.client.endpoint == embedded

    stopped = run("%ampprofile_emulator --stop")
    assert stopped.result.success
    assert "Stopped the bundled emulator" in stopped.stdout
    assert magics.client.endpoint == before
    assert not magics.client.api_key
    # Nothing to stop: it says so instead of claiming a switch back.
    assert run("%ampprofile_emulator --stop").stdout.strip() == (
        "The bundled emulator is not running; ProfileClient is unchanged."
    )
    assert "--stop" in run("%ampprofile_emulator --help").stdout
    assert not _accepts_connections(embedded)
    refused = run("%ampprofile user=12345 cohorts")
    assert refused.result.success is False
    assert refused.texts()[0].startswith("✖ No secret key configured")


def test_a_seed_set_while_the_emulator_runs_is_not_claimed(run: Any, magics: Any) -> None:
    """With the emulator running, a new emulator_seed is not reported as in use: the message names the running
    seed and says the new one applies after --stop, which then starts an emulator with it."""
    first = run("%ampprofile_emulator")
    assert "(seed 0," in first.stdout
    magics.emulator_seed = 5
    again = run("%ampprofile_emulator")
    assert "(seed 0," in again.stdout
    assert "emulator_seed = 5 applies after %ampprofile_emulator --stop" in again.stdout
    run("%ampprofile_emulator --stop")
    restarted = run("%ampprofile_emulator")
    assert "(seed 5," in restarted.stdout
    assert "already running" not in restarted.stdout
    run("%ampprofile_emulator --stop")


def test_emulator_magic_rejects_unknown_arguments(shell: Any) -> None:
    """%ampprofile_emulator takes only --stop; anything else is a UsageError naming it."""
    with pytest.raises(UsageError, match="'--start'"):
        shell.run_line_magic("ampprofile_emulator", "--start")


def test_unload_stops_the_bundled_emulator(shell: Any, magics: Any) -> None:
    """%unload_ext stops a running bundled emulator, so no server outlives the extension."""
    shell.run_line_magic("ampprofile_emulator", "")
    embedded = magics.client.endpoint
    assert _accepts_connections(embedded)
    shell.run_line_magic("unload_ext", "amp_profile_magic")
    assert not _accepts_connections(embedded)
    shell.run_line_magic("load_ext", "amp_profile_magic")

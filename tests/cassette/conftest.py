"""Fixtures for the cassette tests: clients that record to or replay from a temporary cassette."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from amp_profile_magic import ProfileClient
from amp_profile_magic.emulator import Emulator

FAST = {"timeout": 2.0, "backoff_initial": 0.01, "backoff_max": 0.05, "requests_per_minute": 600_000}


@pytest.fixture(autouse=True)
def _no_cassette_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test inherits a cassette, key or endpoint from the environment of whoever runs the suite."""
    for name in (
        "AMPLITUDE_PROFILE_CASSETTE",
        "AMPLITUDE_PROFILE_CASSETTE_MODE",
        "AMPLITUDE_SECRET_KEY",
        "AMPLITUDE_PROFILE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cassette(tmp_path: Path) -> Path:
    """Where this test's cassette goes (not created yet)."""
    return tmp_path / "test.cassette.json"


@pytest.fixture
def recorder(emulator: Emulator, cassette: Path) -> Iterator[ProfileClient]:
    """A client that talks to the session's emulator and records every response to ``cassette``."""
    client = ProfileClient(
        endpoint=emulator.url, api_key=emulator.api_key, cassette=str(cassette), cassette_mode="record", **FAST
    )
    yield client
    client.close()


@pytest.fixture
def replayer(cassette: Path, closed_url: str) -> Iterator[ProfileClient]:
    """A client with no key, pointed at a closed port, that answers from ``cassette``."""
    client = ProfileClient(endpoint=closed_url, cassette=str(cassette), cassette_mode="replay", **FAST)
    yield client
    client.close()

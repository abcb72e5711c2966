"""Fixtures for the local store's tests: a shell whose client keeps its store in the test's own directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amp_profile_magic import ProfileClient
from amp_profile_magic.emulator import Emulator

FAST = {"timeout": 2.0, "max_retries": 2, "backoff_initial": 0.01, "backoff_max": 0.05, "requests_per_minute": 600_000}


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """Where this test's store lives (a directory that does not exist yet)."""
    return tmp_path / "store"


@pytest.fixture
def make_client(emulator: Emulator, store_dir: Path) -> Iterator[Any]:
    """``make_client(**traits)`` → a fast client for the session's emulator whose store is ``store_dir``."""
    clients: list[ProfileClient] = []

    def make(**overrides: Any) -> ProfileClient:
        settings = {"endpoint": emulator.url, "api_key": emulator.api_key, "store": str(store_dir), **FAST}
        client = ProfileClient(**{**settings, **overrides})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def store_files(directory: Path) -> list[Path]:
    """Every file the store wrote in ``directory`` (the database, -wal, -shm, anything else)."""
    return sorted(path for path in directory.rglob("*") if path.is_file())

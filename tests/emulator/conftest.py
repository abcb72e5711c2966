"""Fixtures for the emulator's tests: real servers on 127.0.0.1 and httpx clients that talk to them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from amp_profile_magic.emulator import Emulator

API_PATH = "/v1/userprofile"


def auth(emulator: Emulator) -> dict[str, str]:
    """The Authorization header an emulator accepts."""
    return {"Authorization": f"Api-Key {emulator.api_key}"}


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """One default emulator shared by the read-only tests (do not change its settings)."""
    with Emulator(seed=0) as emu:
        yield emu


@pytest.fixture(scope="session")
def client(emulator: Emulator) -> Iterator[httpx.Client]:
    """A keep-alive client for the shared emulator, authenticated."""
    with httpx.Client(base_url=emulator.url, headers=auth(emulator), timeout=5) as http:
        yield http


@pytest.fixture
def get_profile(client: httpx.Client) -> Callable[..., httpx.Response]:
    """``get_profile(user_id="12345", get_amp_props="true")`` → the shared emulator's response."""

    def get(**params: str) -> httpx.Response:
        return client.get(API_PATH, params=params)

    return get


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., tuple[Emulator, httpx.Client]]]:
    """``make_emulator(**kwargs)`` → a started ``Emulator(**kwargs)`` and an authenticated client.

    Both are closed after the test.
    """
    with ExitStack() as stack:

        def make(**kwargs: Any) -> tuple[Emulator, httpx.Client]:
            emu = stack.enter_context(Emulator(**kwargs))
            http = stack.enter_context(httpx.Client(base_url=emu.url, headers=auth(emu), timeout=5))
            return emu, http

        yield make


@pytest.fixture
def fresh() -> Iterator[Emulator]:
    """A private emulator for a test that changes settings or reads the log and counters."""
    with Emulator(seed=0) as emu:
        yield emu


@pytest.fixture
def fresh_client(fresh: Emulator) -> Iterator[httpx.Client]:
    """An authenticated keep-alive client for the private emulator."""
    with httpx.Client(base_url=fresh.url, headers=auth(fresh), timeout=5) as http:
        yield http

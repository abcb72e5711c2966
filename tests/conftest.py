"""Fixtures shared by every test: one emulator per session, a fast client, a real IPython shell, clean globals."""

from __future__ import annotations

import gc
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amp_profile_magic import ProfileClient
from amp_profile_magic._budget import reset as reset_budgets
from amp_profile_magic._pacing import kernel_pacer
from amp_profile_magic.emulator import Emulator, Faults
from amp_profile_magic.sections import _registry

#: A key that must never appear in any output; tests that configure a real-looking key use this one.
CANARY_KEY = "canary-7f3c9d2e-SECRET-do-not-print-4b1a"

# The session-wide throw-away XDG_CACHE_HOME (which nbval's kernels inherit) is set by the repository's top-level
# conftest.py; tests get one directory each from the fixture below.


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt, as in a kernel, even when the suite was started in the background.

    A non-interactive shell starts background jobs (.ci/run's side-by-side legs) with SIGINT ignored, and Python
    keeps an ignored SIGINT ignored: the Ctrl-C tests then waited out their 30 s holds, or passed only when an
    earlier test happened to install the handler.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test (and every kernel or process it starts) has a user cache directory of its own, so neither a stored
    answer nor the default rate budget file is ever shared with another test or with the user's own kernels."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("AMPLITUDE_PROFILE_STORE", raising=False)
    monkeypatch.delenv("AMPLITUDE_PROFILE_RATE_LIMITER", raising=False)
    yield cache
    import sys

    store = sys.modules.get("amp_profile_magic._store")
    if store is not None:
        store.forget_all()


@pytest.fixture
def closed_url() -> str:
    """A loopback URL nothing listens on: a request that really went out would fail to connect."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """The bundled emulator on a free loopback port, shared by the whole session."""
    with Emulator(seed=0, api_key=CANARY_KEY) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _reset_global_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts with a fresh pacing budget, the built-in sections only, and a fault-free emulator."""
    kernel_pacer().reset()
    reset_budgets()
    _registry.reset()
    yield
    kernel_pacer().reset()
    reset_budgets()
    _registry.reset()
    if "emulator" in request.fixturenames:
        emu: Emulator = request.getfixturevalue("emulator")
        emu.faults = Faults()
        emu.rate_limit_per_minute = None
        emu.plain_http_redirect = False
        emu.reset()


@pytest.fixture
def client(emulator: Emulator) -> Iterator[ProfileClient]:
    """A client pointed at the emulator with fast retries, pacing that never binds, and no local store."""
    profile_client = ProfileClient(
        store="off",  # its tests count requests; tests/store/ covers the store
        endpoint=emulator.url,
        api_key=emulator.api_key,
        timeout=2.0,
        backoff_initial=0.01,
        backoff_max=0.05,
        requests_per_minute=600_000,
    )
    yield profile_client
    profile_client.close()


@pytest.fixture
def shell(emulator: Emulator) -> Iterator[object]:
    """A real IPython shell with the extension loaded and its client pointed at the session's emulator."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "amp_profile_magic")
    magics = next(item for item in ip.configurables if type(item).__name__ == "AmpProfileMagics")
    magics.progress = False
    magics.client.endpoint = emulator.url
    magics.client.api_key = emulator.api_key
    magics.client.backoff_initial = 0.01
    magics.client.backoff_max = 0.05
    magics.client.requests_per_minute = 600_000
    magics.client.timeout = 2.0
    # IPython's reset below ends in a full gc.collect(), which walked every object of the session (pandas, IPython,
    # all that earlier tests imported): 0.4 s per test, minutes over the suite. What is alive now outlives the test
    # anyway, so it moves to the permanent generation and the collect walks only what this test made.
    gc.freeze()
    yield ip
    ip.run_line_magic("unload_ext", "amp_profile_magic")
    ip.reset(new_session=False)
    # %config settings live in the singleton shell's Config, which outlives the test: drop ours.
    for section in ("AmpProfileMagics", "ProfileClient"):
        ip.config.pop(section, None)


@pytest.fixture
def run(shell: Any) -> Any:
    """Run a cell in the real shell (as a user would), capturing its result and everything it printed."""
    from IPython.utils.capture import capture_output

    from tests.magics.helpers import CellRun

    def run_cell(source: str) -> CellRun:
        with capture_output() as captured:
            result = shell.run_cell(source, store_history=True)
        return CellRun(result, captured)

    return run_cell

"""A shared budget that fails (Redis killed or frozen, the file read-only or locked) never fails or hangs a batch."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amp_profile_magic import ProfileClient, ProfileQuery
from amp_profile_magic._budget._sqlite import BUSY_TIMEOUT
from amp_profile_magic.emulator import Emulator
from tests.budget.conftest import RedisServer

RATE = 1200
USERS = 40

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """An emulator of our own, so the request log holds this test's requests only."""
    with Emulator(seed=5) as emulator:
        yield emulator


def batch_through(emu: Emulator, rate_limiter: str) -> tuple[list[bool], float]:
    """Look up USERS users paced at RATE through ``rate_limiter``; which succeeded, and how long it took."""
    client = ProfileClient(
        endpoint=emu.url, api_key=emu.api_key, timeout=5.0, requests_per_minute=RATE, rate_limiter=rate_limiter
    )
    started = time.monotonic()
    batch = client.lookup_many([ProfileQuery(user_id=user) for user in emu.dataset.user_ids[:USERS]])
    return [outcome.ok for outcome in batch], time.monotonic() - started


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings that say pacing moved into the kernel."""
    return [record.getMessage() for record in caplog.records if "Pacing in this kernel" in record.getMessage()]


def test_redis_killed_mid_batch(emu: Emulator, redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """Redis SIGKILLed a second into the batch: every user is fetched, in kernel pacing, after one warning."""
    killer = threading.Timer(1.0, redis_server.kill)
    killer.start()
    with caplog.at_level(logging.WARNING, logger="amp_profile_magic"):
        ok, elapsed = batch_through(emu, redis_server.url)
    killer.join()
    assert all(ok)
    assert len(ok) == USERS
    [warning] = fallback_warnings(caplog)
    assert redis_server.url in warning
    assert "50% of requests_per_minute" in warning
    # One second shared, then the rest at half the rate in the kernel: bounded, no hang.
    assert elapsed < 1.0 + USERS / (RATE / 2) * 60 + 5


def test_the_summary_says_the_batch_fell_back_and_nothing_else(emu: Emulator) -> None:
    """With Redis unreachable, the batch's summary says "budget: kernel fallback at N/min (redis unreachable)" once,
    and no "paced down … after 0 throttles": nothing was throttled."""
    from amp_profile_magic._result import summary_line
    from tests.budget.conftest import _free_port

    client = ProfileClient(
        endpoint=emu.url,
        api_key=emu.api_key,
        timeout=5.0,
        requests_per_minute=RATE,
        rate_limiter=f"redis://127.0.0.1:{_free_port()}/0",
    )
    batch = client.lookup_many([ProfileQuery(user_id=user) for user in emu.dataset.user_ids[:10]])
    assert all(outcome.ok for outcome in batch)
    assert batch.pacing.parts() == [f"budget: kernel fallback at {RATE // 2}/min (redis unreachable)"]
    assert summary_line(batch) == f"10 profiles · budget: kernel fallback at {RATE // 2}/min (redis unreachable)"
    assert client.pacing_note() == batch.pacing.describe()


def test_redis_frozen_times_out_instead_of_hanging(
    emu: Emulator, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis that stops answering (SIGSTOP) costs a one-second timeout, then the batch goes on in the kernel."""
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING, logger="amp_profile_magic"):
            ok, elapsed = batch_through(emu, redis_server.url)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    assert all(ok)
    assert len(fallback_warnings(caplog)) == 1
    assert elapsed < USERS / (RATE / 2) * 60 + 10


def test_redis_password_is_masked_in_the_warning(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    """A Redis URL's password never reaches the warning; the masked URL names the server."""
    server = __import__("tests.budget.conftest", fromlist=["start_redis"]).start_redis("--requirepass", "s3cr3t-pw")
    try:
        with caplog.at_level(logging.WARNING, logger="amp_profile_magic"):
            ok, _ = batch_through(emu, f"redis://:wrong-pw-9f1c@127.0.0.1:{server.port}/0")
    finally:
        server.kill()
    assert all(ok)
    [warning] = fallback_warnings(caplog)
    assert "wrong-pw-9f1c" not in caplog.text
    assert f"redis://:********@127.0.0.1:{server.port}/0" in warning


def _make_budget_file(path: Path) -> None:
    """A real budget file, made by one budget step."""
    from amp_profile_magic._budget._sqlite import SqliteWindow

    window = SqliteWindow(path, description=str(path))
    window.try_send("scope", 60.0, False)
    window.close()


def test_read_only_budget_file(emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A budget file nobody may write: every user is fetched, paced in the kernel, after one warning."""
    path = tmp_path / "budget.sqlite"
    _make_budget_file(path)
    path.chmod(0o400)
    immutable = False
    if os.geteuid() == 0:  # root writes through file modes; the immutable attribute stops root too
        chattr = shutil.which("chattr")
        immutable = chattr is not None and subprocess.run([chattr, "+i", str(path)], check=False).returncode == 0
        if not immutable:
            pytest.skip("running as root without chattr +i: a read-only file cannot be made here")
    try:
        with caplog.at_level(logging.WARNING, logger="amp_profile_magic"):
            ok, _ = batch_through(emu, f"sqlite:///{path}")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o600)
    assert all(ok)
    assert len(ok) == USERS
    [warning] = fallback_warnings(caplog)
    assert str(path) in warning


_LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(60)
"""


def test_locked_budget_file(emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another process holding the file's lock costs one busy timeout, then the batch goes on in the kernel."""
    path = tmp_path / "budget.sqlite"
    _make_budget_file(path)
    locker = subprocess.Popen([sys.executable, "-c", _LOCKER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        with caplog.at_level(logging.WARNING, logger="amp_profile_magic"):
            ok, elapsed = batch_through(emu, f"sqlite:///{path}")
    finally:
        locker.kill()
        locker.wait(10)
    assert all(ok)
    assert len(ok) == USERS
    [warning] = fallback_warnings(caplog)
    assert "locked" in warning
    assert elapsed < BUSY_TIMEOUT + USERS / (RATE / 2) * 60 + 5


def test_a_participant_killed_mid_batch_leaves_the_budget_usable(emu: Emulator, tmp_path: Path) -> None:
    """A participant SIGKILLed mid-batch (mid-transaction or not) leaves no lock behind: the next one shares the
    file without a warning."""
    rate_limiter = f"sqlite:///{tmp_path}/budget.sqlite"
    code = (
        "import sys; from amp_profile_magic import ProfileClient, ProfileQuery\n"
        "c = ProfileClient(endpoint=sys.argv[1], api_key=sys.argv[2], rate_limiter=sys.argv[3], "
        "requests_per_minute=6000)\n"
        "c.lookup_many([ProfileQuery(user_id=f'u{i}') for i in range(10000)])\n"
    )
    victim = subprocess.Popen([sys.executable, "-c", code, emu.url, emu.api_key, rate_limiter])
    deadline = time.monotonic() + 30
    while emu.request_count < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.kill()
    victim.wait(10)
    assert emu.request_count >= 20
    from amp_profile_magic._budget import _budget

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    _budget.log.addHandler(handler)
    try:
        ok, elapsed = batch_through(emu, rate_limiter)
    finally:
        _budget.log.removeHandler(handler)
    assert all(ok)
    assert not [message for message in records if "Pacing in this kernel" in message]
    assert elapsed < USERS / RATE * 60 + 3

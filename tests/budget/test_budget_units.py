"""The budget's parts, one function at a time: spacing through the library's buckets, the hold and AIMD, settings,
masking, filesystem detection."""

from __future__ import annotations

import itertools
import os
import pickle
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from traitlets import TraitError

from amp_profile_magic import ProfileClient
from amp_profile_magic._batch import PacingSummary
from amp_profile_magic._budget import _aimd, scope_of
from amp_profile_magic._budget._sqlite import SqliteWindow, filesystem_type
from amp_profile_magic._budget._window import HEADROOM, MAX_AHEAD, HoldState, SharedWindow, interval_ms
from amp_profile_magic._secret import Secret, SecretURL, mask_url
from tests.budget.conftest import start_redis
from tests.conftest import CANARY_KEY

#: One interval at 600/min, with the shared budget's headroom.
INTERVAL = 0.1 * (1 + HEADROOM)


@pytest.fixture(params=["sqlite", "redis"])
def windows(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SharedWindow, SharedWindow]]:
    """Two participants' windows (own connections) on one SQLite file, or on one private redis-server."""
    if request.param == "sqlite":
        made: list[SharedWindow] = [SqliteWindow(tmp_path / "b.sqlite", description="b") for _ in range(2)]
        yield made[0], made[1]
    else:
        from amp_profile_magic._budget._redis import RedisWindow

        server = start_redis()
        made = [RedisWindow(SecretURL(server.url), description=server.url) for _ in range(2)]
        try:
            yield made[0], made[1]
        finally:
            server.kill()
    for window in made:
        window.close()


def test_the_interval_rounds_up_with_headroom() -> None:
    """600/min is one send per 101 ms (100 ms and 1% headroom); a rate that does not divide evenly rounds up."""
    assert interval_ms(600.0) == 101
    assert interval_ms(7.0) == 8658  # 8571.4 ms × 1.01 = 8657.1, never shorter
    assert interval_ms(1e9) == 1


def test_sends_through_a_shared_window_are_one_interval_apart_with_no_burst(
    windows: tuple[SharedWindow, SharedWindow],
) -> None:
    """Right after one participant's send, neither it nor another may send until one interval has passed: no burst
    allowance at all, and the wait the library names is that interval."""
    first, second = windows
    wait, rate, sent = first.try_send("scope", 600.0, adaptive=False)
    assert (wait, rate) == (0.0, 600.0)
    for window in (first, second):
        wait, _, _ = window.try_send("scope", 600.0, adaptive=False)
        answered = time.time()  # the wait counts from the answer (both backends' clocks are this machine's here)
        assert 0 < wait <= INTERVAL
        # It names the time one interval after the send (less the 1 ms the library's whole-ms clock rounds), never
        # earlier; later only by what a busy machine took between the answer and this line.
        assert INTERVAL - 0.001 <= answered + wait - sent <= INTERVAL + 0.05


def test_two_participants_taking_turns_never_send_closer_than_an_interval(
    windows: tuple[SharedWindow, SharedWindow],
) -> None:
    """Two participants that each wait as the window says send 20 times between them, each grant one interval (on
    the backend's clock) after the one before, less at most the 1 ms the library's whole-millisecond clock rounds."""
    grants: list[float] = []
    while len(grants) < 20:
        for window in windows:
            wait, _, now = window.try_send("scope", 3000.0, adaptive=False)
            if wait == 0:
                grants.append(now)
            else:
                time.sleep(wait / 2)  # out of step with each other on purpose
    gaps = [later - earlier for earlier, later in itertools.pairwise(grants)]
    assert min(gaps) >= (interval_ms(3000.0) - 1) / 1000, gaps


def test_a_throttle_holds_every_participant_and_cuts_once_per_congestion_event(
    windows: tuple[SharedWindow, SharedWindow],
) -> None:
    """A throttle seen by one participant holds the other's sends for the hold; throttles of requests sent before
    the cut do not cut again, a request sent after it does."""
    first, second = windows
    _, _, now = first.try_send("scope", 600.0, adaptive=True)
    first.throttle("scope", 2.0, sent_at=now, adaptive=True)
    wait, rate, _ = second.try_send("scope", 600.0, adaptive=True)
    assert 1.0 < wait <= 2.0  # the hold (2 s, less what a busy machine took since), not the spacing (0.1 s)
    assert rate == pytest.approx(600 * _aimd.DECREASE, rel=0.01)
    assert 1.0 < second.hold_remaining("scope") <= 2.0
    second.throttle("scope", 0.5, sent_at=now, adaptive=True)  # sent before the cut: the same event
    assert second.try_send("scope", 600.0, adaptive=True)[1] == pytest.approx(600 * _aimd.DECREASE, rel=0.01)
    second.throttle("scope", 0.5, sent_at=None, adaptive=True)  # unknown: a new event
    assert second.try_send("scope", 600.0, adaptive=True)[1] == pytest.approx(600 * _aimd.DECREASE**2, rel=0.01)
    assert second.try_send("scope", 600.0, adaptive=False)[1] == 600.0  # off: the setting, whatever others did


def test_hold_state_cuts_once_per_congestion_event() -> None:
    """HoldState: a throttle pushes the hold; throttles of requests sent before the cut do not cut again."""
    state = HoldState()
    state.throttle(1000.0, 2.0, sent_at=999.9, adaptive=True)
    assert state.held_until == 1002.0
    assert state.cut_factor == pytest.approx(_aimd.DECREASE)
    state.throttle(1000.1, 2.0, sent_at=999.95, adaptive=True)  # sent before the cut at 1000.0: same event
    assert state.cuts == 1
    state.throttle(1003.0, 1.0, sent_at=1002.5, adaptive=True)  # sent after it: a new event
    assert state.cuts == 2


def test_a_request_sent_in_the_cuts_own_millisecond_does_not_cut_again() -> None:
    """A throttle of a request sent in the very tick of the last cut (the shared budgets keep milliseconds, and a
    loopback answer comes back within one) is the same congestion event, not a second one."""
    state = HoldState()
    state.throttle(1000.0, 2.0, sent_at=1000.0, adaptive=True)  # answered within the millisecond it was sent
    state.throttle(1000.2, 2.0, sent_at=1000.0, adaptive=True)  # another request of that tick
    assert state.cuts == 1


def test_the_adaptive_rate_recovers_additively_up_to_the_setting() -> None:
    """After a cut the rate climbs by RECOVERY_PER_SECOND of the setting each second, never above it."""
    state = HoldState()
    state.throttle(1000.0, 0.0, sent_at=None, adaptive=True)
    assert state.rate(1000.0, 600.0, adaptive=True) == pytest.approx(600 * 0.7)
    assert state.rate(1010.0, 600.0, adaptive=True) == pytest.approx(600 * (0.7 + 10 * _aimd.RECOVERY_PER_SECOND))
    assert state.rate(2000.0, 600.0, adaptive=True) == 600.0
    assert state.rate(1000.0, 600.0, adaptive=False) == 600.0  # off: the setting, whatever others did


def test_aimd_never_goes_below_the_floor() -> None:
    """Repeated cuts stop at FLOOR of the setting, so a batch always finishes."""
    factor, at = 1.0, 0.0
    for step in range(50):
        factor, at = _aimd.cut(factor, at, float(step + 1), None) or (factor, at)
    assert factor == _aimd.FLOOR


def test_times_from_a_clock_that_jumped_back_are_forgotten(tmp_path: Path) -> None:
    """A hold, or a logged send, more than MAX_AHEAD in the future (a clock set back) does not make everyone wait."""
    state = HoldState(held_until=5000.0 + MAX_AHEAD * 2, cut_factor=0.1, cut_at=5000.0 + MAX_AHEAD * 2)
    state.forget_the_future(5000.0)
    assert state == HoldState()
    window = SqliteWindow(tmp_path / "b.sqlite", description="b")
    window.try_send("scope", 600.0, adaptive=False)  # creates the scope's log
    future_ms = int((time.time() + MAX_AHEAD * 2) * 1000)
    with sqlite3.connect(tmp_path / "b.sqlite") as connection:
        connection.execute("INSERT INTO sends_scope (name, item_timestamp) VALUES ('x', ?)", (future_ms,))
    time.sleep(INTERVAL)
    assert window.try_send("scope", 600.0, adaptive=False)[0] == 0.0
    window.close()


def test_scope_names_endpoint_and_key_without_the_key() -> None:
    """A scope differs per endpoint and per key, and contains neither the key nor its prefix."""
    scope = scope_of("http://127.0.0.1:1", Secret(CANARY_KEY))
    assert CANARY_KEY not in scope
    assert CANARY_KEY[:8] not in scope
    assert scope != scope_of("http://127.0.0.1:2", Secret(CANARY_KEY))
    assert scope != scope_of("http://127.0.0.1:1", Secret("another-key"))
    assert scope == scope_of("http://127.0.0.1:1/", Secret(CANARY_KEY))


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw-1@host:6379/0", "redis://:********@host:6379/0"),
        ("rediss://user:pw-1@host/2", "rediss://user:********@host/2"),
        ("redis://host:6379/0?password=pw-1&db=1", "redis://host:6379/0?password=********&db=1"),
        ("sqlite:///tmp/budget.sqlite", "sqlite:///tmp/budget.sqlite"),
        ("kernel", "kernel"),
    ],
)
def test_urls_print_with_the_password_masked(url: str, masked: str) -> None:
    """mask_url and SecretURL's str, repr and format hide a password and leave everything else as written."""
    assert mask_url(url) == masked
    secret = SecretURL(url)
    assert str(secret) == masked
    assert repr(secret) == repr(masked)
    assert f"{secret}" == masked
    assert secret.reveal() == url
    with pytest.raises(TypeError):
        pickle.dumps(secret)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("memcached://host", "memcached:// is not kernel, sqlite:///PATH or redis://HOST:PORT/DB"),
        ("sqlite://relative.db", "sqlite:///ABSOLUTE/PATH"),
        ("redis://", "redis:// needs a host"),
        ("redis://:pw-7@host:notaport/0", "not a URL"),
        ("Kernel ", "is not kernel"),
    ],
)
def test_a_bad_rate_limiter_is_refused_in_one_line_without_the_password(value: str, message: str) -> None:
    """Assigning a rate_limiter that is not kernel, sqlite:///PATH or redis://… fails naming what is wrong."""
    client = ProfileClient()
    with pytest.raises(TraitError) as caught:
        client.rate_limiter = value
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "pw-7" not in str(caught.value)


def test_the_default_budget_is_a_file_of_its_own_in_the_user_cache() -> None:
    """Without a setting, the budget is rate-budget.sqlite in the (XDG) user cache directory; the variable wins."""
    assert (
        str(ProfileClient().rate_limiter)
        == f"sqlite:///{os.environ['XDG_CACHE_HOME'].lstrip('/')}/amp_profile_magic/rate-budget.sqlite"
    )


def test_the_environment_variable_sets_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """$AMPLITUDE_PROFILE_RATE_LIMITER is the default when set."""
    monkeypatch.setenv("AMPLITUDE_PROFILE_RATE_LIMITER", "kernel")
    assert ProfileClient().rate_limiter.reveal() == "kernel"


def test_a_bad_rate_limiter_in_the_environment_fails_each_lookup_in_one_line(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped $AMPLITUDE_PROFILE_RATE_LIMITER leaves %config's listing readable, its password masked, and fails
    each lookup with one line naming the variable instead of a traceback from reading the setting."""
    monkeypatch.setenv("AMPLITUDE_PROFILE_RATE_LIMITER", "bogus://:pw-9@127.0.0.1:6379/0")
    listing = run("%config ProfileClient")
    assert listing.result.error_in_exec is None, listing.everything
    assert "Current: 'bogus://:********@127.0.0.1:6379/0'" in listing.everything
    failed = run("%ampprofile user=12345 props")
    assert type(failed.result.error_in_exec).__name__ == "CellFailed"
    assert "Profile lookup failed (ConfigurationError)" in failed.everything
    assert "(from $AMPLITUDE_PROFILE_RATE_LIMITER) is not usable: bogus:// is not kernel" in failed.everything
    assert "Traceback" not in failed.everything
    assert "pw-9" not in listing.everything + failed.everything + str(failed.result.error_in_exec)


def test_a_deleted_budget_file_is_replaced_and_shared_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """When the budget file is deleted mid-batch, a running kernel says so once and moves to the new file, where it
    counts together with kernels started since, instead of pacing alone in a file only it still has open."""
    path = tmp_path / "budget.sqlite"
    running = SqliteWindow(path, description="running")
    assert running.try_send("scope", 60.0, adaptive=False)[0] == 0.0
    for item in tmp_path.iterdir():
        item.unlink()
    time.sleep(1.1)
    with caplog.at_level("WARNING", logger="amp_profile_magic"):
        assert running.try_send("scope", 60.0, adaptive=False)[0] == 0.0
        assert running.try_send("scope", 60.0, adaptive=False)[0] > 0.5  # warned once, not per send
    started = SqliteWindow(path, description="started since")
    assert started.try_send("scope", 60.0, adaptive=False)[0] > 0.5, "the kernels count apart"
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings == [f"The rate budget file {path} was deleted or replaced; counting in the new one."]
    running.close()
    started.close()


def test_the_budget_file_is_private(tmp_path: Path) -> None:
    """The budget file and its WAL files are 0600, in a directory of 0700 that the budget created."""
    path = tmp_path / "new" / "budget.sqlite"
    window = SqliteWindow(path, description=str(path))
    window.try_send("scope", 600.0, adaptive=False)
    for item in path.parent.iterdir():
        assert item.stat().st_mode & 0o777 == 0o600, item
    assert path.parent.stat().st_mode & 0o777 == 0o700
    window.close()


_MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
server:/export/home /home nfs4 rw,vers=4.2 0 0
/dev/vdb /home/local\\040disk ext4 rw 0 0
tmpfs /tmp tmpfs rw 0 0
"""


@pytest.mark.parametrize(
    ("directory", "fstype"),
    [
        ("/home/ana/.cache", "nfs4"),
        ("/home/local disk/x", "ext4"),
        ("/tmp/x/y", "tmpfs"),  # noqa: S108 - a path in a made-up mount table
        ("/var/lib", "ext4"),
    ],
)
def test_filesystem_type_finds_the_innermost_mount(directory: str, fstype: str) -> None:
    """The longest mount point containing the directory decides, escaped spaces included."""
    assert filesystem_type(Path(directory), mounts=_MOUNTS) == fstype


def test_a_budget_file_on_nfs_is_refused_with_what_to_do_instead(tmp_path: Path) -> None:
    """On a network filesystem the file is never opened; the message names the filesystem, Redis and a local path."""
    from amp_profile_magic._budget import _sqlite
    from amp_profile_magic._budget._window import BackendDown

    window = SqliteWindow(tmp_path / "budget.sqlite", description="sqlite:///x")
    original = _sqlite.filesystem_type
    _sqlite.filesystem_type = lambda directory, mounts=None: "nfs4"  # type: ignore[assignment]
    try:
        with pytest.raises(BackendDown, match=r"network filesystem \(nfs4\).*redis://.*local disk"):
            window.try_send("scope", 600.0, adaptive=False)
    finally:
        _sqlite.filesystem_type = original
    assert not (tmp_path / "budget.sqlite").exists()


def test_pacing_summary_reads_as_the_issue_asks() -> None:
    """The batch's pacing fact renders as "paced down to 240/min after 3 throttles", and as nothing when unchanged."""
    assert PacingSummary(throttled=3, paced_down_to=240.4).describe() == "paced down to 240/min after 3 throttles"
    assert PacingSummary(throttled=1, paced_down_to=1234.0).describe() == "paced down to 1,234/min after 1 throttle"
    assert PacingSummary(throttled=4).describe() == ""


def test_pacing_summary_says_what_happened_each_part_only_when_non_zero() -> None:
    """A fallback reads "budget: kernel fallback at N/min (why)", never "paced down … after 0 throttles"; a rate
    lowered by earlier throttles (this kernel's or another's) says so; both parts join like the summary line's."""
    fallback = PacingSummary(fallback="redis unreachable", fallback_rate=300.0)
    assert fallback.parts() == ["budget: kernel fallback at 300/min (redis unreachable)"]
    recovering = PacingSummary(paced_down_to=420.0).describe()
    assert recovering == "paced down to 420/min, still recovering from earlier throttles"
    both = PacingSummary(throttled=2, paced_down_to=210.0, fallback="budget file locked", fallback_rate=300.0)
    assert both.describe() == (
        "budget: kernel fallback at 300/min (budget file locked) · paced down to 210/min after 2 throttles"
    )

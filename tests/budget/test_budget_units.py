"""The budget's parts, one function at a time: GCRA steps, AIMD, settings, masking, filesystem detection."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from traitlets import TraitError

from amp_profile_magic import ProfileClient
from amp_profile_magic._batch import PacingSummary
from amp_profile_magic._budget import _aimd, scope_of
from amp_profile_magic._budget._gcra import HEADROOM, LATENESS_FORGIVEN, MAX_AHEAD, ScopeState
from amp_profile_magic._budget._sqlite import SqliteWindow, filesystem_type
from amp_profile_magic._secret import Secret, SecretURL, mask_url
from tests.conftest import CANARY_KEY

#: One interval at 600/min, with the shared budget's headroom.
INTERVAL = 0.1 * (1 + HEADROOM)


def test_reservations_are_one_interval_apart_with_no_burst() -> None:
    """Ten reservations at the same instant get slots one interval apart at 600/min: no burst allowance at all."""
    state = ScopeState()
    waits = [state.reserve(1000.0, 600.0, adaptive=False)[0] for _ in range(10)]
    assert waits == pytest.approx([i * INTERVAL for i in range(10)])


def test_a_claim_waits_a_full_interval_after_the_last_actual_send() -> None:
    """A late waker sends; the next slot's holder then waits until one interval after that send, less at most
    LATENESS_FORGIVEN of the late waker's lateness."""
    state = ScopeState()
    state.reserve(1000.0, 600.0, adaptive=False)
    state.reserve(1000.0, 600.0, adaptive=False)  # the second slot, one interval later
    assert state.claim(1000.08, 600.0, adaptive=False) == 0.0  # the first holder woke 80 ms late
    due = 1000.08 - LATENESS_FORGIVEN + INTERVAL
    assert state.claim(1000.1, 600.0, adaptive=False) == pytest.approx(due - 1000.1)
    assert state.claim(due + 0.001, 600.0, adaptive=False) == 0.0
    # That claim was 1 ms after its earliest time, all of it forgiven: the next is due one interval after `due`.
    assert state.claim(due + 0.05, 600.0, adaptive=False) == pytest.approx(INTERVAL - 0.05)


def test_a_throttle_holds_every_slot_and_cuts_once_per_congestion_event() -> None:
    """A throttle pushes all later sends past the hold; throttles of requests sent before the cut do not cut again."""
    state = ScopeState()
    state.throttle(1000.0, 2.0, sent_at=999.9, adaptive=True)
    assert state.reserve(1000.5, 600.0, adaptive=False)[0] == pytest.approx(1.5)  # the hold, not the spacing
    assert state.cut_factor == pytest.approx(_aimd.DECREASE)
    state.throttle(1000.1, 2.0, sent_at=999.95, adaptive=True)  # sent before the cut at 1000.0: same event
    assert state.cuts == 1
    state.throttle(1003.0, 1.0, sent_at=1002.5, adaptive=True)  # sent after it: a new event
    assert state.cuts == 2


def test_the_adaptive_rate_recovers_additively_up_to_the_setting() -> None:
    """After a cut the rate climbs by RECOVERY_PER_SECOND of the setting each second, never above it."""
    state = ScopeState()
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


def test_times_from_a_clock_that_jumped_back_are_forgotten() -> None:
    """A stored slot more than MAX_AHEAD in the future (a clock set back) does not make everyone wait for it."""
    state = ScopeState(next_slot=5000.0 + MAX_AHEAD * 2, held_until=5000.0 + MAX_AHEAD * 2)
    assert state.reserve(5000.0, 600.0, adaptive=False)[0] == 0.0


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


def test_the_budget_file_is_private(tmp_path: Path) -> None:
    """The budget file and its WAL files are 0600, in a directory of 0700 that the budget created."""
    path = tmp_path / "new" / "budget.sqlite"
    window = SqliteWindow(path, description=str(path))
    window.reserve("scope", 600.0, adaptive=False)
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
            window.reserve("scope", 600.0, adaptive=False)
    finally:
        _sqlite.filesystem_type = original
    assert not (tmp_path / "budget.sqlite").exists()


def test_pacing_summary_reads_as_the_issue_asks() -> None:
    """The batch's pacing fact renders as "paced down to 240/min after 3 throttles", and as nothing when unchanged."""
    assert PacingSummary(throttled=3, paced_down_to=240.4).describe() == "paced down to 240/min after 3 throttles"
    assert PacingSummary(throttled=1, paced_down_to=1234.0).describe() == "paced down to 1,234/min after 1 throttle"
    assert PacingSummary(throttled=4).describe() == ""

"""Three processes share one budget against one emulator whose rolling-window limit equals that budget."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from amp_profile_magic.emulator import Emulator
from tests.budget.conftest import RedisServer, report

#: 600 per minute (the API's) counted over 6 s: a full window (60 requests) in seconds instead of a minute. The
#: interval (100 ms) stays long beside the scheduling jitter of a loaded two-core machine (tens of ms), which the
#: budget cannot see: it spaces grants, the emulator counts arrivals.
LIMIT = 600
WINDOW = 6.0
PER_PARTICIPANT = 30

pytestmark = pytest.mark.slow


@pytest.fixture
def limited() -> Iterator[Emulator]:
    """An emulator that throttles above LIMIT per minute over a WINDOW-second rolling window."""
    with Emulator(seed=3, rate_limit_per_minute=LIMIT, rate_limit_window=WINDOW) as emu:
        yield emu


def run_three(emu: Emulator, start: Callable[..., Any], tmp_path: Path, **settings: Any) -> list[dict[str, Any]]:
    """Three participants, 30 distinct users each, beginning together once all three are set up; their reports."""
    users = emu.dataset.user_ids[: 3 * PER_PARTICIPANT]
    ready = [tmp_path / f"ready-{i}" for i in range(3)]
    go = tmp_path / "go"
    processes = [
        start(
            url=emu.url,
            key=emu.api_key,
            users=users[i * PER_PARTICIPANT : (i + 1) * PER_PARTICIPANT],
            ready_file=str(ready[i]),
            go_file=str(go),
            requests_per_minute=LIMIT,
            **settings,
        )
        for i in range(3)
    ]
    # Wait for the interpreters to be up (not a fixed time: that was 3 s, too long unloaded and maybe too short on a
    # loaded machine), then start all three at once.
    deadline = time.monotonic() + 60
    while not all(path.exists() for path in ready) and time.monotonic() < deadline:
        ended = [process for process in processes if process.poll() is not None]
        assert not ended, f"a participant ended before it was ready: {ended[0].communicate()[1][-2000:]}"
        time.sleep(0.01)
    go.touch()
    return [report(process) for process in processes]


def assert_shared_without_throttling(emu: Emulator, reports: list[dict[str, Any]]) -> None:
    """Every user fetched once, nothing throttled, and the arrivals no faster than the shared limit."""
    users = emu.dataset.user_ids[: 3 * PER_PARTICIPANT]
    assert sorted(user for result in reports for user in result["ok"]) == sorted(users)
    assert [result["failed"] for result in reports] == [[], [], []]
    assert emu.stats()["throttled"] == 0, [result["stderr"][-500:] for result in reports]
    fetched = [entry.params.get("user_id") for entry in emu.requests]
    assert sorted(fetched) == sorted(users)  # each user requested exactly once
    at = sorted(entry.at for entry in emu.requests)
    # Evenly spaced across processes: no burst at a window's edge. 90 requests at 10/s take at least 8.9 s.
    assert at[-1] - at[0] >= (len(at) - 1) * 60 / LIMIT - 0.1
    gaps = [later - earlier for earlier, later in itertools.pairwise(at)]
    short = [gap for gap in gaps if gap < 60 / LIMIT * 0.5]
    assert len(short) <= len(gaps) // 10, f"{len(short)} of {len(gaps)} gaps under half an interval: {short}"


def test_three_processes_share_an_sqlite_budget(
    limited: Emulator, participants: Callable[..., Any], tmp_path: Path
) -> None:
    """Three processes pacing against one SQLite file at the emulator's limit are never throttled."""
    reports = run_three(limited, participants, tmp_path, rate_limiter=f"sqlite:///{tmp_path}/shared.sqlite")
    assert_shared_without_throttling(limited, reports)


def test_three_processes_share_a_redis_budget(
    limited: Emulator, participants: Callable[..., Any], redis_server: RedisServer, tmp_path: Path
) -> None:
    """Three processes pacing against one Redis server at the emulator's limit are never throttled."""
    reports = run_three(limited, participants, tmp_path, rate_limiter=redis_server.url)
    assert_shared_without_throttling(limited, reports)


def test_three_processes_with_default_settings_share_the_machine_budget(
    limited: Emulator, participants: Callable[..., Any], tmp_path: Path
) -> None:
    """With no rate_limiter set, three processes of one user (same cache directory) share the default file."""
    reports = run_three(limited, participants, tmp_path)
    assert_shared_without_throttling(limited, reports)
    budget_file = Path(os.environ["XDG_CACHE_HOME"]) / "amp_profile_magic" / "rate-budget.sqlite"
    assert budget_file.exists()
    assert budget_file.stat().st_mode & 0o777 == 0o600  # private, like the store


def test_kernel_pacing_alone_is_throttled_when_three_processes_share_the_limit(
    limited: Emulator, participants: Callable[..., Any], tmp_path: Path
) -> None:
    """The control: with rate_limiter=kernel each process paces only itself, so three of them are throttled."""
    reports = run_three(limited, participants, tmp_path, rate_limiter="kernel")
    assert limited.stats()["throttled"] > 0
    assert sum(len(result["ok"]) for result in reports) == 3 * PER_PARTICIPANT  # retried, still every user

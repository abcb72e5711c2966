"""Pacing, measured from the emulator's arrival timestamps: never over the limit, close to it, shared per process."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from amp_profile_magic import BatchResult, ProfileClient, ProfileQuery
from amp_profile_magic.emulator import Emulator

#: Arrival times carry scheduling noise (two cores shared with other test runs, the emulator and a dozen client
#: threads in this process, a new connection to accept first): a request stamped late makes the next gap look that
#: much short. The client's own release times are strictly spaced; this only absorbs the way from the pacer to the
#: emulator's clock (up to ~55 ms seen with a spare core kept busy). A pacer even 10% too fast still fails the
#: windows of 40 requests, and an unpaced one fails at once.
SLACK = 0.1
#: A consecutive gap counts as on time when it is at most this much under the interval.
JITTER = 0.01


def assert_paced(at: list[float], requests_per_minute: float) -> None:
    """No window of k + 1 arrivals is shorter than k intervals (less SLACK), and at most one consecutive pair in
    ten is less than an interval (less JITTER) apart: an unpaced or bunching client fails both."""
    interval = 60.0 / requests_per_minute
    for first in range(len(at)):
        for last in range(first + 1, len(at)):
            span = at[last] - at[first]
            needed = (last - first) * interval - SLACK
            assert span >= needed, (
                f"requests {first}..{last} arrived within {span:.3f}s; {requests_per_minute:g}/min needs {needed:.3f}s"
            )
    gaps = [later - earlier for earlier, later in itertools.pairwise(at)]
    short = [round(gap, 4) for gap in gaps if gap < interval - JITTER]
    assert len(short) <= max(1, len(gaps) // 10), f"{len(short)} of {len(gaps)} gaps are short of {interval}s: {short}"


def achieved_per_minute(at: list[float]) -> float:
    """The arrival rate from first to last request, per minute."""
    return (len(at) - 1) / (at[-1] - at[0]) * 60.0


def test_a_batch_never_exceeds_the_rate_and_reaches_ninety_percent_of_it(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """40 lookups through lookup_many (8 in flight) at 1200/minute arrive at least an interval apart, and at
    no less than 85% of the limit overall."""
    client = make_client(requests_per_minute=1200, max_concurrency=8)
    users = emulator.dataset.user_ids[:40]
    emulator.reset()
    result = client.lookup_many([ProfileQuery(user_id=user) for user in users])
    assert [outcome.profile.user_id for outcome in result if outcome.profile] == users
    at = [entry.at for entry in emulator.requests]
    assert len(at) == 40
    assert_paced(at, 1200)
    # 85%, not more: on a loaded 2-core machine late wake-ups cost a few percent; benchmark figure 1 measures the
    # efficiency itself (≥ 0.95 there). The upper bound is the promise and stays tight.
    assert 0.85 * 1200 <= achieved_per_minute(at) <= 1200 * 1.05


def test_concurrency_overlaps_slow_requests_without_breaking_the_pace(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """Answers slower than the interval still keep the pace, because several requests are in flight at once."""
    from amp_profile_magic.emulator import Faults

    client = make_client(requests_per_minute=1200, max_concurrency=8)
    emulator.faults = Faults(latency=0.2)
    users = emulator.dataset.user_ids[40:64]
    emulator.reset()
    started = time.monotonic()
    result = client.lookup_many([ProfileQuery(user_id=user) for user in users])
    elapsed = time.monotonic() - started
    assert all(outcome.ok for outcome in result)
    at = [entry.at for entry in emulator.requests]
    assert_paced(at, 1200)
    # Sequentially this would take 24 x 0.2 s = 4.8 s; paced and overlapped it takes about 23 x 0.05 + 0.2 s.
    assert elapsed < 3.0
    assert achieved_per_minute(at) >= 0.9 * 1200


def test_the_pacer_is_shared_by_every_client_in_the_process(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """Two clients at 1200/minute running batches at the same time share one budget: together they stay at
    1200/minute, not 2400."""
    first, second = make_client(requests_per_minute=1200), make_client(requests_per_minute=1200)
    users = emulator.dataset.user_ids[100:140]
    batches: dict[str, BatchResult] = {}

    def run(name: str, client: ProfileClient, chunk: list[str]) -> None:
        batches[name] = client.lookup_many([ProfileQuery(user_id=user) for user in chunk])

    emulator.reset()
    threads = [
        threading.Thread(target=run, args=("first", first, users[:20])),
        threading.Thread(target=run, args=("second", second, users[20:])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(outcome.ok for name in ("first", "second") for outcome in batches[name])
    log = emulator.requests
    assert len(log) == 40
    assert_paced([entry.at for entry in log], 1200)
    # Both clients were sending throughout, not one after the other.
    early = {entry.params["user_id"] for entry in log[:20]}
    assert early & set(users[:20])
    assert early & set(users[20:])


def test_throttling_holds_every_request_of_the_process(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """After a 429 with Retry-After: 1, no request of the batch (not even those already waiting for their turn)
    reaches the API before the second is up; then every user is fetched."""
    client = make_client(requests_per_minute=300, max_concurrency=4)
    users = emulator.dataset.user_ids[200:205]
    emulator.reset()
    emulator.throttle_burst(1)
    result = client.lookup_many([ProfileQuery(user_id=user) for user in users])
    assert [outcome.profile.user_id for outcome in result if outcome.profile] == users
    log = emulator.requests
    assert [entry.status for entry in log] == [429, 200, 200, 200, 200, 200]
    throttled_at = log[0].at
    assert all(entry.at - throttled_at >= 1.0 for entry in log[1:])
    assert_paced([entry.at for entry in log], 300)


def test_single_lookups_are_paced_too(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """Consecutive lookup() calls from one thread keep the interval, and props + comps pairs count as two."""
    client = make_client(requests_per_minute=1200)
    emulator.reset()
    for _ in range(5):
        client.lookup(user_id="12345", props=True, comps=True)
    at = [entry.at for entry in emulator.requests]
    assert len(at) == 10
    assert_paced(at, 1200)

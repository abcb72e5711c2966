"""Figure 1: how close a paced batch runs to the rate limit, without a single throttled response.

The emulator enforces ``--rate-limit`` over a rolling 60-second window and adds ``--latency``; the client is set to
the same limit. Efficiency is the elapsed time divided by the ideal (users ÷ limit): 1.00 means the batch ran
exactly at the limit.

1,000 users at 6,000/minute finish in about 10 s, so the emulator's 60-second window never fills and "no throttled
responses" cannot fail there. Figure 1b therefore also runs a batch longer than one window at the API's real limit
(600/minute): there every request after the first minute meets a full window, and any send that bunches up would
be throttled.
"""

from __future__ import annotations

import time
from typing import Any

from _harness import EmulatorProcess, Row, emulator_process, user_ids

TARGET = 1.05


def _paced_batch(emulator: EmulatorProcess, users: int, limit: int) -> tuple[float, int, dict[str, Any]]:
    """Run one paced batch; return its elapsed seconds, its failed users and the emulator's counters."""
    from amp_profile_magic import ProfileClient, ProfileQuery
    from amp_profile_magic._pacing import kernel_pacer

    # Kernel pacing, as before the shared budget existed: figure 7 measures the shared backends.
    client = ProfileClient(
        endpoint=emulator.url, api_key=emulator.api_key, requests_per_minute=limit, rate_limiter="kernel"
    )
    # Warm up imports and the connection pool, then start from an empty window and a fresh pacing budget.
    client.lookup(user_id="12345", props=True)
    emulator.reset()
    kernel_pacer().reset()
    queries = [ProfileQuery(user_id=user, props=True) for user in user_ids(users, users=5000)]
    started = time.perf_counter()
    batch = client.lookup_many(queries)
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed, len(batch.failures), emulator.stats()


def _row(figure: str, users: int, limit: int, latency: float) -> Row:
    with emulator_process("--rate-limit", str(limit), "--latency", str(latency)) as emulator:
        elapsed, failed, stats = _paced_batch(emulator, users, limit)
    ideal = users / limit * 60
    ratio = elapsed / ideal
    throttled = int(stats["throttled"])
    return Row(
        figure=figure,
        measured=f"{ratio:.3f} ({elapsed:.2f} s vs ideal {ideal:.2f} s); {throttled} throttled, "
        f"{failed} failed, {stats['requests']} requests",
        target=f"≤ {TARGET:.2f}, 0 throttled",
        met=ratio <= TARGET and throttled == 0 and not failed,
        notes=f"{users} users, props, emulator --rate-limit {limit} --latency {latency}; client "
        f"requests_per_minute={limit}, rate_limiter=kernel, max_concurrency=8 (default), lookup_many",
        data={"users": users, "limit": limit, "elapsed": elapsed, "ideal": ideal, "ratio": ratio, "stats": stats},
    )


def run(*, quick: bool) -> list[Row]:
    """Figure 1 (and, unless ``quick``, 1b with a window that fills)."""
    rows = [_row("1 pacing efficiency", 200 if quick else 1000, 6000, 0.05)]
    if not quick:
        rows.append(_row("1b pacing, full 60 s window (API limit)", 650, 600, 0.05))
    return rows

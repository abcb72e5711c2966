"""Figures 8-10: the shared request budget (rate_limiter) across processes, beside other traffic, and its cost.

8. **Sharing at the limit.** Three client processes, each with its own users, start together against one emulator
   process whose rolling-window limit equals the shared budget. Combined elapsed (first start to last finish) ÷
   ideal (all users ÷ limit), and the emulator's throttled count, for the default SQLite budget, for Redis (a
   private redis-server, when installed) and, beside them, for ``kernel`` pacing (each process paces only itself).
9. **Beside other traffic.** A generator in this process sends half the limit, evenly, for one window before and
   during a batch of one client (adaptive pacing on, requests_per_minute = the whole limit). Measured: the share
   of the client's requests that were throttled, and its rate ÷ the rate the other traffic left.
10. **Cost per request** of each backend: the time of one pacing acquisition when the rate never binds, in one
   thread, for ``kernel``, the default SQLite file (the file lock, our hold row and pyrate-limiter's check-and-log)
   and Redis on loopback (one round trip for the server's time and our hold, one for pyrate-limiter's GCRA).

Figures 8 and 9 count the limit over a shorter rolling window than the API's minute, at the same rate
(``--rate-limit-window``), so the window fills several times within seconds; the README's figure list says which.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from _harness import EmulatorProcess, Row, emulator_process, user_ids

SHARE_TARGET = 1.05
THROTTLED_SHARE_TARGET = 0.02
USE_TARGET = 0.8
COST_TARGET_US = 1000.0

_CHILD = """
import json, sys, time
from amp_profile_magic import ProfileClient, ProfileQuery
spec = json.loads(sys.argv[1])
settings = {k: spec[k] for k in ("rate_limiter",) if k in spec}
# The local store is off, as in every figure of the network path: the three runs share one cache directory, and a
# store would answer the second and third runs' users from the first's.
client = ProfileClient(endpoint=spec["url"], api_key=spec["key"], requests_per_minute=spec["rpm"], store="off",
                       **settings)
client._client()
time.sleep(max(0.0, spec["start_at"] - time.time()))
started = time.time()
batch = client.lookup_many([ProfileQuery(user_id=u) for u in spec["users"]])
print(json.dumps({"started": started, "finished": time.time(), "failed": len(batch.failures),
                  "throttled": batch.pacing.throttled}))
"""


@contextmanager
def redis_server() -> Iterator[str | None]:
    """A private redis-server on a free loopback port (its URL), or None when redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _three(emulator: EmulatorProcess, users: list[str], limit: int, env: dict[str, str], **spec: Any) -> dict[str, Any]:
    """Three child processes share ``users``; their combined elapsed time and the emulator's counters."""
    emulator.reset()
    third = len(users) // 3
    start_at = time.time() + 4.0
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD,
                json.dumps(
                    {
                        "url": emulator.url,
                        "key": emulator.api_key,
                        "rpm": limit,
                        "users": users[i * third : (i + 1) * third],
                        "start_at": start_at,
                        **spec,
                    }
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for i in range(3)
    ]
    reports = [json.loads(child.communicate(timeout=600)[0].strip().splitlines()[-1]) for child in children]
    elapsed = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
    return {"elapsed": elapsed, "failed": sum(r["failed"] for r in reports), "stats": emulator.stats()}


def figure_8(*, quick: bool) -> list[Row]:
    """Three processes × N users sharing one budget at the limit, per backend, with kernel pacing beside them."""
    # The API's own limit: 600/minute, a 100 ms interval between sends across the three processes.
    limit, window = (600, 6.0) if quick else (600, 10.0)
    users = user_ids(120 if quick else 300, users=5000)
    ideal = len(users) / limit * 60
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory() as cache,
        redis_server() as redis_url,
        emulator_process("--rate-limit", str(limit), "--rate-limit-window", str(window)) as emulator,
    ):
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        env.pop("AMPLITUDE_PROFILE_RATE_LIMITER", None)
        runs: dict[str, dict[str, Any] | None] = {
            "default (SQLite)": _three(emulator, users, limit, env),
            "redis": _three(emulator, users, limit, env, rate_limiter=redis_url) if redis_url else None,
            "kernel": _three(emulator, users, limit, env, rate_limiter="kernel"),
        }
    kernel = runs["kernel"]
    assert kernel is not None
    beside = (
        f"kernel pacing beside it: {kernel['elapsed'] / ideal:.3f}, {kernel['stats']['throttled']} throttled, "
        f"{kernel['failed']} failed"
    )
    for name in ("default (SQLite)", "redis"):
        result = runs[name]
        if result is None:
            rows.append(Row(f"8 sharing at the limit, {name}", "n/a: redis-server not installed", "-", None))
            continue
        ratio = result["elapsed"] / ideal
        throttled = int(result["stats"]["throttled"])
        rows.append(
            Row(
                figure=f"8 sharing at the limit, {name}",
                measured=f"{ratio:.3f} ({result['elapsed']:.2f} s vs ideal {ideal:.2f} s); {throttled} throttled, "
                f"{result['failed']} failed; {beside}",
                target=f"≤ {SHARE_TARGET:.2f}, 0 throttled",
                met=ratio <= SHARE_TARGET and throttled == 0 and not result["failed"],
                notes=f"3 processes × {len(users) // 3} users (no sections), each requests_per_minute={limit}; "
                f"emulator --rate-limit {limit} --rate-limit-window {window:g} (a window fills "
                f"{ideal / window:.1f} times); elapsed from the first start to the last finish",
                data={"ideal": ideal, "runs": runs},
            )
        )
    return rows


class _OtherTraffic:
    """Evenly spaced requests from this process for user 12345, unpaced by any budget; counts its answers."""

    def __init__(self, emulator: EmulatorProcess, per_minute: float) -> None:
        self._emulator = emulator
        self._interval = 60.0 / per_minute
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0
        self.throttled = 0

    def start(self) -> None:
        """Begin sending."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the sender."""
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        headers = {"Authorization": f"Api-Key {self._emulator.api_key}"}
        with httpx.Client(base_url=self._emulator.url, headers=headers, timeout=10) as http:
            next_at = time.monotonic()
            while not self._stop.is_set():
                status = http.get("/v1/userprofile", params={"user_id": "12345"}).status_code
                self.sent += 1
                self.throttled += status == 429
                next_at += self._interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))


def figure_9(*, quick: bool) -> list[Row]:
    """Half the limit taken by other traffic: the client's throttled share and its use of what is left."""
    from amp_profile_magic import ProfileClient, ProfileQuery

    limit, window = 3000, 6.0
    users = user_ids(500 if quick else 1500, users=5000)
    with (
        tempfile.TemporaryDirectory() as cache,
        emulator_process("--rate-limit", str(limit), "--rate-limit-window", str(window)) as emulator,
    ):
        client = ProfileClient(
            endpoint=emulator.url,
            api_key=emulator.api_key,
            requests_per_minute=limit,
            rate_limiter=f"sqlite:///{cache}/budget.sqlite",
        )
        client.lookup(user_id="12345")
        emulator.reset()
        other = _OtherTraffic(emulator, limit / 2)
        other.start()
        time.sleep(window)  # the other job fills its half of the window first
        sent_before, throttled_before = other.sent, other.throttled
        started = time.perf_counter()
        batch = client.lookup_many([ProfileQuery(user_id=user) for user in users])
        elapsed = time.perf_counter() - started
        other_sent = other.sent - sent_before
        other_admitted = other_sent - (other.throttled - throttled_before)
        other.stop()
        stats = emulator.stats()
    mine = int(stats["requests"]) - other.sent - 1
    mine_throttled = int(stats["throttled"]) - other.throttled
    share = mine_throttled / mine
    left = limit - other_admitted / elapsed * 60  # per minute, what the other traffic left
    used = (len(users) - len(batch.failures)) / elapsed * 60
    use = used / left
    return [
        Row(
            figure="9 beside other traffic (half the limit)",
            measured=f"{share:.2%} of {mine} requests throttled; used {use:.2f} of what was left "
            f"({used:,.0f}/min of {left:,.0f}/min); {batch.pacing.describe() or 'never paced down'}; "
            f"{len(batch.failures)} failed",
            target=f"< {THROTTLED_SHARE_TARGET:.0%} throttled, use ≥ {USE_TARGET}",
            met=share < THROTTLED_SHARE_TARGET and use >= USE_TARGET and not batch.failures,
            notes=f"emulator --rate-limit {limit} --rate-limit-window {window:g}; other traffic {limit // 2}/min "
            f"from one window before the batch to its end; client requests_per_minute={limit}, adaptive pacing "
            f"on, SQLite budget, {len(users)} users (ideal {len(users) / (limit / 2) * 60:.0f} s)",
            data={"elapsed": elapsed, "mine": mine, "throttled": mine_throttled, "left": left, "used": used},
        )
    ]


def _acquire_cost(rate_limiter: str, count: int) -> float:
    """Median microseconds of one acquisition over ``count`` sends at a rate that never binds."""
    from amp_profile_magic._budget import open_budget, reset
    from amp_profile_magic._secret import Secret, SecretURL

    budget = open_budget(SecretURL(rate_limiter), endpoint="http://127.0.0.1:1", key=Secret("bench"))
    budget.acquire(6e9, None, True)  # connect, create the file
    samples = []
    for _ in range(count):
        # The shared window counts whole milliseconds (its shortest interval is 1 ms): 2 ms apart, it never binds.
        time.sleep(0.002)
        started = time.perf_counter()
        budget.acquire(6e9, None, True)
        samples.append(time.perf_counter() - started)
    reset()
    return statistics.median(samples) * 1e6


def figure_10(*, quick: bool) -> list[Row]:
    """Each backend's cost per request."""
    count = 500 if quick else 3000
    with tempfile.TemporaryDirectory() as cache, redis_server() as redis_url:
        costs = {
            "kernel": _acquire_cost("kernel", count),
            "SQLite": _acquire_cost(f"sqlite:///{cache}/b.sqlite", count),
        }
        if redis_url:
            costs["redis"] = _acquire_cost(redis_url, count)
    measured = ", ".join(f"{name} {cost:,.0f} µs" for name, cost in costs.items())
    return [
        Row(
            figure="10 budget cost per request",
            measured=measured + ("" if "redis" in costs else ", redis n/a (not installed)"),
            target=f"< {COST_TARGET_US:,.0f} µs (1% of the API's 100 ms interval)",
            met=all(cost < COST_TARGET_US for cost in costs.values()),
            notes=f"median of {count} acquisitions, 2 ms apart, at a rate that never binds, one thread (SQLite: "
            "file lock, hold row, pyrate-limiter's SQLiteBucket put; Redis on loopback: time + hold, then "
            "pyrate-limiter's GCRA script); the default budget is the SQLite row",
            data=costs,
        )
    ]


def run(*, quick: bool) -> list[Row]:
    """Figures 8-10."""
    return [*figure_8(quick=quick), *figure_9(quick=quick), *figure_10(quick=quick)]

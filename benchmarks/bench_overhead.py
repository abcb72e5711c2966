"""Figure 3: what the client costs on top of the HTTP requests themselves.

No latency, no limit (the client's pacing raised out of the way), 5,000 users, recommendations of 50 items. The
package path is the magic, ``%ampprofile --users ids recs=recA`` in a real IPython shell, ending in the recs
DataFrame (250,000 rows). The raw path is sequential GETs on one keep-alive ``httpx.Client`` with ``response.json()``
and nothing else: no DataFrame, no validation, no retries.

Like with like: the headline ratio runs the magic with ``max_concurrency=1`` (one request in flight, as the raw
loop); a second row shows the default ``max_concurrency=8`` against the same raw loop. The emulator runs in its own
process on the same two cores, and its answers are memoised by a warm-up pass, so both sides meet the same server.
Raw and magic alternate, round by round; the ratio reported is the median of the rounds' ratios.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from _harness import Row, emulator_process, magic, magic_shell, user_ids

TARGET = 0.6
REC_ID = "recA"


def _raw(url: str, key: str, ids: list[str]) -> float:
    import httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Api-Key {key}"}, timeout=10) as http:
        started = time.perf_counter()
        for user in ids:
            response = http.get("/v1/userprofile", params={"user_id": user, "get_recs": "true", "rec_id": REC_ID})
            if response.status_code != 200:
                raise RuntimeError(f"raw GET failed: {response.status_code}")
            response.json()
        return len(ids) / (time.perf_counter() - started)


def _magic(shell: Any, magics: Any, ids: list[str], concurrency: int) -> tuple[float, int]:
    from amp_profile_magic._pacing import kernel_pacer

    magics.client.max_concurrency = concurrency
    kernel_pacer().reset()
    shell.user_ns["ids"] = ids
    started = time.perf_counter()
    frame = magic(shell, f"--users ids recs={REC_ID}")
    rate = len(ids) / (time.perf_counter() - started)
    if frame.attrs["failures"]:
        raise RuntimeError(f"magic batch had failures: {frame.attrs['summary']}")
    return rate, len(frame)


def run(*, quick: bool) -> list[Row]:
    """Figure 3: profiles/s into a DataFrame through the magic versus raw GET+json, alternating rounds."""
    users, rounds = (1000, 1) if quick else (5000, 2)
    with emulator_process("--rec-items", "50", "--users", "5000") as emulator:
        ids = user_ids(users, users=5000)
        shell, magics = magic_shell(emulator, requests_per_minute=60_000_000)
        _raw(emulator.url, emulator.api_key, ids)  # warm-up: memoises every answer in the emulator
        magic(shell, f"user=12345 recs={REC_ID}")  # first use imports pandas etc.
        raw_rates: list[float] = []
        magic_rates: dict[int, list[float]] = {1: [], 8: []}
        rows_out = 0
        for _ in range(rounds):
            raw_rates.append(_raw(emulator.url, emulator.api_key, ids))
            for concurrency in (1, 8):
                rate, rows_out = _magic(shell, magics, ids, concurrency)
                magic_rates[concurrency].append(rate)
        magics.client.max_concurrency = 8
    result = []
    labels = {1: "3 client overhead (like for like)", 8: "3b client overhead, default concurrency"}
    for concurrency, label in labels.items():
        ratios = [magic / raw for magic, raw in zip(magic_rates[concurrency], raw_rates, strict=True)]
        ratio = statistics.median(ratios)
        result.append(
            Row(
                figure=label,
                measured=f"{ratio:.2f} of raw ({statistics.median(magic_rates[concurrency]):,.0f} vs "
                f"{statistics.median(raw_rates):,.0f} profiles/s)",
                target=f"≥ {TARGET} of raw",
                met=ratio >= TARGET,
                notes=f"{users} users × 50-item recs → {rows_out:,} rows; magic max_concurrency={concurrency} vs raw "
                f"sequential (1 in flight) GET+json only; rate_limiter=kernel; {rounds} alternating round(s), median",
                data={
                    "users": users,
                    "concurrency": concurrency,
                    "magic_rates": magic_rates[concurrency],
                    "raw_rates": raw_rates,
                    "ratios": ratios,
                    "rows": rows_out,
                },
            )
        )
    return result

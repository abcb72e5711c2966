"""Figure 6: peak memory of a 20,000-user batch of 50-item recommendations, beside the DataFrame it produces.

A fresh child interpreter loads the extension in a real IPython shell, warms it up with one lookup, then runs
``%ampprofile --users ids recs=recA -o res`` against the emulator (its own process). Peak memory is the child's
peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) minus its RSS just before the batch. The frame's size is
``memory_usage(deep=True).sum()``; pandas counts a string object once per cell that refers to it, so the child also
reports the frame's distinct bytes (array buffers plus each distinct object once) for context. Unless ``--quick``,
a second child measures the same batch's peak with ``tracemalloc`` (Python allocations only, slower).

Run a child by hand: ``AMPLITUDE_PROFILE_URL=... AMPLITUDE_SECRET_KEY=... python benchmarks/bench_memory.py rss 20000``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from _harness import Row, emulator_process

TARGET = 3.0


def _current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _distinct_bytes(frame: Any) -> int:
    """Bytes of the frame's buffers plus each distinct Python object it refers to, counted once."""
    import numpy as np

    seen: set[int] = set()
    total = 0
    for _, column in frame.items():
        values = column.array
        buffers = [getattr(values, name, None) for name in ("_ndarray", "_data", "_mask")]
        arrays = [buffer for buffer in buffers if isinstance(buffer, np.ndarray)] or [np.asarray(values)]
        for array in arrays:
            total += array.nbytes
            if array.dtype == object:
                for item in array:
                    if id(item) not in seen:
                        seen.add(id(item))
                        total += sys.getsizeof(item)
    return total


def child(mode: str, users: int) -> dict[str, Any]:
    """Run the measured batch in this process (a fresh interpreter) and return the measurements."""
    import gc
    import resource
    import time
    import tracemalloc

    from IPython.core.interactiveshell import InteractiveShell

    from amp_profile_magic.emulator import Dataset

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "amp_profile_magic")
    magics = next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")
    magics.progress = False
    magics.client.requests_per_minute = 60_000_000
    magics.client.rate_limiter = "kernel"
    shell.user_ns["ids"] = Dataset(seed=0, users=users).user_ids[:users]
    shell.run_line_magic("ampprofile", "user=12345 recs=recA -o warm")
    gc.collect()
    baseline_rss = _current_rss()
    baseline_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if mode == "tracemalloc":
        tracemalloc.start()
    started = time.perf_counter()
    shell.run_line_magic("ampprofile", "--users ids recs=recA -o res")
    seconds = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1] if mode == "tracemalloc" else None
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    frame = shell.user_ns["res"]
    gc.collect()
    return {
        "mode": mode,
        "users": users,
        "seconds": seconds,
        "rows": len(frame),
        "failures": len(frame.attrs["failures"]),
        "frame_deep_bytes": int(frame.memory_usage(deep=True).sum()),
        "frame_distinct_bytes": _distinct_bytes(frame),
        "baseline_rss": baseline_rss,
        "baseline_peak": baseline_peak,
        "peak_rss": peak,
        "peak_delta": peak - baseline_rss,
        "traced_peak": traced_peak,
        "rss_after": _current_rss() - baseline_rss,
    }


def _spawn(url: str, key: str, mode: str, users: int) -> dict[str, Any]:
    env = {**os.environ, "AMPLITUDE_PROFILE_URL": url, "AMPLITUDE_SECRET_KEY": key}
    completed = subprocess.run(
        [sys.executable, __file__, mode, str(users)], capture_output=True, text=True, env=env, timeout=900, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _mib(value: Any) -> str:
    return f"{int(value) / 2**20:,.0f} MiB"


def run(*, quick: bool) -> list[Row]:
    """Figure 6: peak RSS delta (and, unless quick, tracemalloc peak) against the frame's deep size."""
    users = 4000 if quick else 20_000
    with emulator_process("--users", str(users), "--rec-items", "50") as emulator:
        rss = _spawn(emulator.url, emulator.api_key, "rss", users)
        traced = None if quick else _spawn(emulator.url, emulator.api_key, "tracemalloc", users)
    deep = int(rss["frame_deep_bytes"])
    ratio = int(rss["peak_delta"]) / deep
    measured = (
        f"peak RSS +{_mib(rss['peak_delta'])} vs frame {_mib(deep)} deep = {ratio:.2f}×"
        f" (frame's distinct bytes {_mib(rss['frame_distinct_bytes'])})"
    )
    if traced is not None:
        traced_ratio = int(traced["traced_peak"]) / deep
        measured += f"; tracemalloc peak {_mib(traced['traced_peak'])} = {traced_ratio:.2f}×"
    return [
        Row(
            figure="6 peak memory, 50-item recs",
            measured=measured,
            target=f"< {TARGET:.0f}× the frames' size",
            met=ratio < TARGET,
            notes=f"{users:,} users → {int(rss['rows']):,} rows in {float(rss['seconds']):.1f} s "
            f"(magic, max_concurrency=8); resource.getrusage peak RSS minus RSS before the batch, fresh subprocess; "
            f"RSS after the batch, frame kept, {_mib(rss['rss_after'])} over the baseline",
            data={"rss": rss, "tracemalloc": traced},
        )
    ]


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))))

"""Run every benchmark against its target and print one table: figure, measured, target, met?

    python3 benchmarks/run.py             # the full run (a few minutes; one emulator process per figure)
    python3 benchmarks/run.py --quick     # smaller sizes, a smoke run of every figure
    python3 benchmarks/run.py --only 2 3  # just these figures

Each figure starts the emulator in a process of its own (``python -m amp_profile_magic.emulator``) with the
latency and limits it needs, and stops it at the end. The table is also written, with the raw numbers, to
``benchmarks/results/`` (``latest.md``, ``latest.json`` and a timestamped copy). Missed targets are reported as
missed; the exit status is 1 when any target was missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import bench_budget
import bench_latency
import bench_load_ext
import bench_memory
import bench_overhead
import bench_pacing
import bench_requests
import bench_store
from _harness import Row

# Figures 1-6 measure the network path, so the local profile store is off for them and for the children they start;
# figure 7 turns it on explicitly where it measures it.
os.environ["AMPLITUDE_PROFILE_STORE"] = "off"

RESULTS = Path(__file__).resolve().parent / "results"

FIGURES: dict[str, Callable[..., list[Row]]] = {
    "1": bench_pacing.run,
    "2": bench_latency.run,
    "3": bench_overhead.run,
    "4": bench_requests.run,
    "5": bench_load_ext.run,
    "6": bench_memory.run,
    "7": bench_store.run,
    "8": bench_budget.figure_8,
    "9": bench_budget.figure_9,
    "10": bench_budget.figure_10,
}


def _verdict(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[met]


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table (it also reads well in a terminal)."""
    lines = ["| figure | measured | target | met? |", "|---|---|---|---|"]
    lines += [f"| {row.figure} | {row.measured} | {row.target} | {_verdict(row.met)} |" for row in rows]
    return "\n".join(lines)


def notes(rows: list[Row]) -> str:
    """How each figure was measured, one bullet per row."""
    return "\n".join(f"- **{row.figure}**: {row.notes}" for row in rows if row.notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run of every figure")
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="run only these figures")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    started = time.perf_counter()
    for key in args.only or sorted(FIGURES):
        figure_started = time.perf_counter()
        print(f"figure {key} ...", file=sys.stderr, flush=True)
        try:
            rows += FIGURES[key](quick=args.quick)
        except Exception as error:
            traceback.print_exc()
            rows.append(Row(figure=key, measured=f"crashed: {type(error).__name__}: {error}", target="-", met=False))
        print(f"figure {key} took {time.perf_counter() - figure_started:.1f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    when = datetime.now(UTC)
    header = (
        f"{'Quick' if args.quick else 'Full'} run, {when:%Y-%m-%d %H:%M} UTC, {total:.0f} s; Python "
        f"{platform.python_version()}, {platform.machine()}, {_cpus()} CPUs (shared)"
    )
    report = f"{header}\n\n{table(rows)}\n\n{notes(rows)}\n"
    print()
    print(report)
    RESULTS.mkdir(exist_ok=True)
    stem = f"{when:%Y%m%dT%H%M%S}{'-quick' if args.quick else ''}"
    payload = {"when": when.isoformat(), "quick": args.quick, "seconds": total, "rows": [r.as_dict() for r in rows]}
    for name in (stem, "latest-quick" if args.quick else "latest"):
        (RESULTS / f"{name}.md").write_text(report)
        (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    return 0 if all(row.met is not False for row in rows) else 1


def _cpus() -> str:
    import os

    return str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


if __name__ == "__main__":
    sys.exit(main())

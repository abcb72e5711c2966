"""Figure 5: what ``%load_ext amp_profile_magic`` adds to starting IPython.

Each repetition starts two fresh interpreters, one after the other: one creates an IPython ``InteractiveShell``
(what a kernel creates) and exits, the other does the same and then runs ``%load_ext amp_profile_magic``. The
added time is the difference of the medians of their whole wall-clock times; the in-process time of the
``%load_ext`` call alone is reported beside it. Each child also reports whether loading the extension imported the
heavy libraries (pandas, httpx, ipywidgets, uvicorn, tenacity, tqdm, numpy), the local store's or the rate budget's
code, platformdirs, orjson, or the budget's libraries (pyrate_limiter, filelock, redis), which it must not.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from _harness import Row

TARGET_MS = 100.0
# The local store's and the rate budget's code (and platformdirs, orjson, pyrate_limiter, filelock, redis) load on
# first use, not with the extension.
HEAVY = (
    *("pandas", "httpx", "ipywidgets", "uvicorn", "tenacity", "tqdm", "numpy"),
    *("amp_profile_magic._store", "amp_profile_magic._journal", "platformdirs", "orjson", "amp_profile_magic._budget"),
    *("pyrate_limiter", "filelock", "redis"),
)

_CHILD = """
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
started = time.perf_counter()
if sys.argv[1] == "load":
    shell.run_line_magic("load_ext", "amp_profile_magic")
loaded = time.perf_counter() - started
print(json.dumps({"load_ext": loaded, "heavy": [m for m in sys.argv[2].split(",") if m in sys.modules]}))
"""


def _child(kind: str, env: dict[str, str]) -> tuple[float, float, dict[str, Any]]:
    """Run one fresh interpreter; return its wall time, its CPU time (user + system) and its report."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, ",".join(HEAVY)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return wall, cpu, report


def run(*, quick: bool) -> list[Row]:
    """Figure 5: median whole-process times with and without the extension, interleaved."""
    repetitions = 5 if quick else 11
    with tempfile.TemporaryDirectory() as ipython_dir:
        env = {**os.environ, "IPYTHONDIR": ipython_dir}
        _child("load", env)  # warm the OS file cache and compile .pyc files for both kinds
        bare, loaded, in_process, bare_cpu, loaded_cpu = [], [], [], [], []
        heavy: set[str] = set()
        for _ in range(repetitions):
            wall, cpu, _report = _child("bare", env)
            bare.append(wall)
            bare_cpu.append(cpu)
            wall, cpu, report = _child("load", env)
            loaded.append(wall)
            loaded_cpu.append(cpu)
            in_process.append(float(report["load_ext"]))
            heavy.update(report["heavy"])
    added_ms = (statistics.median(loaded) - statistics.median(bare)) * 1000
    load_ms = statistics.median(in_process) * 1000
    cpu_ms = (statistics.median(loaded_cpu) - statistics.median(bare_cpu)) * 1000
    return [
        Row(
            figure="5 %load_ext time",
            measured=f"+{added_ms:.0f} ms process time (bare {statistics.median(bare) * 1000:.0f} ms, with "
            f"{statistics.median(loaded) * 1000:.0f} ms); %load_ext call {load_ms:.0f} ms; +{cpu_ms:.0f} ms CPU",
            target=f"< {TARGET_MS:.0f} ms added",
            met=added_ms < TARGET_MS and not heavy,
            notes=f"{repetitions} interleaved fresh subprocesses each (InteractiveShell, then exit), medians of wall "
            f"time; the CPU figure (children's user+system time) is less sensitive to other load on the machine; "
            f"heavy modules imported by load: {', '.join(sorted(heavy)) or 'none'}",
            data={
                "bare": bare,
                "loaded": loaded,
                "bare_cpu": bare_cpu,
                "loaded_cpu": loaded_cpu,
                "load_ext": in_process,
                "heavy": sorted(heavy),
            },
        )
    ]

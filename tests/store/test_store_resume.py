"""Resume: a batch killed with SIGKILL part-way and run again asks no user twice beyond those in flight."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from amp_profile_magic.emulator import Emulator, Faults
from tests.magics.helpers import api_requests

USERS = 300
CONCURRENCY = 8

_CELL = (
    textwrap.dedent(
        """
    import pickle, sys
    from IPython.core.interactiveshell import InteractiveShell
    url, key, store, out = sys.argv[1:5]
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "amp_profile_magic")
    magics = next(item for item in ip.configurables if type(item).__name__ == "AmpProfileMagics")
    magics.progress = False
    client = magics.client
    client.endpoint, client.api_key, client.store = url, key, store
    client.requests_per_minute, client.max_concurrency = 600_000, CONCURRENCY
    ip.user_ns["ids"] = [f"user-{index:05d}" for index in range(1, USERS + 1)]
    ip.run_line_magic("ampprofile", "--users ids props cohorts -o res")
    print(ip.user_ns["res"].summary, flush=True)
    with open(out, "wb") as file:
        pickle.dump(dict(ip.user_ns["res"]), file)
    """
    )
    .replace("CONCURRENCY", str(CONCURRENCY))
    .replace("USERS", str(USERS))
)


def _cell(emulator: Emulator, store: str, out: Path) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", _CELL, emulator.url, emulator.api_key, store, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def _finish(process: subprocess.Popen[str]) -> str:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    return stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_killed_batch_resumes_without_asking_anyone_twice(emulator: Emulator, tmp_path: Path) -> None:
    """kill -9 mid-batch, run the cell again: only answers in flight at the kill are asked twice; frames are equal."""
    emulator.faults = Faults(latency=0.05)
    store = tmp_path / "store"
    first = _cell(emulator, str(store), tmp_path / "killed.pickle")
    deadline = time.monotonic() + 60
    while len(api_requests(emulator)) < USERS // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    time.sleep(0.2)  # answers in flight at the kill still reach the emulator's log
    before_resume = len(api_requests(emulator))
    assert USERS // 3 <= before_resume < USERS, "the kill did not land part-way"
    summary = _finish(_cell(emulator, str(store), tmp_path / "resumed.pickle"))
    asked = Counter(entry.params["user_id"] for entry in api_requests(emulator))
    assert set(asked) == {f"user-{index:05d}" for index in range(1, USERS + 1)}
    twice = [user for user, count in asked.items() if count > 1]
    assert len(twice) <= CONCURRENCY, f"{len(twice)} users asked twice: {twice}"
    assert all(count <= 2 for count in asked.values())
    assert summary.startswith(f"{USERS} profiles (")
    assert "from the local store" in summary
    assert summary.endswith(f"{USERS - before_resume + len(twice)} fetched)")

    # The same cell uninterrupted, with the store off, gives identical frames.
    _finish(_cell(emulator, "off", tmp_path / "plain.pickle"))
    resumed = pickle.loads((tmp_path / "resumed.pickle").read_bytes())  # noqa: S301  # written by this test
    plain = pickle.loads((tmp_path / "plain.pickle").read_bytes())  # noqa: S301
    assert list(resumed) == list(plain) == ["props", "cohorts"]
    for name in plain:
        pd.testing.assert_frame_equal(resumed[name], plain[name])

    # And run once more: nothing is sent at all.
    sent = len(api_requests(emulator))
    assert _finish(_cell(emulator, str(store), tmp_path / "again.pickle")).startswith(
        f"{USERS} profiles ({USERS} from the local store"
    )
    assert len(api_requests(emulator)) == sent

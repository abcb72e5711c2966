"""What every benchmark shares: the emulator in a process of its own, result rows, and a fresh IPython shell."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

__all__ = ["EmulatorProcess", "Row", "emulator_process", "magic", "magic_shell", "user_ids"]

_START_TIMEOUT = 30.0


@dataclass
class Row:
    """One line of the results table: a figure, what was measured, the target and whether it was met."""

    figure: str
    measured: str
    target: str
    met: bool | None
    #: How it was measured (concurrency, sizes, method) and anything a reader should know about the number.
    notes: str = ""
    #: The raw numbers behind ``measured``, for the JSON results file.
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data."""
        return asdict(self)


@dataclass
class EmulatorProcess:
    """A running ``python -m amp_profile_magic.emulator`` child process and how to reach it."""

    process: subprocess.Popen[str]
    url: str
    api_key: str
    argv: list[str]

    def _admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Api-Key {self.api_key}"}, timeout=10)

    def stats(self) -> dict[str, Any]:
        """The emulator's counters from ``/_emulator/stats`` (requests, by_status, throttled, by_fault)."""
        with self._admin() as admin:
            response = admin.get("/_emulator/stats")
            response.raise_for_status()
            stats: dict[str, Any] = response.json()
            return stats

    def reset(self) -> None:
        """Zero the emulator's counters and rate window (``POST /_emulator/reset``)."""
        with self._admin() as admin:
            admin.post("/_emulator/reset").raise_for_status()


@contextmanager
def emulator_process(*arguments: str) -> Iterator[EmulatorProcess]:
    """Start the emulator CLI with ``arguments`` in its own process, parse its two lines, stop it on exit."""
    argv = [sys.executable, "-m", "amp_profile_magic.emulator", "--port", "0", *arguments]
    with tempfile.TemporaryFile(mode="w+") as errors:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=errors, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        try:
            assert process.stdout is not None
            values: dict[str, str] = {}
            deadline = time.monotonic() + _START_TIMEOUT
            while len(values) < 2:
                line = process.stdout.readline()
                if not line or time.monotonic() > deadline:
                    errors.seek(0)
                    raise RuntimeError(f"the emulator did not start: {' '.join(argv)}\n{errors.read()[-2000:]}")
                name, _, value = line.strip().partition("=")
                values[name] = value
            yield EmulatorProcess(process, values["AMPLITUDE_PROFILE_URL"], values["AMPLITUDE_SECRET_KEY"], argv)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def user_ids(count: int, *, users: int) -> list[str]:
    """The first ``count`` synthetic user ids of an emulator started with ``--users users`` (seed 0)."""
    from amp_profile_magic.emulator import Dataset

    return Dataset(seed=0, users=users).user_ids[:count]


def magic_shell(emulator: EmulatorProcess, **client_settings: Any) -> tuple[Any, Any]:
    """A real IPython InteractiveShell with the extension loaded and pointed at ``emulator``; returns (shell, magics).

    ``client_settings`` are ``ProfileClient`` traits (``max_concurrency=16`` …); ``rate_limiter`` is ``kernel``
    unless given. The progress bar is off: it would measure tqdm, not the client. The local store is off unless
    ``store=`` says otherwise: the figures measure the network path (figure 7 measures the store).
    """
    client_settings.setdefault("store", "off")
    from IPython.core.interactiveshell import InteractiveShell

    from amp_profile_magic._pacing import kernel_pacer

    shell = InteractiveShell.instance()
    if "amp_profile_magic" not in shell.extension_manager.loaded:
        shell.run_line_magic("load_ext", "amp_profile_magic")
    kernel_pacer().reset()
    magics = next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")
    magics.progress = False
    magics.client.endpoint = emulator.url
    magics.client.api_key = emulator.api_key
    # Figures 2-4 and 6 measure the client, not the shared budget: pace in the kernel unless a figure says otherwise
    # (the default SQLite budget's cost is figure 9's).
    client_settings.setdefault("rate_limiter", "kernel")
    for name, value in client_settings.items():
        setattr(magics.client, name, value)
    return shell, magics


def magic(shell: Any, line: str, cell: str | None = None) -> Any:
    """Run ``%ampprofile line`` (or ``%%ampprofile`` with ``cell``) with its printed and displayed output captured.

    The display calls still run (they are part of what a user waits for); only the terminal stays quiet.
    """
    from IPython.utils.capture import capture_output

    with capture_output():
        if cell is None:
            return shell.run_line_magic("ampprofile", line)
        return shell.run_cell_magic("ampprofile", line, cell)

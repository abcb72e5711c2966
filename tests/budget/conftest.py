"""Shared-budget fixtures: a private redis-server, and participants running batches in processes of their own."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PARTICIPANT = Path(__file__).with_name("participant.py")


@dataclass
class RedisServer:
    """A redis-server this test started on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        """The server's URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL the server and reap it."""
        self.process.kill()
        self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(*extra: str) -> RedisServer:
    """Start redis-server on a free loopback port (no persistence) and wait until it answers."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                    return RedisServer(process, port)
        except OSError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("redis-server did not start within 10 s")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for this test, stopped after it."""
    server = start_redis()
    yield server
    if server.process.poll() is None:
        server.process.terminate()
        server.process.wait(timeout=10)


Participant = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def participants() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``start(**spec)`` → a running participant process (see participant.py); all are killed after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(**spec: Any) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(PARTICIPANT), json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def report(process: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    """Wait for a participant and return its JSON report (failing with its stderr if it crashed)."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["stderr"] = err
    return result

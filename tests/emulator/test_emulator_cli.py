"""The command-line emulator: two parseable lines, serving, and a clean exit on SIGTERM/SIGINT."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx
import pytest

from amp_profile_magic.emulator import Emulator
from amp_profile_magic.emulator.__main__ import main


def start_cli(*args: str) -> tuple[subprocess.Popen[str], str, str]:
    """Start `python -m amp_profile_magic.emulator` and read its URL and key lines."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "amp_profile_magic.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url_line = proc.stdout.readline().rstrip("\n")
    key_line = proc.stdout.readline().rstrip("\n")
    url_match = re.fullmatch(r"AMPLITUDE_PROFILE_URL=(http://127\.0\.0\.1:\d+)", url_line)
    key_match = re.fullmatch(r"AMPLITUDE_SECRET_KEY=(\S+)", key_line)
    if not (url_match and key_match):
        proc.kill()
        pytest.fail(f"unexpected output: {url_line!r} {key_line!r} {proc.communicate(timeout=5)}")
    return proc, url_match.group(1), key_match.group(1)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_exits_cleanly(stop_signal: signal.Signals) -> None:
    """The CLI prints URL and key, answers requests with that key, and exits 0 on SIGTERM or SIGINT."""
    proc, url, key = start_cli("--seed", "3")
    try:
        response = httpx.get(
            f"{url}/v1/userprofile",
            params={"user_id": "12345", "get_amp_props": "true"},
            headers={"Authorization": f"Api-Key {key}"},
            timeout=5,
        )
        assert response.status_code == 200
        assert response.json()["userData"]["amp_props"]["number_property"] == 12
    finally:
        proc.send_signal(stop_signal)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out == ""  # exactly the two lines, nothing after them
    assert "Traceback" not in err


def test_cli_options_reach_the_emulator() -> None:
    """--api-key, --rate-limit and fault options configure the served emulator."""
    proc, url, key = start_cli(
        "--api-key", "cli-key", "--rate-limit", "2", "--error-rate", "1", "--error-status", "502"
    )
    try:
        assert key == "cli-key"
        headers = {"Authorization": "Api-Key cli-key"}
        statuses = [httpx.get(f"{url}/v1/userprofile?user_id=12345", headers=headers).status_code for _ in range(12)]
        # Throttling comes before faults: two requests a minute are admitted, and those fail with 502.
        assert statuses == [502, 502] + [429] * 10
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def test_cli_rate_limit_window() -> None:
    """--rate-limit-window counts the same rate over a shorter window, so the 429's Retry-After is one second."""
    proc, url, key = start_cli("--rate-limit", "120", "--rate-limit-window", "1")
    try:
        headers = {"Authorization": f"Api-Key {key}"}
        responses = [httpx.get(f"{url}/v1/userprofile?user_id=12345", headers=headers) for _ in range(3)]
        assert [response.status_code for response in responses] == [200, 200, 429]
        assert responses[-1].headers["retry-after"] == "1"
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def test_cli_plain_http_mode() -> None:
    """--plain-http answers with the 301 redirect to https."""
    proc, url, _ = start_cli("--plain-http")
    try:
        response = httpx.get(f"{url}/v1/userprofile?user_id=1")
        assert response.status_code == 301
        assert response.headers["location"].startswith("https://127.0.0.1:")
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def test_cli_rejects_invalid_fault_rates(capsys: pytest.CaptureFixture[str]) -> None:
    """An impossible fault rate is a usage error (exit status 2) with a message, not a traceback."""
    with pytest.raises(SystemExit) as exited:
        main(["--error-rate", "1.5"])
    assert exited.value.code == 2
    assert "error_rate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--port", "99999"], "cannot listen on 127.0.0.1:99999"),
        (["--host", "0.0.0.0"], "--host 0.0.0.0: the emulator serves plain HTTP on this machine only"),
        (["--host", "no.such.host.invalid"], "on this machine only"),
    ],
)
def test_cli_refuses_addresses_it_cannot_or_must_not_serve(
    capsys: pytest.CaptureFixture[str], arguments: list[str], named: str
) -> None:
    """A port out of range or an address off this machine is one error line and a non-zero exit, no traceback."""
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    assert exited.value.code in (1, 2)
    error = capsys.readouterr().err
    assert named in error
    assert "Traceback" not in error


def test_cli_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    """A port another server holds is one error line and exit status 1."""
    with Emulator() as running:
        port = int(running.url.rsplit(":", 1)[1])
        with pytest.raises(SystemExit) as exited:
            main(["--port", str(port)])
    assert exited.value.code == 1
    assert f"cannot listen on 127.0.0.1:{port}:" in capsys.readouterr().err

"""Retries are counted, not shouted: DEBUG lines per retry, one summary line, one warning when most attempts fail."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import pytest

from amp_profile_magic.emulator import Emulator, Faults
from tests.client.scripted import Head, ScriptedServer, answer, profile_body

WARNINGS = logging.WARNING


def package_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("amp_profile_magic") and r.levelno >= level]


def text_outputs(cell: Any) -> str:
    return cell.stdout + cell.stderr + "".join(str(b.get("text/plain", "")) for b in cell.bundles())


def test_batch_with_transient_errors_counts_retries_in_its_summary_and_warns_nothing(
    run: Any, magics: Any, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A 60-user batch meeting 20% 503s finishes, says "N retries" in its one summary line, logs each retry at DEBUG
    only, and emits no warning."""
    caplog.set_level(logging.DEBUG, logger="amp_profile_magic")
    magics.client.store = "off"
    magics.client.max_retries = 8
    emulator.faults = Faults(error_rate=0.2)
    users = "\n".join(emulator.dataset.user_ids[:60])
    cell = run(f"%%ampprofile cohorts -o frame\n{users}")
    assert cell.result.success
    summary = magics.shell.user_ns["frame"].attrs["summary"]
    assert summary.startswith("60 profiles")
    retries = len([r for r in caplog.records if r.getMessage().startswith("Retrying in")])
    assert retries > 0
    assert f"{retries} retries" in summary or (retries == 1 and "1 retry" in summary)
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.getMessage().startswith("Retrying in"))
    assert package_records(caplog, WARNINGS) == []
    assert "Retrying" not in text_outputs(cell)
    assert summary in text_outputs(cell)


def test_batch_where_most_attempts_fail_warns_exactly_once(
    run: Any, magics: Any, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """When most attempts of a batch fail (70% 503s), one warning says so, however many retries follow."""
    caplog.set_level(logging.DEBUG, logger="amp_profile_magic")
    magics.client.store = "off"
    magics.client.max_retries = 3
    emulator.faults = Faults(error_rate=0.7)
    users = "\n".join(emulator.dataset.user_ids[:40])
    cell = run(f"%%ampprofile cohorts -o frame\n{users}")
    assert cell.result.success  # failed users are rows of the failures table, not a failed cell
    warnings = package_records(caplog, WARNINGS)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    message = warnings[0].getMessage()
    assert message.startswith("Most requests are failing:")
    assert "HTTP 503" in message
    assert len([r for r in caplog.records if r.getMessage().startswith("Retrying in")]) > 20


def test_a_replayed_batch_where_most_attempts_failed_does_not_warn(
    run: Any, magics: Any, emulator: Emulator, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    """Replaying that batch from a cassette reports its retries in the summary but no warning: when the replay's
    threads count past the alarm's line depends on their order, so the warning came and went between runs."""
    magics.client.store = "off"
    magics.client.max_retries = 3
    emulator.faults = Faults(error_rate=0.7)
    users = "\n".join(emulator.dataset.user_ids[:40])
    cassette = tmp_path / "failing.cassette.json"
    run(f"%ampprofile_cassette record {cassette}")
    recorded = run(f"%%ampprofile cohorts -o frame\n{users}")
    assert recorded.result.success
    run(f"%ampprofile_cassette replay {cassette}")
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="amp_profile_magic")
    replayed = run(f"%%ampprofile cohorts -o again\n{users}")
    assert replayed.result.success
    assert package_records(caplog, WARNINGS) == []
    assert "retries" in magics.shell.user_ns["again"].attrs["summary"]
    run("%ampprofile_cassette off")


def test_single_lookup_that_needed_retries_says_so_in_one_line(
    run: Any, magics: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A single lookup answered on its third attempt shows one line, "1 profile · 2 retries", and no warning."""
    caplog.set_level(logging.DEBUG, logger="amp_profile_magic")
    calls = []
    lock = threading.Lock()

    def flaky(server: ScriptedServer, conn: socket.socket, head: Head) -> None:
        with lock:
            calls.append(head.target)
            failing = len(calls) <= 2
        if failing:
            answer(conn, 503, b"Service Unavailable", {"Content-Type": "text/plain"})
        else:
            answer(conn, 200, profile_body())

    server = ScriptedServer(flaky)
    try:
        magics.client.store = "off"
        magics.client.endpoint = server.url
        cell = run("%ampprofile user=12345 props")
    finally:
        server.close()
    assert cell.result.success, cell.result.error_in_exec
    lines = [line for line in text_outputs(cell).splitlines() if "retr" in line]
    assert lines == ["1 profile · 2 retries"]
    assert package_records(caplog, WARNINGS) == []
    assert len(calls) == 3


def test_single_lookup_without_retries_stays_quiet(run: Any, magics: Any) -> None:
    """A single lookup that succeeded at once prints no summary line: only its frame."""
    magics.client.store = "off"
    cell = run("%ampprofile user=12345 props")
    assert cell.result.success
    assert "profile" not in cell.stdout
    assert not [b for b in cell.bundles() if "1 profile" in str(b.get("text/plain", ""))]


def test_python_lookup_after_retries_logs_one_info_line(
    client: Any, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """ProfileClient.lookup() that needed retries logs one INFO line naming the user and the retry count."""
    caplog.set_level(logging.DEBUG, logger="amp_profile_magic")
    emulator.faults = Faults(error_rate=0.5)
    client.max_retries = 20
    for user in emulator.dataset.user_ids[:10]:
        client.lookup(user_id=user, cohorts=True)
    retried = [r for r in caplog.records if r.getMessage().startswith("Retrying in")]
    infos = [r for r in caplog.records if r.levelno == logging.INFO and r.getMessage().startswith("Looked up")]
    assert retried, "the seeded faults should have made at least one lookup retry"
    assert infos
    assert all(" after " in r.getMessage() and "retr" in r.getMessage() for r in infos)
    assert len(infos) <= len(retried)
    assert package_records(caplog, WARNINGS) == []


def test_progress_bar_counts_retries_in_its_postfix(run: Any, magics: Any, emulator: Emulator) -> None:
    """While a batch with transient errors runs, its progress bar's postfix shows the retries so far."""
    magics.progress = True
    magics.client.store = "off"
    magics.client.max_retries = 8
    magics.client.max_concurrency = 4
    emulator.faults = Faults(error_rate=0.3, latency=0.05)
    users = "\n".join(emulator.dataset.user_ids[:60])
    cell = run(f"%%ampprofile cohorts -o frame\n{users}")
    assert cell.result.success
    assert "retries" in cell.stderr or "retry" in cell.stderr
    assert "Retrying" not in cell.stderr

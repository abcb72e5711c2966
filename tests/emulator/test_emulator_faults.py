"""Injected faults: server errors, dropped connections, malformed bodies, slowness and latency."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from amp_profile_magic.emulator import Emulator, Faults

MakeEmulator = Callable[..., tuple[Emulator, httpx.Client]]
PARAMS = {"user_id": "12345", "get_amp_props": "true"}


def test_error_fault_answers_503_plain_text(make_emulator: MakeEmulator) -> None:
    """error_rate=1 answers every request with 503 and a plain-text body, logged as an error fault."""
    emu, http = make_emulator(faults=Faults(error_rate=1.0))
    response = http.get("/v1/userprofile", params=PARAMS)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Service Unavailable"
    assert emu.requests[-1].fault == "error"
    assert emu.requests[-1].status == 503


def test_error_status_is_configurable(make_emulator: MakeEmulator) -> None:
    """error_status chooses which 5xx the error fault answers."""
    _, http = make_emulator(faults=Faults(error_rate=1.0, error_status=500))
    response = http.get("/v1/userprofile", params=PARAMS)
    assert response.status_code == 500
    assert response.text == "Internal Server Error"


def test_drop_fault_raises_transport_error(make_emulator: MakeEmulator) -> None:
    """drop_rate=1 closes the connection mid-response, which httpx reports as a transport error."""
    emu, http = make_emulator(faults=Faults(drop_rate=1.0))
    with pytest.raises(httpx.TransportError):
        http.get("/v1/userprofile", params=PARAMS)
    assert emu.requests[-1].fault == "drop"
    assert emu.requests[-1].status == 0


def test_drops_do_not_spam_the_error_log(make_emulator: MakeEmulator, caplog: pytest.LogCaptureFixture) -> None:
    """Deliberate drops leave no 'Exception in ASGI application' tracebacks in the log."""
    _, http = make_emulator(faults=Faults(drop_rate=1.0))
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            with pytest.raises(httpx.TransportError):
                http.get("/v1/userprofile", params=PARAMS)
        time.sleep(0.05)  # the server thread logs after closing the transport
    assert not [r for r in caplog.records if r.name.startswith("uvicorn")]


def test_client_recovers_after_a_drop(make_emulator: MakeEmulator) -> None:
    """After a dropped connection the same client reconnects and gets normal answers."""
    emu, http = make_emulator(faults=Faults(drop_rate=1.0))
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/v1/userprofile", params=PARAMS)
    emu.faults = Faults()
    assert http.get("/v1/userprofile", params=PARAMS).status_code == 200


def test_malformed_fault_answers_unparseable_200s(make_emulator: MakeEmulator) -> None:
    """malformed_rate=1 answers 200 with bodies that are not JSON: truncated JSON and HTML pages both occur."""
    emu, http = make_emulator(faults=Faults(malformed_rate=1.0))
    kinds = set()
    for _ in range(12):
        response = http.get("/v1/userprofile", params=PARAMS)
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.content)
        kinds.add(response.headers["content-type"])
    assert kinds == {"application/json", "text/html"}
    assert {r.fault for r in emu.requests} == {"malformed"}


def test_slow_fault_exceeds_a_short_client_timeout(make_emulator: MakeEmulator) -> None:
    """slow_rate=1 delays the answer by slow_seconds, so a shorter client read timeout fires."""
    _, http = make_emulator(faults=Faults(slow_rate=1.0, slow_seconds=1.0))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        http.get("/v1/userprofile", params=PARAMS, timeout=0.2)
    assert time.monotonic() - started < 0.9


def test_slow_fault_still_answers_correctly(make_emulator: MakeEmulator) -> None:
    """A slow answer, once it comes, is the normal answer, logged as a slow fault."""
    emu, http = make_emulator(faults=Faults(slow_rate=1.0, slow_seconds=0.2))
    started = time.monotonic()
    response = http.get("/v1/userprofile", params=PARAMS)
    assert time.monotonic() - started >= 0.2
    assert response.json()["userData"]["amp_props"]["number_property"] == 12
    assert emu.requests[-1].fault == "slow"


def test_latency_delays_every_request_and_overlaps(make_emulator: MakeEmulator) -> None:
    """latency delays each request, but concurrent requests wait together rather than in a queue."""
    # A long latency beside a wide bound: six sequential waits (6 s) and six overlapped ones (1 s) stay apart
    # even when a loaded machine adds a second of client start-up and scheduling.
    emu, _ = make_emulator(faults=Faults(latency=1.0, jitter=0.05))
    headers = {"Authorization": f"Api-Key {emu.api_key}"}

    def fetch(_: int) -> int:
        return httpx.get(f"{emu.url}/v1/userprofile", params=PARAMS, headers=headers).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(fetch, range(6)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 6
    assert 1.0 <= elapsed < 3.0  # six sequential waits would take at least 6 s


def test_fault_rates_are_roughly_honoured(make_emulator: MakeEmulator) -> None:
    """With several rates set, each fault's share over 400 requests is near its rate."""
    emu, http = make_emulator(faults=Faults(error_rate=0.25, throttle_rate=0.25))
    statuses = [http.get("/v1/userprofile", params=PARAMS).status_code for _ in range(400)]
    assert 60 <= statuses.count(503) <= 140
    assert 60 <= statuses.count(429) <= 140
    assert statuses.count(200) == 400 - statuses.count(503) - statuses.count(429)
    assert emu.stats()["by_fault"] == {"error": statuses.count(503), "throttle": statuses.count(429)}


def test_fault_sequence_is_reproducible(make_emulator: MakeEmulator) -> None:
    """Two emulators with the same seed and faults fail the same requests; a reset replays the sequence."""
    faults = Faults(error_rate=0.3, malformed_rate=0.2)

    def run(http: httpx.Client) -> list[tuple[int, bytes]]:
        return [(r.status_code, r.content) for r in (http.get("/v1/userprofile", params=PARAMS) for _ in range(40))]

    first_emu, first = make_emulator(seed=7, faults=faults)
    _, second = make_emulator(seed=7, faults=faults)
    _, other = make_emulator(seed=8, faults=faults)
    sequence = run(first)
    assert run(second) == sequence
    assert run(other) != sequence
    first_emu.reset()
    assert run(first) == sequence


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_rate": 1.5},
        {"drop_rate": -0.1},
        {"error_rate": 0.6, "drop_rate": 0.6},
        {"error_status": 404},
        {"latency": float("nan")},
        {"slow_rate": True},
    ],
)
def test_faults_reject_nonsense(kwargs: dict[str, float]) -> None:
    """Out-of-range rates, rates summing past 1, non-5xx error statuses and non-numbers are refused."""
    with pytest.raises(ValueError):  # the messages differ per field
        Faults(**kwargs)


def test_faults_pick_partitions_the_unit_interval() -> None:
    """pick() maps one draw to at most one fault, each over an interval as wide as its rate."""
    faults = Faults(throttle_rate=0.1, error_rate=0.1, drop_rate=0.1, malformed_rate=0.1, slow_rate=0.1)
    assert [faults.pick(x) for x in (0.05, 0.15, 0.25, 0.35, 0.45, 0.55)] == [
        "throttle",
        "error",
        "drop",
        "malformed",
        "slow",
        None,
    ]
    assert Faults().any_rate is False
    assert Faults(latency=1).any_rate is False


def test_faults_cannot_be_assigned_anything_else(fresh: Emulator) -> None:
    """The faults setting only accepts a Faults instance."""
    with pytest.raises(TypeError):
        fresh.faults = {"error_rate": 1.0}  # type: ignore[assignment]

"""Throttling: the rolling per-minute limit, bursts and the throttle fault, answered as documented."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from amp_profile_magic.emulator import Emulator, Faults
from amp_profile_magic.emulator._throttle import RateWindow

MakeEmulator = Callable[..., tuple[Emulator, httpx.Client]]
THROTTLE_BODY = {
    "error": "Number of requests per minute exceeds system limit. Contact Support if you need this limit raised"
}
PARAMS = {"user_id": "12345"}


def test_limit_answers_429_with_documented_body_and_retry_after(make_emulator: MakeEmulator) -> None:
    """Beyond the per-minute limit requests answer 429, the documented JSON and an integer Retry-After."""
    emu, http = make_emulator(rate_limit_per_minute=3)
    statuses = [http.get("/v1/userprofile", params=PARAMS).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    throttled = http.get("/v1/userprofile", params=PARAMS)
    assert throttled.status_code == 429
    assert throttled.headers["content-type"] == "application/json"
    assert throttled.json() == THROTTLE_BODY
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert emu.stats()["throttled"] == 1
    assert [r.status for r in emu.requests] == [200, 200, 200, 429]
    assert emu.requests[-1].fault is None


def test_throttled_requests_do_not_extend_the_window(make_emulator: MakeEmulator) -> None:
    """Throttled requests are not admitted, so repeated retries keep the same Retry-After horizon."""
    _, http = make_emulator(rate_limit_per_minute=1)
    assert http.get("/v1/userprofile", params=PARAMS).status_code == 200
    waits = [int(http.get("/v1/userprofile", params=PARAMS).headers["retry-after"]) for _ in range(5)]
    assert all(1 <= wait <= 60 for wait in waits)
    assert waits == sorted(waits, reverse=True)  # counting down to the one admitted request's expiry


def test_retry_after_can_be_omitted(make_emulator: MakeEmulator) -> None:
    """With throttle_retry_after=False a throttled answer carries no Retry-After header."""
    _, http = make_emulator(rate_limit_per_minute=1, throttle_retry_after=False)
    http.get("/v1/userprofile", params=PARAMS)
    throttled = http.get("/v1/userprofile", params=PARAMS)
    assert throttled.status_code == 429
    assert "retry-after" not in throttled.headers


def test_limit_can_be_set_and_lifted_at_runtime(make_emulator: MakeEmulator) -> None:
    """Setting rate_limit_per_minute starts a fresh window; None lifts the limit."""
    emu, http = make_emulator()
    for _ in range(5):
        assert http.get("/v1/userprofile", params=PARAMS).status_code == 200
    emu.rate_limit_per_minute = 2
    statuses = [http.get("/v1/userprofile", params=PARAMS).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    emu.rate_limit_per_minute = None
    assert http.get("/v1/userprofile", params=PARAMS).status_code == 200


def test_unauthenticated_requests_are_not_counted(make_emulator: MakeEmulator) -> None:
    """401s are answered before throttling, so they neither count nor get throttled."""
    emu, http = make_emulator(rate_limit_per_minute=1)
    for _ in range(3):
        assert httpx.get(f"{emu.url}/v1/userprofile", params=PARAMS).status_code == 401
    assert http.get("/v1/userprofile", params=PARAMS).status_code == 200


def test_throttle_burst(make_emulator: MakeEmulator) -> None:
    """throttle_burst(n) makes exactly the next n requests answer 429 with Retry-After: 1."""
    emu, http = make_emulator()
    emu.throttle_burst(2)
    responses = [http.get("/v1/userprofile", params=PARAMS) for _ in range(3)]
    assert [r.status_code for r in responses] == [429, 429, 200]
    assert responses[0].json() == THROTTLE_BODY
    assert responses[0].headers["retry-after"] == "1"
    assert [r.fault for r in emu.requests] == ["throttle", "throttle", None]


def test_reset_cancels_burst_and_window(make_emulator: MakeEmulator) -> None:
    """reset() empties the throttle window and forgets a pending burst."""
    emu, http = make_emulator(rate_limit_per_minute=1)
    http.get("/v1/userprofile", params=PARAMS)
    emu.throttle_burst(5)
    emu.reset()
    assert http.get("/v1/userprofile", params=PARAMS).status_code == 200


def test_throttle_rate_fault(make_emulator: MakeEmulator) -> None:
    """throttle_rate=1 answers every authenticated request as throttled, marked as a fault in the log."""
    emu, http = make_emulator(faults=Faults(throttle_rate=1.0))
    response = http.get("/v1/userprofile", params=PARAMS)
    assert response.status_code == 429
    assert response.json() == THROTTLE_BODY
    assert response.headers["retry-after"] == "1"
    assert emu.requests[-1].fault == "throttle"


def test_rate_window_admits_up_to_the_limit_within_sixty_seconds() -> None:
    """The window admits `limit` requests per rolling minute and names the seconds until a slot frees."""
    window = RateWindow(2)
    assert window.admit(100.0) is None
    assert window.admit(110.0) is None
    assert window.admit(120.0) == 40  # the request at 100 leaves the window at 160
    assert window.admit(159.5) == 1  # rounded up, never 0
    assert window.admit(160.0) is None  # the first slot freed
    assert window.admit(161.0) == 9  # now the request at 110 is the oldest


def test_rate_window_without_limit_admits_everything() -> None:
    """A window with no limit never throttles."""
    window = RateWindow(None)
    assert all(window.admit(float(t)) is None for t in range(1000))


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_rate_window_rejects_nonsense_limits(limit: object) -> None:
    """Limits must be positive integers or None."""
    with pytest.raises(ValueError, match="rate_limit_per_minute"):
        RateWindow(limit)  # type: ignore[arg-type]


def test_rate_window_length_is_configurable_at_the_same_rate() -> None:
    """A 3-second window at 1200/minute holds 60 requests and frees the oldest 3 s after it was admitted."""
    window = RateWindow(1200, window=3.0)
    assert all(window.admit(100.0 + i * 0.01) is None for i in range(60))
    assert window.admit(100.6) == 3  # the request at 100.00 leaves at 103.00: rounded up to whole seconds
    assert window.admit(103.0) is None
    assert window.admit(103.001) == 1


@pytest.mark.parametrize(("limit", "seconds"), [(600, 0.05), (7, 1.0), (600, 0.0), (600, -1.0), (600, float("nan"))])
def test_rate_window_refuses_windows_that_cannot_hold_the_rate(limit: int, seconds: float) -> None:
    """A window must be positive and hold a whole number of requests at the rate, or the emulator would be unfair."""
    with pytest.raises(ValueError, match="rate_limit_window"):
        RateWindow(limit, window=seconds)


def test_emulator_throttles_over_a_short_window_and_recovers_within_it(make_emulator: MakeEmulator) -> None:
    """Emulator(rate_limit_window=1) at 120/minute admits two requests a second, then 429 with Retry-After: 1."""
    emu, http = make_emulator(rate_limit_per_minute=120, rate_limit_window=1.0)
    assert emu.rate_limit_window == 1.0
    statuses = [http.get("/v1/userprofile", params=PARAMS).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert emu.requests[-1].status == 429
    throttled = http.get("/v1/userprofile", params=PARAMS)
    assert throttled.headers["retry-after"] == "1"
    time.sleep(1.05)
    assert http.get("/v1/userprofile", params=PARAMS).status_code == 200
    emu.rate_limit_window = 60.0  # back to the API's minute: a fresh window holding 120
    assert [http.get("/v1/userprofile", params=PARAMS).status_code for _ in range(5)] == [200] * 5

"""The request log, counters, admin endpoints, and keeping the API key out of all of them."""

from __future__ import annotations

import re
import time

import httpx

from amp_profile_magic.emulator import Emulator, Faults, LoggedRequest


def test_log_records_each_request(fresh: Emulator, fresh_client: httpx.Client) -> None:
    """Each API request is logged with arrival time, method, path, parameters, status and fault."""
    before = time.monotonic()
    fresh_client.get("/v1/userprofile", params={"user_id": "12345", "get_recs": "true", "rec_id": "a,b"})
    fresh_client.get("/v1/userprofile", params={"user_id": "nobody"})
    fresh_client.get("/elsewhere")
    after = time.monotonic()
    log = fresh.requests
    assert [(r.method, r.path, r.status, r.fault) for r in log] == [
        ("GET", "/v1/userprofile", 200, None),
        ("GET", "/v1/userprofile", 400, None),
        ("GET", "/elsewhere", 404, None),
    ]
    assert log[0].params == {"user_id": "12345", "get_recs": "true", "rec_id": "a,b"}
    assert all(before <= r.at <= after for r in log)
    assert [r.at for r in log] == sorted(r.at for r in log)
    assert fresh.request_count == 3


def test_huge_values_are_logged_cut_and_never_cached(fresh: Emulator, fresh_client: httpx.Client) -> None:
    """A 60 KB parameter is logged as its first 4,096 characters and its length, and kept in no cache."""
    pad = "x" * 60_000
    for _ in range(2):
        answer = fresh_client.get("/v1/userprofile", params={"user_id": "12345", "get_amp_props": "true", "pad": pad})
        assert answer.status_code == 200
    logged = [entry.params["pad"] for entry in fresh.requests]
    assert logged == [f"{'x' * 4096}… (60,000 characters)"] * 2
    app = fresh._app
    assert all(len(query) <= 4096 for query in (*app._params_cache, *app._answer_cache))


def test_log_entries_are_frozen_copies(fresh: Emulator, fresh_client: httpx.Client) -> None:
    """Changing a logged entry's params does not change later answers or log entries."""
    fresh_client.get("/v1/userprofile", params={"user_id": "12345"})
    entry = fresh.requests[0]
    assert isinstance(entry, LoggedRequest)
    entry.params["user_id"] = "tampered"
    fresh_client.get("/v1/userprofile", params={"user_id": "12345"})
    assert fresh.requests[1].params == {"user_id": "12345"}


def test_key_never_appears_in_log_or_repr(make_emulator: ...) -> None:  # type: ignore[valid-type]
    """Neither the log (even of rejected keys), the stats nor the emulator's repr contain a key."""
    emu, http = make_emulator(api_key="sekrit-key-123", faults=Faults(error_rate=0.5))
    for _ in range(5):
        http.get("/v1/userprofile", params={"user_id": "12345"})
    httpx.get(f"{emu.url}/v1/userprofile", headers={"Authorization": "Api-Key wrong-key-456"})
    logged = repr(emu.requests) + repr(emu.stats())
    for text in (logged, repr(emu), str(emu), repr(emu.dataset)):
        assert "sekrit-key-123" not in text
        assert "wrong-key-456" not in text
        assert "Api-Key" not in text
    assert emu.url in repr(emu)


def test_generated_key(fresh: Emulator) -> None:
    """Without api_key a random 'emu-' key is generated, different per emulator."""
    assert re.fullmatch(r"emu-[0-9a-f]{16}", fresh.api_key)
    assert Emulator().api_key != fresh.api_key


def test_admin_stats_and_reset(fresh: Emulator, fresh_client: httpx.Client) -> None:
    """/_emulator/stats serves the counters; POST /_emulator/reset clears them; neither is logged."""
    fresh.throttle_burst(1)
    for params in ({"user_id": "12345"}, {"user_id": "12345"}, {"user_id": "nobody"}):
        fresh_client.get("/v1/userprofile", params=params)
    stats = fresh_client.get("/_emulator/stats")
    assert stats.status_code == 200
    assert stats.json() == {
        "requests": 3,
        "by_status": {"200": 1, "400": 1, "429": 1},
        "throttled": 1,
        "by_fault": {"throttle": 1},
    }
    reset = fresh_client.post("/_emulator/reset")
    assert reset.status_code == 200
    assert fresh.request_count == 0
    assert fresh.requests == []
    assert fresh_client.get("/_emulator/stats").json() == {
        "requests": 0,
        "by_status": {},
        "throttled": 0,
        "by_fault": {},
    }


def test_admin_needs_the_key_and_right_method(fresh: Emulator, fresh_client: httpx.Client) -> None:
    """The admin endpoints answer 401 without the key and 405 for the wrong method."""
    assert httpx.get(f"{fresh.url}/_emulator/stats").status_code == 401
    wrong = httpx.post(f"{fresh.url}/_emulator/reset", headers={"Authorization": "Api-Key nope"})
    assert wrong.status_code == 401
    assert wrong.text == "Invalid Api-Key"
    assert fresh_client.get("/_emulator/reset").status_code == 405
    assert fresh_client.post("/_emulator/stats").status_code == 405
    assert fresh.request_count == 0


def test_admin_is_exempt_from_faults_and_redirect(fresh: Emulator, fresh_client: httpx.Client) -> None:
    """Benchmarks can read stats even while every API request fails or redirects."""
    fresh.faults = Faults(error_rate=1.0)
    fresh.plain_http_redirect = True
    assert fresh_client.get("/_emulator/stats").status_code == 200


def test_reset_method_clears_log_and_counters(fresh: Emulator, fresh_client: httpx.Client) -> None:
    """reset() forgets logged requests and zeroes request_count and the stats."""
    fresh_client.get("/v1/userprofile", params={"user_id": "12345"})
    assert fresh.request_count == 1
    fresh.reset()
    assert fresh.requests == []
    assert fresh.request_count == 0
    assert fresh.stats()["requests"] == 0

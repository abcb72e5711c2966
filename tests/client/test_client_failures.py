"""Every failure, against the emulator over real sockets: the exception, its message, and how many requests it cost."""

from __future__ import annotations

import itertools
import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from amp_profile_magic import (
    ConfigurationError,
    ConnectionFailed,
    EndpointNotFound,
    InsecureEndpoint,
    InvalidKey,
    MalformedResponse,
    MissingAuthHeader,
    MissingKey,
    PlainHttpRedirect,
    ProfileClient,
    ProfileError,
    ProfileQuery,
    RequestTimeout,
    ServerUnavailable,
    Throttled,
    UnknownUser,
    UnsupportedRegion,
)
from amp_profile_magic.emulator import Emulator, Faults
from tests.client.conftest import FAST, ForwardingTransport, expect_failure, wait_for_requests
from tests.conftest import CANARY_KEY


@pytest.fixture
def private_emulator() -> Iterator[Callable[..., Emulator]]:
    """``private_emulator(**kwargs)`` → an emulator with non-default construction settings, stopped after the test."""
    with ExitStack() as stack:

        def make(**kwargs: Any) -> Emulator:
            return stack.enter_context(Emulator(seed=0, api_key=CANARY_KEY, **kwargs))

        yield make


# -- authentication -------------------------------------------------------------------------------------------------


def test_wrong_key_is_invalid_key_and_not_retried(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """A key the API does not know gives InvalidKey (401 'Invalid Api-Key') after exactly one request."""
    client = make_client(api_key="not-the-right-key")
    emulator.reset()
    error = expect_failure(InvalidKey, lambda: client.lookup(user_id="12345"))
    assert (error.status, error.api_message) == (401, "Invalid Api-Key")
    assert "HTTP 401" in str(error)
    assert "Invalid Api-Key" in str(error)
    assert "AMPLITUDE_SECRET_KEY" in str(error)
    assert [entry.status for entry in emulator.requests] == [401]


def test_whitespace_only_key_fails_fast_as_missing(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """A key of only spaces counts as no key: MissingKey, and nothing is sent."""
    client = make_client(api_key=" \t  ")
    emulator.reset()
    error = expect_failure(MissingKey, lambda: client.lookup(user_id="12345"))
    assert "No secret key" in str(error)
    assert "%config ProfileClient.api_key" in str(error)
    assert emulator.request_count == 0


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda headers: headers.pop("Authorization"), id="header stripped by a proxy"),
        pytest.param(lambda headers: headers.__setitem__("Authorization", "Bearer x"), id="wrong scheme"),
        pytest.param(lambda headers: headers.__setitem__("Authorization", "Api-Key"), id="scheme without key"),
    ],
)
def test_missing_or_malformed_auth_header_is_missing_auth_header(
    emulator: Emulator, make_client: Callable[..., ProfileClient], rewrite: Callable[[httpx.Headers], object]
) -> None:
    """When the Authorization header arrives missing or malformed, the 401 maps to MissingAuthHeader, not retried."""

    def tamper(request: httpx.Request) -> httpx.Request:
        rewrite(request.headers)
        return request

    transport = ForwardingTransport(on_request=tamper)
    client = ProfileClient(endpoint=emulator.url, api_key=emulator.api_key, transport=transport, **FAST)
    emulator.reset()
    try:
        error = expect_failure(MissingAuthHeader, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert (error.status, error.api_message) == (401, "Missing Api-Key in Authorization header")
    assert "Missing Api-Key in Authorization header" in str(error)
    assert "proxy" in str(error)
    assert transport.attempts == 1
    assert [entry.status for entry in emulator.requests] == [401]


# -- configuration errors the API reports ----------------------------------------------------------------------------


def test_wrong_path_is_endpoint_not_found(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """An endpoint with an extra path prefix gets the empty 404: EndpointNotFound naming the URL, one request."""
    client = make_client(endpoint=f"{emulator.url}/api")
    emulator.reset()
    error = expect_failure(EndpointNotFound, lambda: client.lookup(user_id="12345", props=True))
    assert error.status == 404
    assert f"{emulator.url}/api/v1/userprofile" in str(error)
    assert "user_id=" not in str(error)
    assert "ProfileClient.endpoint" in str(error)
    assert [(entry.path, entry.status) for entry in emulator.requests] == [("/api/v1/userprofile", 404)]


def test_plain_http_redirect_is_reported_and_not_followed(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """A 301 to HTTPS raises PlainHttpRedirect with the Location, and the key is not sent a second time."""
    client = make_client()
    emulator.plain_http_redirect = True
    emulator.reset()
    error = expect_failure(PlainHttpRedirect, lambda: client.lookup(user_id="12345"))
    location = emulator.url.replace("http://", "https://") + "/v1/userprofile?user_id=12345"
    assert error.status == 301
    assert error.location == location
    assert location in str(error)
    assert "not followed" in str(error)
    assert "https://" in error.hint
    assert [entry.status for entry in emulator.requests] == [301]


def test_unknown_user_is_unknown_user_and_not_retried(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """An id the project never saw gives UnknownUser after one request."""
    client = make_client()
    emulator.reset()
    error = expect_failure(UnknownUser, lambda: client.lookup(user_id="nobody-at-all", props=True))
    assert error.api_message == "User id and device id not seen before"
    assert "not seen before" in str(error)
    assert "spelling" in str(error)
    assert emulator.request_count == 1


@pytest.mark.parametrize("status", [200, 404, 500])
def test_unknown_user_is_recognised_by_its_body_whatever_the_status(
    private_emulator: Callable[..., Emulator], status: int
) -> None:
    """The unknown-user body means UnknownUser even with a 200, a 404 or a 5xx status, and is never retried."""
    emu = private_emulator(unknown_user_status=status)
    client = ProfileClient(endpoint=emu.url, api_key=emu.api_key, **FAST)
    try:
        error = expect_failure(UnknownUser, lambda: client.lookup(device_id="no-such-device"))
    finally:
        client.close()
    assert error.status == status
    assert [entry.status for entry in emu.requests] == [status]


# -- throttling --------------------------------------------------------------------------------------------------------


def test_throttled_429_is_retried_with_backoff(private_emulator: Callable[..., Emulator]) -> None:
    """A 429 without Retry-After is Throttled, retried with backoff: max_retries=2 costs exactly three requests."""
    emu = private_emulator(throttle_retry_after=False, faults=Faults(throttle_rate=1.0))
    client = ProfileClient(endpoint=emu.url, api_key=emu.api_key, **FAST)
    try:
        error = expect_failure(Throttled, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert error.status == 429
    assert error.retry_after is None
    assert "Number of requests per minute exceeds system limit" in str(error)
    assert "requests_per_minute" in str(error)
    assert [entry.status for entry in emu.requests] == [429, 429, 429]


def test_throttling_is_recognised_by_status_alone(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """A 429 whose body says nothing (a proxy rewrote it) is still Throttled."""

    def blank_body(response: httpx.Response) -> httpx.Response:
        return httpx.Response(429, content=b"")

    transport = ForwardingTransport(on_response=blank_body)
    client = ProfileClient(endpoint=emulator.url, api_key=emulator.api_key, transport=transport, **FAST)
    emulator.reset()
    try:
        error = expect_failure(Throttled, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert error.status == 429
    assert "too many requests" in str(error)
    assert transport.attempts == 3


def test_throttling_is_recognised_by_body_text_alone(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """The documented throttling body under another status (400, Retry-After dropped) is still Throttled, and
    retried with backoff like any throttling."""

    def relabel(response: httpx.Response) -> httpx.Response:
        return httpx.Response(400, content=response.content)

    transport = ForwardingTransport(on_response=relabel)
    client = ProfileClient(endpoint=emulator.url, api_key=emulator.api_key, transport=transport, **FAST)
    emulator.faults = Faults(throttle_rate=1.0)
    emulator.reset()
    try:
        error = expect_failure(Throttled, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert error.status == 400
    assert error.api_message is not None
    assert error.api_message.startswith("Number of requests per minute exceeds")
    assert error.retry_after is None
    assert transport.attempts == 3
    assert [entry.status for entry in emulator.requests] == [429, 429, 429]


def test_retry_after_is_honoured(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """After a 429 with Retry-After: 1 the retry waits at least one second, then succeeds."""
    client = make_client()
    emulator.throttle_burst(1)
    started = time.monotonic()
    profile = client.lookup(user_id="12345", cohorts=True)
    elapsed = time.monotonic() - started
    log = emulator.requests
    assert [entry.status for entry in log] == [429, 200]
    assert log[1].at - log[0].at >= 1.0
    assert 1.0 <= elapsed < 3.0
    assert profile.cohort_ids == ("cohort1", "cohort3", "cohort7")


def test_retry_after_beyond_max_retry_after_fails_fast(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """Over the emulator's per-minute limit, a Retry-After longer than max_retry_after fails at once, saying why."""
    client = make_client(max_retry_after=5.0)
    emulator.rate_limit_per_minute = 2
    client.lookup(user_id="12345")
    client.lookup(user_id="12345")
    started = time.monotonic()
    error = expect_failure(Throttled, lambda: client.lookup(user_id="12345"))
    assert time.monotonic() - started < 1.0
    assert error.retry_after is not None
    assert 5.0 < error.retry_after <= 60.0
    assert "max_retry_after" in str(error)
    assert f"{error.retry_after:g}s" in str(error)
    assert [entry.status for entry in emulator.requests] == [200, 200, 429]


# -- server and network failures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_then_reported(
    emulator: Emulator, make_client: Callable[..., ProfileClient], status: int
) -> None:
    """A 5xx is ServerUnavailable after exactly max_retries + 1 = 3 requests."""
    client = make_client()
    emulator.faults = Faults(error_rate=1.0, error_status=status)
    emulator.reset()
    error = expect_failure(ServerUnavailable, lambda: client.lookup(user_id="12345"))
    assert error.status == status
    assert f"HTTP {status}" in str(error)
    assert "retry later" in str(error)
    assert [entry.status for entry in emulator.requests] == [status] * 3


def test_a_transient_server_error_is_retried_into_success(emulator: Emulator) -> None:
    """When the first two answers are 503 (a proxy in trouble) and the third is fine, the caller gets the data."""
    failures = iter([True, True])

    def flaky(response: httpx.Response) -> httpx.Response:
        if next(failures, False):
            return httpx.Response(503, text="Service Unavailable")
        return response

    transport = ForwardingTransport(on_response=flaky)
    client = ProfileClient(endpoint=emulator.url, api_key=emulator.api_key, transport=transport, **FAST)
    emulator.reset()
    try:
        profile = client.lookup(user_id="12345", props=True)
    finally:
        client.close()
    assert profile.properties is not None
    assert profile.properties["library"] == "http/1.0"
    assert transport.attempts == 3
    assert emulator.request_count == 3


def test_timeout_is_retried_then_reported(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """An answer slower than the timeout is RequestTimeout after three attempts, with no httpx cause attached."""
    client = make_client(timeout=0.15)
    emulator.faults = Faults(slow_rate=1.0, slow_seconds=0.5)
    emulator.reset()
    started = time.monotonic()
    error = expect_failure(RequestTimeout, lambda: client.lookup(user_id="12345"))
    elapsed = time.monotonic() - started
    assert error.__cause__ is None
    assert error.__context__ is None
    assert "within 0.15s" in str(error)
    assert "ProfileClient.timeout" in str(error)
    assert 0.45 <= elapsed < 2.0
    wait_for_requests(emulator, 3)
    time.sleep(0.6)  # a fourth slow request would have been logged by now
    assert [entry.fault for entry in emulator.requests] == ["slow"] * 3


def test_dropped_connection_is_retried_then_reported(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """A connection closed mid-response is ConnectionFailed after three attempts, naming httpx's error."""
    client = make_client()
    emulator.faults = Faults(drop_rate=1.0)
    emulator.reset()
    error = expect_failure(ConnectionFailed, lambda: client.lookup(user_id="12345"))
    assert error.__cause__ is None
    assert error.__context__ is None
    assert "RemoteProtocolError" in str(error)
    assert emulator.url in str(error)
    assert "Check the network" in str(error)
    assert [(entry.status, entry.fault) for entry in emulator.requests] == [(0, "drop")] * 3


def test_closed_port_is_connection_failed_after_three_attempts(closed_url: str) -> None:
    """Nothing listening: ConnectionFailed ('Connection refused') after exactly three connection attempts."""
    transport = ForwardingTransport()
    endpoint = closed_url
    client = ProfileClient(endpoint=endpoint, api_key=CANARY_KEY, transport=transport, **FAST)
    try:
        error = expect_failure(ConnectionFailed, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert "ConnectError" in str(error)
    assert endpoint in str(error)
    assert "refused" in str(error).lower()
    assert transport.attempts == 3


def test_malformed_bodies_are_malformed_response_and_not_retried(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """Truncated JSON and an HTML page under 200 are MalformedResponse, one request each."""
    client = make_client()
    emulator.faults = Faults(malformed_rate=1.0)
    emulator.reset()
    for attempt in range(1, 7):
        error = expect_failure(MalformedResponse, lambda: client.lookup(user_id="12345", props=True))
        assert error.status == 200
        assert "not JSON" in str(error)
        assert "ProfileClient.endpoint" in str(error)
        assert emulator.request_count == attempt


def test_json_of_the_wrong_shape_is_malformed_response(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """Valid JSON without the documented userData object is MalformedResponse too."""

    def reshape(response: httpx.Response) -> httpx.Response:
        return httpx.Response(200, json={"data": response.json()["userData"]})

    transport = ForwardingTransport(on_response=reshape)
    client = ProfileClient(endpoint=emulator.url, api_key=emulator.api_key, transport=transport, **FAST)
    emulator.reset()
    try:
        error = expect_failure(MalformedResponse, lambda: client.lookup(user_id="12345", cohorts=True))
    finally:
        client.close()
    assert "userData" in str(error)
    assert emulator.request_count == 1


# -- retries: counts and backoff bounds -----------------------------------------------------------------------------


def test_max_retries_zero_sends_once(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """With max_retries=0 even a retryable failure costs exactly one request."""
    client = make_client(max_retries=0)
    emulator.faults = Faults(error_rate=1.0)
    emulator.reset()
    expect_failure(ServerUnavailable, lambda: client.lookup(user_id="12345"))
    assert emulator.request_count == 1


def test_backoff_waits_stay_within_the_doubling_capped_ceilings(
    emulator: Emulator, make_client: Callable[..., ProfileClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full-jitter backoff draws each wait from [0, min(backoff_max, initial * 2**n)]; at the top of every range
    the gaps between attempts (from the emulator's log) are at least those ceilings and not much more."""
    draws: list[tuple[float, float]] = []

    def highest(low: float, high: float) -> float:
        draws.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", highest)
    client = make_client(max_retries=3, backoff_initial=0.1, backoff_max=0.15)
    emulator.faults = Faults(error_rate=1.0)
    emulator.reset()
    started = time.monotonic()
    expect_failure(ServerUnavailable, lambda: client.lookup(user_id="12345"))
    elapsed = time.monotonic() - started
    # tenacity also asks for a wait after the last attempt (then stops without sleeping it).
    assert draws[:3] == [(0, 0.1), (0, 0.15), (0, 0.15)]
    at = [entry.at for entry in emulator.requests]
    gaps = [later - earlier for earlier, later in itertools.pairwise(at)]
    assert len(gaps) == 3
    for gap, ceiling in zip(gaps, (0.1, 0.15, 0.15), strict=True):
        assert ceiling <= gap < ceiling + 0.5
    assert 0.4 <= elapsed < 0.4 + 1.5


def test_backoff_with_real_jitter_never_exceeds_its_bounds(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """With real random jitter the three retries of one lookup finish within the sum of the ceilings."""
    client = make_client(max_retries=3, backoff_initial=0.05, backoff_max=0.08)
    emulator.faults = Faults(error_rate=1.0)
    emulator.reset()
    started = time.monotonic()
    expect_failure(ServerUnavailable, lambda: client.lookup(user_id="12345"))
    elapsed = time.monotonic() - started
    assert emulator.request_count == 4
    assert elapsed < (0.05 + 0.08 + 0.08) + 1.0


@pytest.mark.parametrize(
    ("setup", "kind", "requests"),
    [
        pytest.param({"faults": Faults(error_rate=1.0)}, ServerUnavailable, 3, id="5xx"),
        pytest.param({"faults": Faults(drop_rate=1.0)}, ConnectionFailed, 3, id="drop"),
        pytest.param({"faults": Faults(malformed_rate=1.0)}, MalformedResponse, 1, id="malformed"),
        pytest.param({"client": {"api_key": "wrong"}}, InvalidKey, 1, id="401"),
        pytest.param({"client": {"endpoint_suffix": "/x"}}, EndpointNotFound, 1, id="404"),
        pytest.param({"redirect": True}, PlainHttpRedirect, 1, id="301"),
        pytest.param({"user": "nobody"}, UnknownUser, 1, id="unknown user"),
    ],
)
def test_retry_counts_with_max_retries_two(
    emulator: Emulator,
    make_client: Callable[..., ProfileClient],
    setup: dict[str, Any],
    kind: type[ProfileError],
    requests: int,
) -> None:
    """max_retries=2 means exactly three requests for retryable failures and exactly one for the others."""
    overrides = dict(setup.get("client", {}))
    suffix = overrides.pop("endpoint_suffix", "")
    client = make_client(max_retries=2, endpoint=emulator.url + suffix, **overrides)
    emulator.faults = setup.get("faults", Faults())
    emulator.plain_http_redirect = setup.get("redirect", False)
    emulator.reset()
    error = expect_failure(kind, lambda: client.lookup(user_id=setup.get("user", "12345")))
    assert error.retryable is (requests == 3)
    assert emulator.request_count == requests


# -- settings that stop a request before it is sent -----------------------------------------------------------------


def test_eu_region_fails_fast(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """region='eu' raises UnsupportedRegion for lookups and batches, and nothing is sent."""
    client = make_client(region="eu")
    emulator.reset()
    error = expect_failure(UnsupportedRegion, lambda: client.lookup(user_id="12345"))
    assert "EU" in str(error)
    assert "US-region" in str(error)
    expect_failure(UnsupportedRegion, lambda: client.lookup_many([ProfileQuery(user_id="12345")]))
    assert emulator.request_count == 0


def test_missing_key_fails_fast(
    emulator: Emulator, make_client: Callable[..., ProfileClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no key configured and none in the environment, MissingKey says how to set one; nothing is sent."""
    monkeypatch.delenv("AMPLITUDE_SECRET_KEY", raising=False)
    explicit = make_client(api_key="")
    from_environment = ProfileClient(endpoint=emulator.url)
    emulator.reset()
    for client in (explicit, from_environment):
        error = expect_failure(MissingKey, lambda client=client: client.lookup(user_id="12345"))
        assert "AMPLITUDE_SECRET_KEY" in str(error)
        assert "%ampprofile_emulator" in str(error)
        expect_failure(MissingKey, lambda client=client: client.lookup_many([ProfileQuery(user_id="12345")]))
    assert emulator.request_count == 0


def test_key_from_the_environment_is_used(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """AMPLITUDE_SECRET_KEY and AMPLITUDE_PROFILE_URL configure a client built with no arguments."""
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", emulator.api_key)
    monkeypatch.setenv("AMPLITUDE_PROFILE_URL", emulator.url)
    client = ProfileClient()
    emulator.reset()
    try:
        assert client.lookup(user_id="12345", cohorts=True).cohort_ids == ("cohort1", "cohort3", "cohort7")
    finally:
        client.close()
    assert emulator.request_count == 1


@pytest.mark.parametrize("key", [CANARY_KEY + "\nX-Injected: 1", CANARY_KEY + "\tX", "é" + CANARY_KEY])
def test_key_that_cannot_go_in_a_header_fails_fast(
    emulator: Emulator, make_client: Callable[..., ProfileClient], key: str
) -> None:
    """A key with a line break, tab or non-ASCII character is refused before sending, without showing it."""
    client = make_client(api_key=key)
    emulator.reset()
    error = expect_failure(ConfigurationError, lambda: client.lookup(user_id="12345"))
    assert "HTTP header" in str(error)
    assert emulator.request_count == 0


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://example.invalid",
        "http://profile-api.amplitude.com",
        "http://10.0.0.1:8080",
        "http://localhost.example.invalid",
        "ftp://example.invalid",
        "example.invalid",
    ],
)
def test_insecure_endpoint_is_refused_before_any_network_activity(
    monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """Plain http:// to a non-loopback host (or no http(s) URL at all) is InsecureEndpoint with no DNS lookup,
    no connection and nothing handed to the transport."""
    attempts: list[object] = []

    def forbidden(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError("the client touched the network")

    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    transport = httpx.MockTransport(lambda request: attempts.append(request) or httpx.Response(200))
    client = ProfileClient(endpoint=endpoint, api_key=CANARY_KEY, transport=transport, **FAST)
    error = expect_failure(InsecureEndpoint, lambda: client.lookup(user_id="12345"))
    expect_failure(InsecureEndpoint, lambda: client.lookup_many([ProfileQuery(user_id="1"), ProfileQuery(user_id="2")]))
    assert "https://" in str(error)
    assert attempts == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_plain_http_to_loopback_is_allowed(
    emulator: Emulator, make_client: Callable[..., ProfileClient], host: str
) -> None:
    """The emulator's http://127.0.0.1 (or localhost) endpoint is accepted: loopback never leaves the machine."""
    client = make_client(endpoint=emulator.url.replace("127.0.0.1", host))
    emulator.reset()
    assert client.lookup(user_id="12345").user_id == "12345"
    assert emulator.request_count == 1

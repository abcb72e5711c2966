"""Unit tests of single functions: Retry-After parsing, query planning, response parsing, status mapping, pacing.

Mocked transports are used only here, for one function at a time; every feature is also proven against the emulator
in the other test files.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from traitlets import TraitError

from amp_profile_magic import (
    EndpointNotFound,
    InvalidKey,
    MalformedResponse,
    MissingAuthHeader,
    PlainHttpRedirect,
    ProfileClient,
    ProfileError,
    ProfileQuery,
    Propensity,
    Throttled,
    UnexpectedResponse,
    UnknownUser,
    sections,
)
from amp_profile_magic._client import _retry_after_seconds
from amp_profile_magic._pacing import Cancelled, Pacer
from amp_profile_magic._query import profile_from_responses
from amp_profile_magic._secret import Secret
from amp_profile_magic.emulator import Emulator
from amp_profile_magic.sections import Section
from tests.client.conftest import FAST, expect_failure
from tests.conftest import CANARY_KEY

# -- _retry_after_seconds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), ("0", 0.0), (" 7 ", 7.0), ("2.5", 2.5), ("-3", 0.0), ("garbage", None), ("", None), (None, None)],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    """Delta-seconds are read as a number of seconds (never negative); anything unreadable is None."""
    assert _retry_after_seconds(header) == seconds


def test_retry_after_infinite_is_kept_so_it_exceeds_any_limit() -> None:
    """An absurd Retry-After stays huge, so max_retry_after turns it into a fast failure rather than a hang."""
    assert _retry_after_seconds("1e400") == math.inf


@pytest.mark.parametrize("zone", ["GMT", "-0000", "+0000"])
def test_retry_after_as_http_date(zone: str) -> None:
    """An HTTP-date 30 s ahead is about 30 s, whatever way it spells UTC (-0000 parses as a naive datetime)."""
    when = datetime.now(UTC) + timedelta(seconds=30)
    header = email.utils.format_datetime(when, usegmt=True).replace("GMT", zone)
    seconds = _retry_after_seconds(header)
    assert seconds is not None
    assert 27.0 <= seconds <= 31.0


def test_retry_after_date_in_the_past_is_zero() -> None:
    """A date already past means retry now."""
    assert _retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


# -- ProfileQuery.requests --------------------------------------------------------------------------------------------


def test_query_plans_one_request_with_every_section_but_split_computations_when_props_are_asked() -> None:
    """Everything goes in one request in a fixed order; with props too, computations move to a second request."""
    everything = ProfileQuery(
        user_id="u",
        device_id="d",
        rec_ids=("r1", "r2"),
        rec_type="random",
        cohorts=True,
        comps=True,
        comp_ids=("c1",),
        prediction_ids=("p1", "p2"),
        propensity_type="pct",
    )
    assert everything.requests == (
        (
            ("user_id", "u"),
            ("device_id", "d"),
            ("get_recs", "true"),
            ("rec_id", "r1,r2"),
            ("rec_type", "random"),
            ("get_cohort_ids", "true"),
            ("get_propensity", "true"),
            ("prediction_id", "p1,p2"),
            ("propensity_type", "pct"),
            ("get_computations", "true"),
            ("comp_id", "c1"),
        ),
    )
    with_props = ProfileQuery(user_id="u", props=True, comp_ids=("c1", "c2"))
    assert with_props.requests == (
        (("user_id", "u"), ("get_amp_props", "true")),
        (("user_id", "u"), ("get_computations", "true"), ("comp_id", "c1,c2")),
    )
    assert ProfileQuery(device_id="d").requests == ((("device_id", "d"),),)


@dataclass(frozen=True)
class WidgetsRequest:
    """Whether widgets are asked."""

    widgets: bool = False


class WidgetsSection(Section):
    """A plugin section reading a field of its own: it shares the main request."""

    name = "widgets"
    keywords = ("widgets",)
    usage = ("widgets                a test plugin",)
    reads = ("widgets",)
    request_type = WidgetsRequest

    def request(self, tokens: Mapping[str, str | None]) -> WidgetsRequest:
        return WidgetsRequest(True)

    def params(self, request: WidgetsRequest) -> tuple[tuple[str, str], ...]:
        return (("get_widgets", "true"),)

    def read(self, data: Mapping[str, Any], request: WidgetsRequest, reader: Any) -> dict[str, Any]:
        return {}

    def frame(self, profiles: Sequence[Any]) -> Any:
        raise NotImplementedError


def test_query_extra_params_from_section_plugins_go_in_the_main_request() -> None:
    """Parameters added by section plugins join the main request, not the computations one."""
    sections.register(WidgetsSection())
    try:
        query = ProfileQuery(user_id="u", props=True, comps=True, widgets=True)
        assert query.requests == (
            (("user_id", "u"), ("get_amp_props", "true"), ("get_widgets", "true")),
            (("user_id", "u"), ("get_computations", "true")),
        )
    finally:
        sections.unregister("widgets")


def test_queries_are_normalised_hashable_and_equal_when_they_ask_the_same() -> None:
    """Ids are deduplicated, lists become tuples, and equal queries hash alike (so batches dedupe)."""
    first = ProfileQuery(user_id="42", rec_ids=["a", "b", "a"], comp_ids=None)  # type: ignore[arg-type]
    second = ProfileQuery(user_id=42, rec_ids="a,b")  # type: ignore[arg-type]
    assert first == second
    assert hash(first) == hash(second)
    assert first.rec_ids == ("a", "b")
    assert first.user_id == "42"
    assert len({first, second, ProfileQuery(user_id="42", rec_ids=("b", "a"))}) == 2
    assert first.describe() == "user 42"
    assert ProfileQuery(user_id="u", device_id="d").describe() == "user u, device d"


def test_a_pickled_or_copied_query_is_the_same_query(emulator: Emulator) -> None:
    """A query through pickle (a multiprocessing worker) or deepcopy equals the original, hashes alike, reads its
    keywords back, and a batch of all three sends one request."""
    import copy
    import pickle

    query = ProfileQuery(user_id="12345", props=True, rec_ids=["testRecId"])
    for twin in (pickle.loads(pickle.dumps(query)), copy.deepcopy(query)):  # noqa: S301 - our own bytes
        assert twin == query
        assert hash(twin) == hash(query)
        assert (twin.props, twin.rec_ids) == (True, ("testRecId",))
    client = ProfileClient(endpoint=emulator.url, api_key=emulator.api_key, **FAST)
    emulator.reset()
    try:
        batch = client.lookup_many([query, pickle.loads(pickle.dumps(query)), copy.deepcopy(query)])  # noqa: S301
    finally:
        client.close()
    assert batch.unique_queries == 1
    assert len(emulator.requests) == 1


# -- profile_from_responses -------------------------------------------------------------------------------------------

FULL = ProfileQuery(user_id="u", rec_ids=("r",), props=True, cohorts=True, comps=True, prediction_ids=("p",))


def user_data(**fields: Any) -> dict[str, Any]:
    """A userData body with every section null, overridden by ``fields``."""
    base: dict[str, Any] = {
        "recommendations": None,
        "user_id": "u",
        "device_id": None,
        "amp_props": None,
        "cohort_ids": None,
    }
    return {"userData": {**base, **fields}}


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ([1, 2], "the body"),
        ("text", "the body"),
        (None, "the body"),
        ({"data": {}}, "userData"),
        ({"userData": []}, "userData"),
        (user_data(user_id={"id": 1}), "user_id"),
        (user_data(device_id=[1]), "device_id"),
        (user_data(recommendations={"rec_id": "r"}), "recommendations"),
        (user_data(recommendations="r"), "recommendations"),
        (user_data(recommendations=[{"items": []}]), "recommendations[0].rec_id"),
        (user_data(recommendations=["r"]), "recommendations[0]"),
        (user_data(recommendations=[{"rec_id": "r", "items": "cookie"}]), "recommendations[0].items"),
        (user_data(amp_props=["a"]), "amp_props"),
        (user_data(cohort_ids="cohort1"), "cohort_ids"),
        (user_data(propensities={"p": 1}), "propensities"),
        (user_data(propensities=[{"prop": 0.5}]), "propensities[0].pred_id"),
    ],
)
def test_malformed_shapes_raise_malformed_response_naming_the_field(payload: object, named: str) -> None:
    """A body that is not the documented shape raises MalformedResponse whose ``field`` names what is wrong."""
    query = ProfileQuery(user_id="u", rec_ids=("r",), props=True, cohorts=True, prediction_ids=("p",))
    error = expect_failure(MalformedResponse, lambda: profile_from_responses(query, [payload]))
    assert isinstance(error, MalformedResponse)
    assert error.field == named
    assert f"{named} is " in str(error)


def test_malformed_second_response_of_a_split_lookup_is_reported() -> None:
    """When props and computations take two requests, a bad computations body fails the lookup too."""
    query = ProfileQuery(user_id="u", props=True, comps=True)
    expect_failure(MalformedResponse, lambda: profile_from_responses(query, [user_data(amp_props={}), {"oops": 1}]))
    expect_failure(
        MalformedResponse, lambda: profile_from_responses(query, [user_data(amp_props={}), user_data(amp_props=[1])])
    )


def test_sections_not_asked_for_are_none_even_if_present() -> None:
    """Only requested sections are read: others are None, whatever the body holds."""
    profile = profile_from_responses(
        ProfileQuery(device_id="d"), [user_data(cohort_ids="junk", amp_props=5, recommendations=7)]
    )
    assert profile.recommendations is None
    assert profile.properties is None
    assert profile.cohort_ids is None
    assert profile.computations is None
    assert profile.propensities is None


def test_null_sections_that_were_asked_for_are_empty_not_missing() -> None:
    """A requested section answered null is empty (no data), distinct from not asked (None)."""
    profile = profile_from_responses(FULL, [user_data(), user_data()])
    assert profile.recommendations == ()
    assert profile.properties == {}
    assert profile.cohort_ids == ()
    assert profile.computations == {}
    # An id the API left out is reported with no value, not dropped.
    assert profile.propensities == (Propensity("p", "score", None),)


def test_propensity_falls_back_to_the_scalar_and_refuses_non_numbers() -> None:
    """Without a propensities list the scalar serves a single id; null is no value, true or a string is malformed."""
    one = ProfileQuery(user_id="u", prediction_ids=("p",), propensity_type="pct")
    assert profile_from_responses(one, [user_data(propensity=83)]).propensities == (Propensity("p", "pct", 83.0),)
    profile = profile_from_responses(one, [user_data(propensity=None, propensities=[{"pred_id": "p", "prop": None}])])
    assert profile.propensities == (Propensity("p", "pct", None),)
    assert profile.propensity is None
    for junk in (True, "0.5"):
        body = user_data(propensity=None, propensities=[{"pred_id": "p", "prop": junk}])
        error = expect_failure(MalformedResponse, lambda body=body: profile_from_responses(one, [body]))
        assert isinstance(error, MalformedResponse)
        assert error.field == "propensities[0].prop"


def test_propensity_type_is_the_one_requested_not_the_echo() -> None:
    """The vendor's example labels pct answers 'score'; the profile keeps the requested type."""
    query = ProfileQuery(user_id="u", prediction_ids=("0x10x", "0x11x"), propensity_type="pct")
    body = user_data(
        propensity=None,
        propensities=[
            {"prop": 83, "pred_id": "0x10x", "prop_type": "score"},
            {"prop": 85, "pred_id": "0x11x", "prop_type": "score"},
        ],
    )
    assert profile_from_responses(query, [body]).propensities == (
        Propensity("0x10x", "pct", 83.0),
        Propensity("0x11x", "pct", 85.0),
    )


# -- status and body classification (one response each, through httpx.MockTransport) ----------------------------------


def mock_client(response: httpx.Response) -> ProfileClient:
    """A client whose every request gets ``response``, with no retries and no pacing."""
    transport = httpx.MockTransport(lambda request: response)
    return ProfileClient(
        endpoint="https://profile-api.example", api_key=CANARY_KEY, transport=transport, **{**FAST, "max_retries": 0}
    )


THROTTLE_TEXT = (
    '{"error":"Number of requests per minute exceeds system limit. Contact Support if you need this limit raised"}'
)


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (httpx.Response(429), Throttled),
        (httpx.Response(200, text=THROTTLE_TEXT), Throttled),
        (httpx.Response(503, text=THROTTLE_TEXT), Throttled),
        (httpx.Response(401, text="Missing Api-Key in Authorization header"), MissingAuthHeader),
        (httpx.Response(401, text="Invalid Api-Key"), InvalidKey),
        (httpx.Response(401), InvalidKey),
        (httpx.Response(404), EndpointNotFound),
        (httpx.Response(302, headers={"Location": "https://x/"}), PlainHttpRedirect),
        (httpx.Response(308, headers={"Location": "https://x/"}), PlainHttpRedirect),
        (httpx.Response(418, text="teapot"), UnexpectedResponse),
        (httpx.Response(400, json={"error": "rec_id is required when get_recs=true"}), UnexpectedResponse),
        (httpx.Response(200, json={"error": "something else"}), UnexpectedResponse),
        (httpx.Response(404, json={"error": "User id and device id not seen before"}), UnknownUser),
        (httpx.Response(200, text="<html>"), MalformedResponse),
    ],
)
def test_each_response_maps_to_one_error(response: httpx.Response, kind: type[ProfileError]) -> None:
    """Statuses and bodies map to the documented exception classes (by body text where the status is unknown)."""
    client = mock_client(response)
    error = expect_failure(kind, lambda: client.lookup(user_id="u"))
    assert error.status == response.status_code
    assert f"HTTP {response.status_code}" in str(error)
    assert error.hint in str(error)


def test_unexpected_response_carries_the_api_message() -> None:
    """A 400 with the API's JSON error shows that message, not the raw JSON."""
    client = mock_client(httpx.Response(400, json={"error": "rec_id is required when get_recs=true"}))
    error = expect_failure(UnexpectedResponse, lambda: client.lookup(user_id="u"))
    assert error.api_message == "rec_id is required when get_recs=true"
    assert '{"error"' not in str(error)


def test_throttled_reads_retry_after_as_http_date() -> None:
    """A 429's Retry-After given as an HTTP-date becomes seconds on the exception."""
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    client = mock_client(httpx.Response(429, headers={"Retry-After": when}))
    client.max_retry_after = 10
    error = expect_failure(Throttled, lambda: client.lookup(user_id="u"))
    assert error.retry_after is not None
    assert 85 <= error.retry_after <= 91
    assert "max_retry_after" in str(error)


# -- settings, key and pacer ------------------------------------------------------------------------------------------


def test_changing_the_endpoint_reconnects(emulator: Emulator) -> None:
    """Changing endpoint (or timeout) closes the pooled connections, so the next lookup uses the new value."""
    client = ProfileClient(endpoint=emulator.url, api_key=emulator.api_key, **FAST)
    emulator.reset()
    try:
        assert client.lookup(user_id="12345").user_id == "12345"
        client.endpoint = emulator.url + "/moved"
        expect_failure(EndpointNotFound, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert [entry.path for entry in emulator.requests] == ["/v1/userprofile", "/moved/v1/userprofile"]


def test_closing_the_client_during_a_batch_loses_no_user() -> None:
    """close() (what a changed timeout or endpoint does) while a batch's requests are on their way: the requests it
    cuts are sent again on a new pool, every user is fetched, and no raw RuntimeError ends the batch."""
    from amp_profile_magic.emulator import Faults

    with Emulator(faults=Faults(latency=0.05)) as slow:
        client = ProfileClient(endpoint=slow.url, api_key=slow.api_key, **FAST)

        def close_when_a_quarter_is_asked() -> None:
            while slow.request_count < 15:
                time.sleep(0.002)
            client.close()

        closer = threading.Thread(target=close_when_a_quarter_is_asked)
        closer.start()
        try:
            batch = client.lookup_many(
                [ProfileQuery(user_id=f"user-{index:05d}", props=True) for index in range(1, 61)]
            )
        finally:
            closer.join()
            client.close()
    assert [outcome.error for outcome in batch] == [None] * 60


def test_a_pool_closed_between_taking_it_and_sending_is_retried(emulator: Emulator, monkeypatch: Any) -> None:
    """A request whose pool another thread closed just before it was sent (httpx's raw RuntimeError) is retried on
    a new pool, like a dropped connection."""
    client = ProfileClient(endpoint=emulator.url, api_key=emulator.api_key, **FAST)
    fetch = client._fetch
    closes: list[bool] = []

    def closed_before_the_first_send(http: Any, params: Any, **options: Any) -> Any:
        if not closes:
            client.close()  # as another thread's close() (a changed setting) would
            closes.append(http.is_closed)
        return fetch(http, params, **options)

    monkeypatch.setattr(client, "_fetch", closed_before_the_first_send)
    emulator.reset()
    try:
        assert client.lookup(user_id="12345", props=True).user_id == "12345"
    finally:
        client.close()
    assert closes == [True]
    assert len(emulator.requests) == 1


def test_secret_trait_reads_the_environment_strips_and_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key defaults to $AMPLITUDE_SECRET_KEY, is stripped of surrounding whitespace, and None unsets it."""
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", f"  {CANARY_KEY}\n")
    client = ProfileClient()
    assert client.api_key.reveal() == CANARY_KEY
    assert client.api_key == Secret(CANARY_KEY)
    client.api_key = None  # type: ignore[assignment]
    assert not client.api_key
    assert repr(client.api_key) == "<secret unset>"
    assert "key=unset" in repr(client)
    assert ProfileClient.api_key.default_value_repr() == "$AMPLITUDE_SECRET_KEY or unset"


def test_pacer_spaces_sequential_sends_by_the_interval() -> None:
    """Three sends at 1200/minute take at least two intervals (0.1 s)."""
    pacer = Pacer()
    started = time.monotonic()
    for _ in range(3):
        pacer.acquire(1200)
    assert time.monotonic() - started >= 0.1 - 1e-3


def test_pacer_hold_delays_sends_already_scheduled() -> None:
    """hold() pushes back even a send whose slot was reserved before the hold."""
    pacer = Pacer()
    pacer.acquire(600_000)
    released: list[float] = []
    worker = threading.Thread(target=lambda: (pacer.acquire(60), released.append(time.monotonic())))
    worker.start()  # reserves the slot one second ahead
    time.sleep(0.05)
    held_at = time.monotonic()
    pacer.hold(1.5)
    worker.join(timeout=5)
    assert released
    assert released[0] - held_at >= 1.5 - 1e-3


def test_a_stopped_slow_batch_leaves_no_reservation_behind() -> None:
    """Waiters cancelled at a mistyped slow rate give their slots back: the next caller, at a sane rate, goes at
    once (spacing after the last real send still holds)."""
    pacer = Pacer()
    pacer.acquire(6)  # sent; the next slot is 10 s away
    cancel = threading.Event()
    cancelled: list[bool] = []

    def wait() -> None:
        try:
            pacer.acquire(6, cancel)
        except Cancelled:
            cancelled.append(True)

    waiters = [threading.Thread(target=wait) for _ in range(4)]
    for waiter in waiters:
        waiter.start()  # each reserves a slot 10 s further on: 40 s of reservations
    time.sleep(0.05)
    cancel.set()
    for waiter in waiters:
        waiter.join(timeout=5)
    assert cancelled == [True] * 4
    started = time.monotonic()
    pacer.acquire(600)
    assert time.monotonic() - started < 1.0


def test_a_rate_too_slow_for_any_clock_is_refused_and_leaves_the_pacer_usable() -> None:
    """requests_per_minute=1e-300 is a ValueError before anything is reserved; the client refuses the setting."""
    pacer = Pacer()
    with pytest.raises(ValueError, match=r"at least 0\.01"):
        pacer.acquire(1e-300)
    started = time.monotonic()
    pacer.acquire(600)
    assert time.monotonic() - started < 0.5
    with pytest.raises(TraitError, match=r"at least 0\.01"):
        ProfileClient(requests_per_minute=1e-300)
    assert ProfileClient(requests_per_minute=0.01).requests_per_minute == 0.01


def test_pacer_wait_is_cancellable_and_reset_forgets_reservations() -> None:
    """A cancelled wait raises Cancelled promptly; reset() lets the next send go at once."""
    pacer = Pacer()
    pacer.acquire(1)  # the next slot is a minute away
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        pacer.acquire(1, cancel)
    assert time.monotonic() - started < 1.0
    pacer.reset()
    started = time.monotonic()
    pacer.acquire(1)
    assert time.monotonic() - started < 0.5

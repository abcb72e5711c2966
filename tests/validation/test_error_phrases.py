"""Error words inside good data are data: failures are classified from the status, a JSON body's top-level ``error``,
or the text of a non-JSON failure body, never from text inside ``userData``. Unreadable bodies never carry the key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from amp_profile_magic import MalformedResponse, ProfileClient, ProfileError, ProfileQuery
from tests.client.conftest import check_error
from tests.conftest import CANARY_KEY

from .conftest import Answer, ScriptedApi, user_data_answer

UNKNOWN = "User id and device id not seen before"
THROTTLED = "Number of requests per minute exceeds system limit. Contact Support if you need this limit raised"


@pytest.fixture
def client(scripted_api: ScriptedApi) -> Iterator[ProfileClient]:
    """A client for the scripted API with the canary key, fast retries and pacing that never binds."""
    profile_client = ProfileClient(
        endpoint=scripted_api.url,
        api_key=CANARY_KEY,
        max_retries=2,
        backoff_initial=0.01,
        backoff_max=0.02,
        requests_per_minute=600_000,
        timeout=5.0,
    )
    yield profile_client
    profile_client.close()


@pytest.mark.parametrize("phrase", [UNKNOWN, THROTTLED])
def test_error_phrase_inside_a_profile_is_data(
    phrase: str, run: Any, api_shell: Any, scripted_api: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    """A 200 profile whose property holds an API error phrase gives rows, sent once: no UnknownUser, no throttling."""
    scripted_api.answers["talker"] = user_data_answer(
        {"user_id": "talker", "amp_props": {"last_message": phrase, "nested": {"error": phrase}}}
    )
    api_shell.user_ns["ids"] = ["talker", "other"]
    with caplog.at_level(logging.WARNING, logger="amp_profile_magic"):
        done = run("%ampprofile --users ids props -o props")
    assert done.result.error_in_exec is None, done.everything
    frame = api_shell.user_ns["props"]
    assert frame.attrs["failures"] == []
    assert frame.loc[frame["user_id"] == "talker", "last_message"].tolist() == [phrase]
    assert [params.get("user_id") for params in scripted_api.requests].count("talker") == 1
    assert not [record for record in caplog.records if "Retrying" in record.getMessage()]


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        # The documented unknown-user body, whatever the status.
        (Answer(400, json.dumps({"error": UNKNOWN}).encode()), "unknown_user"),
        (Answer(404, json.dumps({"error": UNKNOWN}).encode()), "unknown_user"),
        (Answer(200, json.dumps({"error": UNKNOWN}).encode()), "unknown_user"),
        # Throttling by status, by a JSON error, or by a plain-text failure body.
        (Answer(429, b"", "text/plain"), "throttled"),
        (Answer(200, json.dumps({"error": THROTTLED}).encode()), "throttled"),
        (Answer(503, THROTTLED.encode(), "text/plain"), "throttled"),
        # The phrases inside a failure's profile data, or below the top level, say nothing.
        (user_data_answer({"user_id": "who", "amp_props": {"note": UNKNOWN}}, status=500), "server_error"),
        (user_data_answer({"user_id": "who", "amp_props": {"note": THROTTLED}}, status=503), "server_error"),
        (Answer(400, json.dumps({"detail": {"error": UNKNOWN}}).encode()), "unexpected_response"),
        (Answer(418, json.dumps([UNKNOWN]).encode()), "unexpected_response"),
        (Answer(401, json.dumps({"userData": {"note": "Missing Api-Key in Authorization header"}}).encode()), None),
    ],
)
def test_failures_are_classified_from_status_error_field_or_plain_text(
    answer: Answer, kind: str | None, client: ProfileClient, scripted_api: ScriptedApi
) -> None:
    """Each answer maps to the failure its status, top-level error or plain text names, not to phrases in its data."""
    scripted_api.answers["who"] = answer
    batch = client.lookup_many([client_query("who")])
    [outcome] = batch
    assert outcome.error is not None
    check_error(outcome.error)
    # A 401 whose JSON merely quotes the missing-header phrase is an invalid key, not a missing header.
    assert outcome.error.kind == (kind or "invalid_key")


def client_query(user_id: str) -> ProfileQuery:
    """A props lookup of ``user_id``."""
    return ProfileQuery(user_id=user_id, props=True)


def test_unparseable_body_is_malformed_without_the_key_or_the_parser_frames(
    client: ProfileClient, scripted_api: ScriptedApi
) -> None:
    """A 200 that is not JSON and echoes the key fails as MalformedResponse, key masked, no chained parser error."""
    scripted_api.answers["echo"] = Answer(200, f'{{"userData": {{"auth": "Api-Key {CANARY_KEY}"'.encode())
    with pytest.raises(MalformedResponse) as caught:
        client.lookup(user_id="echo", props=True)
    error = caught.value
    check_error(error)
    assert error.__cause__ is None
    assert error.__context__ is None
    assert 'is not JSON: \'{"userData": {"auth": "Api-Key ********"\'.' in error.message


def test_nesting_deeper_than_the_parser_recurses_is_malformed(client: ProfileClient, scripted_api: ScriptedApi) -> None:
    """JSON nested 100,000 deep is MalformedResponse saying so, not a RecursionError."""
    scripted_api.answers["deep"] = Answer(200, b'{"userData": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(MalformedResponse) as caught:
        client.lookup(user_id="deep", props=True)
    assert "nested too deeply" in caught.value.message
    assert caught.value.__context__ is None


@pytest.mark.parametrize(
    "user_data",
    [
        {"user_id": "leak", "recommendations": [{"rec_id": "r", "last_updated": f"at {CANARY_KEY}"}]},
        {"user_id": "leak", "amp_props": {f"{CANARY_KEY}": float("nan")}},
        {"user_id": "leak", "cohort_ids": [{"key": CANARY_KEY}], "recommendations": [{"rec_id": "r", "items": [1.5]}]},
    ],
)
def test_validation_messages_mask_the_key(
    user_data: dict[str, Any], client: ProfileClient, scripted_api: ScriptedApi
) -> None:
    """A response value or property name that echoes the key is masked in the failure's message and field."""
    scripted_api.answers["leak"] = user_data_answer(user_data)
    [outcome] = client.lookup_many([_full_query("leak")])
    error = outcome.error
    assert isinstance(error, ProfileError)
    assert isinstance(error, MalformedResponse), error
    check_error(error)
    assert CANARY_KEY not in (error.field or "")


def _full_query(user_id: str) -> ProfileQuery:
    """A lookup of recs, props and cohorts for ``user_id``."""
    return ProfileQuery(user_id=user_id, rec_ids=("r",), props=True, cohorts=True)

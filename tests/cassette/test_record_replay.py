"""Recording the API's responses to a cassette and replaying them offline, through ProfileClient."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from amp_profile_magic import CassetteError, ConfigurationError, ProfileClient, ProfileQuery, Throttled, _cassette
from amp_profile_magic._cassette import REDACTED
from amp_profile_magic._cassette import cassette as cassette_for
from amp_profile_magic.emulator import Emulator
from tests.conftest import CANARY_KEY

QUERIES = [
    ProfileQuery(user_id="12345", rec_ids=("testRecId", "testRecId2"), props=True, cohorts=True),
    ProfileQuery(user_id="user-00001", props=True, comps=True, prediction_ids=("0x10x", "0x11x")),
    ProfileQuery(device_id="ffff-ffff-ffff-ffff", comp_ids=("t14bqib",)),
    ProfileQuery(user_id="nobody-at-all", props=True),
]


def interactions(path: Path) -> list[dict[str, object]]:
    """The recorded interactions of the cassette at ``path``."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return list(document["interactions"])


def test_replay_returns_exactly_what_was_recorded(
    recorder: ProfileClient, replayer: ProfileClient, emulator: Emulator
) -> None:
    """Profiles and failures replayed from a cassette equal those the live API gave, outcome for outcome."""
    recorded = recorder.lookup_many(QUERIES)
    assert len(recorded.profiles) == 3
    assert [o.error.kind for o in recorded.failures if o.error] == ["unknown_user"]
    before = emulator.request_count

    replayed = replayer.lookup_many(QUERIES)

    assert emulator.request_count == before
    assert replayed.profiles == recorded.profiles
    assert [(o.query, type(o.error), str(o.error)) for o in replayed.failures] == [
        (o.query, type(o.error), str(o.error)) for o in recorded.failures
    ]


def test_replay_needs_no_key_no_network_and_no_pacing(recorder: ProfileClient, replayer: ProfileClient) -> None:
    """Replay runs with no key, a closed endpoint and a pace of one request a minute, and still answers at once."""
    queries = [ProfileQuery(user_id=f"user-{n:05d}", cohorts=True) for n in range(30)]
    assert not recorder.lookup_many(queries).failures
    replayer.requests_per_minute = 1.0  # paced, 30 lookups would take half an hour
    assert not replayer.api_key

    started = time.monotonic()
    replayed = replayer.lookup_many(queries)

    assert not replayed.failures
    assert len(replayed.profiles) == 30
    assert time.monotonic() - started < 120


def test_a_request_missing_from_the_cassette_fails_naming_it_and_the_cassette(
    recorder: ProfileClient, replayer: ProfileClient, cassette: Path
) -> None:
    """Replaying a lookup that was never recorded raises CassetteError naming the request and the file."""
    recorder.lookup(user_id="12345", props=True)

    with pytest.raises(CassetteError) as caught:
        replayer.lookup(user_id="12345", cohorts=True)

    message = str(caught.value)
    assert isinstance(caught.value, ConfigurationError)
    assert "GET /v1/userprofile?get_cohort_ids=true&user_id=12345" in message
    assert str(cassette) in message
    assert "record" in message
    assert caught.value.kind == "cassette"


def test_in_a_batch_only_the_unrecorded_users_fail(recorder: ProfileClient, replayer: ProfileClient) -> None:
    """A batch replay returns the recorded users and lists each unrecorded one as a cassette failure."""
    recorder.lookup_many([ProfileQuery(user_id="user-00001", cohorts=True)])

    replayed = replayer.lookup_many(
        [ProfileQuery(user_id="user-00001", cohorts=True), ProfileQuery(user_id="user-00002", cohorts=True)]
    )

    assert [p.user_id for p in replayed.profiles] == ["user-00001"]
    assert [(o.query.user_id, o.error.kind) for o in replayed.failures if o.error] == [("user-00002", "cassette")]


def test_the_cassette_never_holds_the_key(emulator: Emulator, cassette: Path) -> None:
    """Recording with the canary key, successes and failures alike, leaves no trace of the key in the cassette."""
    assert emulator.api_key == CANARY_KEY
    client = ProfileClient(
        endpoint=emulator.url, api_key=CANARY_KEY, cassette=str(cassette), cassette_mode="record", max_retries=0
    )
    client.lookup_many(QUERIES)
    emulator.throttle_burst(1)
    with pytest.raises(Throttled):
        client.lookup(user_id="12345", cohorts=True)
    client.close()

    text = cassette.read_text(encoding="utf-8")
    assert len(interactions(cassette)) == 6  # props+comps costs user-00001 two requests
    assert CANARY_KEY not in text
    assert CANARY_KEY[:12] not in text
    assert "authorization" not in text.lower()


def test_a_key_echoed_back_by_the_server_is_redacted(cassette: Path) -> None:
    """Should a server echo the key in a body or header, the cassette stores a placeholder instead."""

    def echo(request: httpx.Request) -> httpx.Response:
        key = request.headers["authorization"].removeprefix("Api-Key ")
        body = {"userData": {"user_id": "12345", "device_id": None, "amp_props": {"echo": key}}}
        return httpx.Response(200, json=body, headers={"X-RateLimit-Key": key, "Set-Cookie": f"k={key}"})

    client = ProfileClient(
        endpoint="https://profile-api.amplitude.com",
        api_key=CANARY_KEY,
        cassette=str(cassette),
        cassette_mode="record",
        transport=httpx.MockTransport(echo),
    )
    live = client.lookup(user_id="12345", props=True)
    client.close()

    assert live.properties == {"echo": "********"}  # masked in the profile too: it would print in a frame
    text = cassette.read_text(encoding="utf-8")
    assert CANARY_KEY not in text
    assert "set-cookie" not in text.lower()
    [interaction] = interactions(cassette)
    assert interaction["response"]["headers"] == {"content-type": "application/json", "x-ratelimit-key": REDACTED}  # type: ignore[index]
    replayer = ProfileClient(cassette=str(cassette), cassette_mode="replay")
    assert replayer.lookup(user_id="12345", props=True).properties == {"echo": REDACTED}


def test_a_retried_request_replays_its_answers_in_order(
    recorder: ProfileClient, replayer: ProfileClient, emulator: Emulator, cassette: Path
) -> None:
    """A throttled attempt and its successful retry are both recorded, and replay goes through the same retry."""
    emulator.throttle_burst(1)
    recorded = recorder.lookup(user_id="12345", cohorts=True)
    recorder.close()
    statuses = [i["response"]["status"] for i in interactions(cassette)]  # type: ignore[index]
    assert statuses == [429, 200]

    started = time.monotonic()
    replayed = replayer.lookup(user_id="12345", cohorts=True)

    assert replayed == recorded
    assert time.monotonic() - started >= 0.9  # the recorded Retry-After: 1 was honoured again
    # Once the recorded answers run out, the last one keeps answering (a re-run cell).
    assert replayer.lookup(user_id="12345", cohorts=True) == recorded


def test_recording_continues_when_the_client_reconnects(recorder: ProfileClient, cassette: Path) -> None:
    """Changing a connection setting mid-recording rebuilds the transport but keeps what was recorded."""
    recorder.lookup(user_id="user-00001", cohorts=True)
    recorder.timeout = 3.0  # closes the pooled connections; the next request builds a new transport
    recorder.lookup(user_id="user-00002", cohorts=True)
    recorder.close()

    users = [dict(i["request"]["query"])["user_id"] for i in interactions(cassette)]  # type: ignore[index]
    assert users == ["user-00001", "user-00002"]


def test_the_cassette_on_disk_is_always_complete(recorder: ProfileClient, cassette: Path) -> None:
    """While a concurrent batch records, every read of the cassette parses, and no temporary file is left over."""
    queries = [ProfileQuery(user_id=f"user-{n:05d}", props=True) for n in range(80)]
    done = threading.Event()
    reads: list[int] = []
    errors: list[Exception] = []

    def read_continuously() -> None:
        while not done.is_set():
            try:
                reads.append(len(interactions(cassette)))
            except FileNotFoundError:
                continue
            except Exception as error:  # a torn write shows up here
                errors.append(error)
            time.sleep(0.001)

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        batch = recorder.lookup_many(queries)
    finally:
        done.set()
        reader.join()

    recorder.close()
    assert not batch.failures
    assert not errors
    assert reads
    assert reads == sorted(reads)
    assert len(interactions(cassette)) == 80
    assert [path.name for path in cassette.parent.iterdir()] == [cassette.name]


def test_a_long_recording_is_rewritten_less_often_but_catches_up(
    recorder: ProfileClient, cassette: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big cassette is not rewritten after every response, yet a timer writes the latest ones soon after."""
    monkeypatch.setattr(_cassette, "REWRITE_RATE", 300)  # bytes a second: a 1 KB cassette waits ~3 s to be rewritten
    for n in range(5):
        recorder.lookup(user_id=f"user-{n:05d}", cohorts=True)

    assert len(interactions(cassette)) < 5
    deadline = time.monotonic() + 60
    while len(interactions(cassette)) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(interactions(cassette)) == 5


def test_settings_come_from_the_environment(
    recorder: ProfileClient, cassette: Path, closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AMPLITUDE_PROFILE_CASSETTE and AMPLITUDE_PROFILE_CASSETTE_MODE configure a new client."""
    recorded = recorder.lookup(user_id="12345", cohorts=True)
    monkeypatch.setenv("AMPLITUDE_PROFILE_CASSETTE", str(cassette))
    monkeypatch.setenv("AMPLITUDE_PROFILE_CASSETTE_MODE", "Replay")
    monkeypatch.setenv("AMPLITUDE_PROFILE_URL", closed_url)

    client = ProfileClient()

    assert (client.cassette, client.cassette_mode) == (str(cassette), "replay")
    assert client.lookup(user_id="12345", cohorts=True) == recorded


def test_a_misspelt_mode_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mode other than off, record or replay fails with a one-line error naming the variable."""
    monkeypatch.setenv("AMPLITUDE_PROFILE_CASSETTE_MODE", "recrod")
    client = ProfileClient(api_key="k")

    with pytest.raises(CassetteError, match=r"AMPLITUDE_PROFILE_CASSETTE_MODE='recrod' is not one of off, record"):
        client.lookup(user_id="12345", cohorts=True)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist. Record it first"),
        ("{not json", "is not valid JSON: .* line 1 column 2"),
        ('{"interactions": []}', "not an amp_profile_magic cassette"),
        ('{"amp_profile_magic_cassette": 1, "interactions": [{"request": {}}]}', "has a broken entry 1: "),
    ],
)
def test_an_unusable_cassette_fails_clearly(
    replayer: ProfileClient, cassette: Path, content: str | None, expected: str
) -> None:
    """A missing, corrupt or foreign cassette file fails the lookup with a CassetteError saying which and why."""
    if content is not None:
        cassette.write_text(content, encoding="utf-8")

    with pytest.raises(CassetteError, match=expected) as caught:
        replayer.lookup(user_id="12345", cohorts=True)

    assert str(cassette) in str(caught.value)


def test_a_mode_without_a_cassette_path_fails_clearly() -> None:
    """Recording or replaying without ProfileClient.cassette set names the missing setting."""
    client = ProfileClient(api_key="k", cassette_mode="replay")

    with pytest.raises(CassetteError, match=r"ProfileClient\.cassette names no file"):
        client.lookup(user_id="12345", cohorts=True)


def test_recording_needs_the_key_but_replay_does_not(cassette: Path) -> None:
    """MissingKey still guards record mode (it talks to the API); replay mode skips it."""
    from amp_profile_magic import MissingKey

    with pytest.raises(MissingKey):
        ProfileClient(cassette=str(cassette), cassette_mode="record").lookup(user_id="1", cohorts=True)
    with pytest.raises(CassetteError, match="does not exist"):
        ProfileClient(cassette=str(cassette), cassette_mode="replay").lookup(user_id="1", cohorts=True)


def test_the_transport_refuses_an_unknown_mode(cassette: Path) -> None:
    """Asking the cassette module for a mode other than record or replay is a clear error."""
    with pytest.raises(CassetteError, match="'sideways' is not one of record, replay"):
        cassette_for(path=str(cassette), mode="sideways")

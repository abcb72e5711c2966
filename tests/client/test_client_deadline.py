"""Every request has a deadline from connecting to its last byte, and every answer a size cap, enforced as it streams.

The servers here are scripted over real loopback sockets (tests/client/scripted.py): they trickle bytes, never stop
sending, or send broken gzip. No thread is started to enforce a deadline, so none can be left behind.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from amp_profile_magic import (
    InvalidQuery,
    MalformedResponse,
    ProfileClient,
    ProfileQuery,
    RequestTimeout,
    ResponseTooLarge,
    UnexpectedResponse,
)
from amp_profile_magic._body import MAX_BODY_BYTES
from amp_profile_magic._exceptions import MAX_API_MESSAGE
from amp_profile_magic.emulator import Emulator
from tests.client.conftest import FAST, expect_failure
from tests.client.scripted import (
    Handler,
    ScriptedServer,
    answer,
    endless,
    gzip_bomb,
    gzipped,
    profile_body,
    trickle,
    trickle_head,
    wait_for,
)
from tests.conftest import CANARY_KEY


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], ScriptedServer]]:
    """``serve(handler)`` → a scripted loopback server, closed (and its handler threads joined) after the test."""
    servers: list[ScriptedServer] = []

    def start(handler: Handler) -> ScriptedServer:
        servers.append(ScriptedServer(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def client_for(server: ScriptedServer, **settings: object) -> ProfileClient:
    """A client for ``server`` with the test's fast settings, overridden by ``settings``."""
    return ProfileClient(endpoint=server.url, api_key=CANARY_KEY, **{**FAST, **settings})  # type: ignore[arg-type]


def foreign_threads() -> set[threading.Thread]:
    """Live threads that are not the scripted servers' own."""
    return {thread for thread in threading.enumerate() if not thread.name.startswith("scripted")}


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_trickling_body_times_out_within_the_whole_request_deadline(
    serve: Callable[[Handler], ScriptedServer], chunked: bool
) -> None:
    """One byte every 0.5 s with timeout=1 and max_retries=1 ends as RequestTimeout after two attempts of about a
    second each, leaves no thread behind, and the server sees each connection closed."""
    server = serve(trickle(chunked=chunked, interval=0.5))
    client = client_for(server, timeout=1.0, max_retries=1)
    threads = foreign_threads()
    started = time.monotonic()
    try:
        error = expect_failure(RequestTimeout, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    elapsed = time.monotonic() - started

    assert "within 1s" in str(error)
    assert 1.9 <= elapsed < 2.0 + FAST["backoff_max"] + 0.8, elapsed  # timeout × (max_retries + 1) plus backoff
    assert len(server.heads) == 2
    assert wait_for(lambda: server.abandoned == 2), "the client kept a trickling connection open"
    assert foreign_threads() == threads


def test_a_trickling_status_line_times_out_too(serve: Callable[[Handler], ScriptedServer]) -> None:
    """A server that sends even its status line a byte at a time is cut off at the deadline, not per read."""
    server = serve(trickle_head(interval=0.3))
    client = client_for(server, timeout=1.0, max_retries=0)
    started = time.monotonic()
    expect_failure(RequestTimeout, lambda: client.lookup(user_id="12345"))
    client.close()
    assert 0.9 <= time.monotonic() - started < 1.6


def test_a_timed_out_request_frees_its_pool_slot(serve: Callable[[Handler], ScriptedServer]) -> None:
    """With one connection allowed, a lookup after a timed-out one gets the slot at once and succeeds."""
    slow = threading.Event()
    slow.set()
    trickling = trickle(chunked=True, interval=0.5)

    def handler(server: ScriptedServer, conn: object, head: object) -> None:
        if slow.is_set():
            trickling(server, conn, head)  # type: ignore[arg-type]
        else:
            answer(conn, 200, profile_body())  # type: ignore[arg-type]

    server = serve(handler)
    client = client_for(server, timeout=0.6, max_retries=0, max_concurrency=1)
    try:
        expect_failure(RequestTimeout, lambda: client.lookup(user_id="12345"))
        slow.clear()
        started = time.monotonic()
        profile = client.lookup(user_id="12345", props=True)
        assert time.monotonic() - started < 0.5
    finally:
        client.close()
    assert profile.properties == {"plan": "free"}


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_body_over_the_cap_is_refused_without_reading_it_all(
    serve: Callable[[Handler], ScriptedServer], chunked: bool
) -> None:
    """A body that never ends (declared huge, or chunked without end) fails as ResponseTooLarge, not retried, and
    the client stops reading: memory stays bounded and the connection is dropped."""
    server = serve(endless(chunked=chunked))
    client = client_for(server, timeout=5.0)
    try:
        error = expect_failure(ResponseTooLarge, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert f"{MAX_BODY_BYTES:,}" in str(error)
    assert error.kind == "response_too_large"
    assert len(server.heads) == 1  # a too-large answer is not retried
    assert wait_for(lambda: server.abandoned == 1)


def test_a_gzip_bomb_is_stopped_at_the_cap(serve: Callable[[Handler], ScriptedServer]) -> None:
    """A few kB of gzip that would inflate to 50 MB is refused once the inflated size passes the cap."""
    server = serve(gzipped(gzip_bomb(50_000_000)))
    client = client_for(server)
    try:
        error = expect_failure(ResponseTooLarge, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert "at least" in str(error)


def test_a_broken_gzip_body_is_a_malformed_response(serve: Callable[[Handler], ScriptedServer]) -> None:
    """``Content-Encoding: gzip`` over bytes that are not gzip is MalformedResponse, not httpx.DecodingError."""
    server = serve(gzipped(b"this is not gzip at all"))
    client = client_for(server)
    try:
        error = expect_failure(MalformedResponse, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert "cannot be decoded" in str(error)


def test_a_truncated_gzip_body_is_a_malformed_response(serve: Callable[[Handler], ScriptedServer]) -> None:
    """A gzip stream cut short (its framing complete) is MalformedResponse naming the early end."""
    server = serve(gzipped(gzip_bomb(10_000)[:20]))
    client = client_for(server)
    try:
        error = expect_failure(MalformedResponse, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert "ends early" in str(error)


def test_a_good_gzip_body_is_decoded(serve: Callable[[Handler], ScriptedServer]) -> None:
    """A well-formed gzipped profile is read like any other."""
    import gzip

    server = serve(gzipped(gzip.compress(profile_body())))
    client = client_for(server)
    try:
        assert client.lookup(user_id="12345", props=True).properties == {"plan": "free"}
    finally:
        client.close()
    assert "gzip" in server.heads[0].headers["accept-encoding"]


def test_an_id_too_long_for_a_url_fails_that_user_only(client: ProfileClient, emulator: Emulator) -> None:
    """An id longer than a URL may be is an InvalidQuery for that user; the rest of the batch is fetched."""
    long_id = "x" * 70_000
    queries = [ProfileQuery(user_id="12345"), ProfileQuery(user_id=long_id), ProfileQuery(user_id="user-00001")]
    emulator.reset()
    batch = client.lookup_many(queries)

    assert [outcome.ok for outcome in batch] == [True, False, True]
    error = batch[1].error
    assert isinstance(error, InvalidQuery)
    assert "user_id" in str(error)
    assert "70,000 characters" in str(error)
    assert emulator.request_count == 2
    with pytest.raises(InvalidQuery):
        client.lookup(user_id=long_id)


def test_a_huge_error_body_is_kept_only_in_part(serve: Callable[[Handler], ScriptedServer]) -> None:
    """A 400 with a 3 MB message keeps at most MAX_API_MESSAGE characters of it in the failure."""
    message = "no " * 1_000_000

    def handler(server: ScriptedServer, conn: object, head: object) -> None:
        answer(conn, 400, message.encode(), {"Content-Type": "text/plain"})  # type: ignore[arg-type]

    server = serve(handler)
    client = client_for(server)
    try:
        batch = client.lookup_many([ProfileQuery(user_id=f"u{n}") for n in range(5)])
    finally:
        client.close()
    for outcome in batch:
        error = outcome.error
        assert isinstance(error, UnexpectedResponse)
        assert error.api_message is not None
        assert len(error.api_message) < MAX_API_MESSAGE + 50
        assert error.api_message.endswith("more characters)")
        assert error.__traceback__ is None  # a batch's failures keep no frames (and so no response bodies)


@pytest.mark.parametrize("charset", ["utf-16", "no-such-charset", "latin-1"])
def test_a_utf8_body_labelled_with_another_charset_is_read_as_utf8(
    serve: Callable[[Handler], ScriptedServer], charset: str, tmp_path: Any
) -> None:
    """JSON is UTF-8 whatever the Content-Type's charset says: a wrong label is neither a raw UnicodeError nor
    mojibake, fetched or read back from the local store."""
    body = json.dumps({"userData": {"user_id": "12345", "amp_props": {"city": "Zürich"}}}, ensure_ascii=False)

    def handler(server: ScriptedServer, conn: Any, head: Any) -> None:
        answer(conn, 200, body.encode("utf-8"), {"Content-Type": f"application/json; charset={charset}"})

    server = serve(handler)
    client = client_for(server, store=str(tmp_path))
    assert client.lookup(user_id="12345", props=True).properties == {"city": "Zürich"}
    assert client.lookup(user_id="12345", props=True).properties == {"city": "Zürich"}  # from the store
    assert len(server.heads) == 1

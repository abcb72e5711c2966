"""Answers that echo the key in disguise, or that are valid JSON but not text: over a real socket, per user."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from amp_profile_magic import MalformedResponse, ProfileClient, ProfileError, ProfileQuery, UnexpectedResponse
from tests.client.conftest import FAST
from tests.client.scripted import Head, ScriptedServer, answer
from tests.conftest import CANARY_KEY


def _escaped(text: str) -> str:
    """``text`` with every character as a JSON \\u escape: the spelling plain redaction cannot see."""
    return "".join(f"\\u{ord(char):04x}" for char in text)


def _profile(user: str, props: str) -> bytes:
    return ('{"userData": {"user_id": "' + user + '", "amp_props": ' + props + "}}").encode()


def _hostile(server: ScriptedServer, conn: socket.socket, head: Head) -> None:
    user = parse_qs(urlsplit(head.target).query)["user_id"][0]
    auth = head.headers["authorization"]
    if user == "error-escaped":
        answer(conn, 400, ('{"error": "rejected header: ' + _escaped(auth) + '"}').encode())
    elif user.startswith("error-escaped-"):  # error-escaped-401, error-escaped-503
        answer(conn, int(user.rpartition("-")[2]), ('{"error": "proxy saw: ' + _escaped(auth) + '"}').encode())
    elif user == "latin-header":
        head = b"HTTP/1.1 200 OK\r\nServer: Caf\xc3\xa9/1.0\r\nX-Where: \xe9t\xe9\r\nContent-Type: application/json\r\n"
        body = _profile(user, '{"a": 1}')
        conn.sendall(head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    elif user == "echo-plain":
        answer(conn, 200, _profile(user, json.dumps({"seen": auth})))
    elif user == "echo-escaped":
        answer(conn, 200, _profile(user, '{"seen": "' + _escaped(auth) + '"}'))
    elif user == "long-name":
        answer(conn, 200, _profile(user, "{" + json.dumps("x" * 8 + auth + "zzzz") + ": NaN}"))
    elif user == "surrogate":
        answer(conn, 200, _profile(user, '{"a": "x\\ud800y"}'))
    elif user == "emoji":
        answer(conn, 200, _profile(user, '{"a": "\\ud83d\\ude00"}'))
    elif user == "bom":
        answer(conn, 200, b"\xef\xbb\xbf" + _profile(user, '{"a": 1}'))
    else:
        answer(conn, 200, _profile(user, '{"a": 1}'))


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[ScriptedServer, ProfileClient]]:
    """A server answering by user id as above, and a client for it with its own store."""
    server = ScriptedServer(_hostile)
    settings: dict[str, Any] = {**FAST, "store": str(tmp_path / "store")}
    client = ProfileClient(endpoint=server.url, api_key=CANARY_KEY, **settings)
    yield server, client
    client.close()
    server.close()


def _store_bytes(tmp_path: Path) -> bytes:
    return b"".join(path.read_bytes() for path in (tmp_path / "store").iterdir() if path.is_file())


def test_a_key_escaped_in_an_error_body_is_masked_once_decoded(hostile: Any) -> None:
    """A 400 whose error message spells the key in \\u escapes shows it masked: decoding the body would have
    printed the key in the error panel and the batch's failure table."""
    _, client = hostile
    with pytest.raises(UnexpectedResponse) as caught:
        client.lookup(user_id="error-escaped")
    assert "rejected header: Api-Key ********" in str(caught.value)
    assert CANARY_KEY not in str(caught.value) + repr(caught.value) + str(caught.value.api_message)


@pytest.mark.parametrize("status", [401, 503])
def test_a_key_escaped_in_an_auth_or_server_error_body_is_masked(hostile: Any, status: int) -> None:
    """A 401 or 5xx body spelling the key in \\u escapes is quoted decoded and masked, never in escapes."""
    _, client = hostile
    client.max_retries = 0
    with pytest.raises(ProfileError) as caught:
        client.lookup(user_id=f"error-escaped-{status}", props=True)
    shown = str(caught.value) + repr(caught.value) + str(caught.value.api_message)
    assert "proxy saw: Api-Key ********" in shown
    assert CANARY_KEY not in shown
    assert _escaped(CANARY_KEY) not in shown


def test_a_non_ascii_response_header_does_not_fail_the_lookup(hostile: Any) -> None:
    """Header values in Latin-1 or UTF-8 (a "Server: Café") are read, not a raw UnicodeEncodeError for the batch."""
    _, client = hostile
    batch = client.lookup_many([ProfileQuery(user_id=user, props=True) for user in ("latin-header", "plain")])
    assert [outcome.error for outcome in batch] == [None, None]
    assert client.lookup(user_id="latin-header", props=True, cache="refresh").properties == {"a": 1}


@pytest.mark.parametrize("user", ["echo-plain", "echo-escaped"])
def test_a_key_echoed_in_a_profile_is_masked_in_the_frame_and_the_store(
    hostile: Any, tmp_path: Path, user: str
) -> None:
    """A profile value holding the key (plainly or escaped) reads masked, the same fetched and from the store, and
    the store's file holds neither spelling."""
    server, client = hostile
    fetched = client.lookup(user_id=user, props=True)
    stored = client.lookup(user_id=user, props=True, cache="only")
    assert fetched.properties == stored.properties == {"seen": "Api-Key ********"}
    assert len(server.heads) == 1
    file = _store_bytes(tmp_path)
    assert CANARY_KEY.encode() not in file
    assert _escaped(CANARY_KEY).encode() not in file


def test_a_long_property_name_holding_the_key_is_masked_before_it_is_shortened(hostile: Any) -> None:
    """A property name made of the key and more, too long to quote whole, is quoted masked: shortening first left
    all but the key's last character in the message."""
    _, client = hostile
    with pytest.raises(MalformedResponse) as caught:
        client.lookup(user_id="long-name", props=True)
    assert "xxxxxxxxApi-Key ********zzzz" in str(caught.value)
    assert CANARY_KEY[:12] not in str(caught.value) + str(caught.value.field)


def test_a_lone_surrogate_fails_that_user_only(hostile: Any) -> None:
    """A string holding half a surrogate pair (valid JSON, not text: a kernel cannot send it to the notebook) fails
    its user as malformed; an escaped pair (an emoji) and the other users read normally."""
    _, client = hostile
    queries = [ProfileQuery(user_id=user, props=True) for user in ("surrogate", "emoji", "plain")]
    batch = client.lookup_many(queries)
    errors = {outcome.query.user_id: outcome.error for outcome in batch}
    assert isinstance(errors["surrogate"], MalformedResponse)
    assert "lone UTF-16 surrogate" in str(errors["surrogate"])
    assert errors["emoji"] is None
    assert errors["plain"] is None
    profiles = {outcome.query.user_id: outcome.profile for outcome in batch if outcome.profile is not None}
    assert profiles["emoji"].properties == {"a": "\N{GRINNING FACE}"}


def test_a_body_with_a_byte_order_mark_is_stored_and_reused(hostile: Any) -> None:
    """An answer starting with a UTF-8 byte-order mark is stored readable, so the repeated lookup sends nothing and
    a store-only lookup finds it."""
    server, client = hostile
    first = client.lookup(user_id="bom", props=True)
    again = client.lookup(user_id="bom", props=True)
    only = client.lookup(user_id="bom", props=True, cache="only")
    assert first.properties == again.properties == only.properties == {"a": 1}
    assert len(server.heads) == 1


def test_a_batch_where_every_user_fails_alike_fails_the_cell(
    run: Callable[[str], Any], shell: Any, closed_url: str
) -> None:
    """Every user of a batch failing for no reason of its own (nothing listening) fails the cell, so Run All and
    papermill stop, instead of binding an empty table."""
    shell.run_line_magic("config", f"ProfileClient.endpoint = {closed_url!r}")
    shell.run_line_magic("config", "ProfileClient.max_retries = 0")
    shell.user_ns["ids"] = ["u1", "u2", "u3"]
    result = run("%ampprofile --users ids props -o x")
    assert result.result.error_in_exec is not None
    assert "ConnectionFailed" in result.everything
    assert "x" not in shell.user_ns

"""A hand-edited, malformed cassette fails with CassetteError naming the file and the entry, never a raw error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from amp_profile_magic import CassetteError, ProfileClient

from .conftest import FAST

GOOD = {
    "request": {"method": "GET", "path": "/v1/userprofile", "query": [["user_id", "12345"]]},
    "response": {"status": 200, "headers": {"content-type": "application/json"}, "body": '{"userData": {}}'},
}


def with_response(**changes: Any) -> dict[str, Any]:
    """GOOD with its response's fields replaced by ``changes``."""
    return {"request": GOOD["request"], "response": {**GOOD["response"], **changes}}


BROKEN = {
    "status as text": (with_response(status="200"), "status '200' is not an HTTP status"),
    "status out of range": (with_response(status=99999), "status 99999 is not an HTTP status"),
    "status as boolean": (with_response(status=True), "status True is not an HTTP status"),
    "headers as a list": (with_response(headers=[["content-type", "x"]]), "headers must be an object"),
    "header with a line break": (with_response(headers={"x-note": "a\r\nb"}), "'x-note' is not one line"),
    "header not ASCII": (with_response(headers={"x-note": "café"}), "'x-note' is not one line"),
    "header as number": (with_response(headers={"retry-after": 5}), "'retry-after' is not one line"),
    "gzip label on a text body": (
        with_response(headers={"Content-Encoding": "gzip"}),
        "'Content-Encoding' describes framing",
    ),
    "body with a lone surrogate": (with_response(body="\ud800"), "unpaired surrogate"),
    "body as object": (with_response(body={"userData": {}}), "body must be text"),
    "query as object": (
        {"request": {**GOOD["request"], "query": {"user_id": "1"}}, "response": GOOD["response"]},
        "query must be a list of [name, value] text pairs",
    ),
    "query value as number": (
        {"request": {**GOOD["request"], "query": [["user_id", 1]]}, "response": GOOD["response"]},
        "query must be a list",
    ),
    "path missing": ({"request": {"method": "GET"}, "response": GOOD["response"]}, "needs a method and a path"),
    "entry as text": ("GET /v1/userprofile", "an entry must be an object"),
    "response missing": ({"request": GOOD["request"]}, "an entry must be an object with a request and a response"),
}


@pytest.mark.parametrize(("entry", "expected"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_entry_names_the_file_and_the_entry(
    cassette: Path, closed_url: str, entry: object, expected: str
) -> None:
    """Replaying a cassette whose second entry is broken raises CassetteError with the path, "entry 2" and what
    is wrong with it, as one line and with no chained cause."""
    cassette.write_text(
        json.dumps({"amp_profile_magic_cassette": 1, "interactions": [GOOD, entry]}, ensure_ascii=True),
        encoding="utf-8",
    )
    replayer = ProfileClient(endpoint=closed_url, cassette=str(cassette), cassette_mode="replay", **FAST)
    with pytest.raises(CassetteError) as caught:
        replayer.lookup(user_id="12345")
    message = str(caught.value)
    assert str(cassette) in message
    assert "entry 2" in message
    assert expected in message
    assert "\n" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2]", "is not an amp_profile_magic cassette"),
        ('{"amp_profile_magic_cassette": 1, "interactions": {}}', "has no list of interactions"),
        ('{"amp_profile_magic_cassette": 1,\n "interactions": [\n  {"request": }]}', "line 3 column"),
        ('{"amp_profile_magic_cassette": 1, "interactions": ' + "[" * 200_000 + "]" * 200_000 + "}", "too deeply"),
    ],
)
def test_a_broken_document_says_where(cassette: Path, closed_url: str, text: str, expected: str) -> None:
    """A cassette that is not the expected document, or not JSON at all, says so (with JSON's line and column)."""
    cassette.write_text(text, encoding="utf-8")
    replayer = ProfileClient(endpoint=closed_url, cassette=str(cassette), cassette_mode="replay", **FAST)
    with pytest.raises(CassetteError, match=expected):
        replayer.lookup(user_id="12345")


def test_a_cassette_that_is_not_utf8_is_a_cassette_error(cassette: Path, closed_url: str) -> None:
    """Bytes that are not UTF-8 raise CassetteError naming the file, not UnicodeDecodeError."""
    cassette.write_bytes(b'{"amp_profile_magic_cassette": 1, "interactions": ["\xff"]}')
    replayer = ProfileClient(endpoint=closed_url, cassette=str(cassette), cassette_mode="replay", **FAST)
    with pytest.raises(CassetteError, match="is not UTF-8 text"):
        replayer.lookup(user_id="12345")


def test_a_body_labelled_with_another_charset_replays_as_the_utf8_text_it_is(cassette: Path, closed_url: str) -> None:
    """Bodies are kept as UTF-8 text: an entry whose Content-Type says utf-16 replays, not a raw UnicodeError."""
    entry = with_response(
        headers={"content-type": "application/json; charset=utf-16"},
        body='{"userData": {"user_id": "12345", "amp_props": {"city": "Zürich"}}}',
    )
    cassette.write_text(json.dumps({"amp_profile_magic_cassette": 1, "interactions": [entry]}), encoding="utf-8")
    replayer = ProfileClient(endpoint=closed_url, cassette=str(cassette), cassette_mode="replay", **FAST)
    assert replayer.lookup(user_id="12345").user_id == "12345"

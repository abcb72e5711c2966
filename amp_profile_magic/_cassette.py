"""Record the API's answers to a cassette file, and replay them offline without the key.

A cassette is JSON with one recorded interaction per line (so reviews and diffs stay readable)::

    {"amp_profile_magic_cassette": 1, "interactions": [
    {"request": {"method": "GET", "path": "/v1/userprofile", "query": [["get_amp_props", "true"], ...]},
     "response": {"status": 200, "headers": {"content-type": "application/json"}, "body": "{...}"}}
    ]}

Requests are matched by method, path and sorted query, never by host, so a cassette recorded against the real API
replays whatever the endpoint is. Nothing about the request's headers is stored, and the key the request carried is
redacted from anything that is, so no cassette holds the secret key. A request recorded several times (a retry, a
re-run cell) replays its answers in the recorded order, then keeps answering with the last one.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from ._body import MAX_BODY_BYTES
from ._exceptions import CassetteError
from ._secret import redact

__all__ = ["FORMAT_VERSION", "REDACTED", "CassetteTransport", "Recorder", "cassette", "describe_key", "request_key"]

FORMAT_VERSION = 1
REDACTED = "[REDACTED]"
log = logging.getLogger("amp_profile_magic")
# Only what changes how the client reads a response; Date, Server, cookies and the like stay out of the file.
_KEPT_HEADERS = ("content-type", "location", "retry-after")
_KEPT_HEADER_PREFIXES = ("x-ratelimit", "ratelimit")
# Bytes per second a long recording may spend rewriting its cassette (a 1 MB cassette: at most every 0.25 s).
REWRITE_RATE = 4_000_000
#: A recorded body is stored decoded, so these would no longer describe it.
_FRAMING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})

Query = tuple[tuple[str, str], ...]
Key = tuple[str, str, Query]


def request_key(method: str, path: str, query: Iterable[tuple[str, str]]) -> Key:
    """What a request is matched by: method, path and its query pairs in sorted order."""
    return (method.upper(), path, tuple(sorted(query)))


def describe_key(key: Key) -> str:
    """``GET /v1/userprofile?get_amp_props=true&user_id=12345``, for error messages."""
    method, path, query = key
    return f"{method} {path}?{urlencode(query)}" if query else f"{method} {path}"


class _Recording:
    """The interactions recorded to one path by this process, rewritten atomically as they come in.

    A small cassette is rewritten after every response. A big one is rewritten at most every ``size / REWRITE_RATE``
    seconds, so a long recording does not spend its time rewriting the file; a timer writes the latest responses
    when no further response comes, and :meth:`flush` (on close, before a replay reads the file, at exit) writes
    them at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._on_disk = 0
        self._size = 0
        self._written_at = 0.0
        self._timer: threading.Timer | None = None

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            wait = self._written_at + self._size / REWRITE_RATE - time.monotonic()
            if wait <= 0:
                self._write()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._flush_in_background)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Write every recorded response to the file now."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._on_disk < len(self._lines):
                self._write()

    def _flush_in_background(self) -> None:
        try:
            self.flush()
        except CassetteError as error:
            # The next response, close() or exit tries again; meanwhile the file holds the previous version.
            log.warning("%s", error)

    def _write(self) -> None:
        try:
            self._size = _write_atomically(self.path, self._lines)
        except OSError as error:
            raise CassetteError(f"Cannot write the cassette {self.path}: {error.strerror or error}.") from error
        self._on_disk = len(self._lines)
        self._written_at = time.monotonic()


# One recording per path for the life of the process: the client rebuilds its transport whenever a connection
# setting changes (%config ProfileClient.timeout = ...), and that must not start the cassette over.
_RECORDINGS: dict[Path, _Recording] = {}
_RECORDINGS_LOCK = threading.Lock()


def _recording(path: Path) -> _Recording:
    with _RECORDINGS_LOCK:
        if not _RECORDINGS:
            atexit.register(_flush_all)
        recording = _RECORDINGS.get(path)
        if recording is None:
            recording = _RECORDINGS[path] = _Recording(path)
        return recording


def _flush_all() -> None:
    with _RECORDINGS_LOCK:
        recordings = list(_RECORDINGS.values())
    for recording in recordings:
        try:
            recording.flush()
        except CassetteError as error:
            log.warning("%s", error)


def _flush_recording(path: Path) -> None:
    with _RECORDINGS_LOCK:
        recording = _RECORDINGS.get(path)
    if recording is not None:
        recording.flush()


def _write_atomically(path: Path, lines: list[str]) -> int:
    text = f'{{"amp_profile_magic_cassette": {FORMAT_VERSION}, "interactions": [\n' + ",\n".join(lines) + "\n]}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    # A reader (or a kernel killed mid-write) sees the old cassette or the new one, never half of one.
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would make a cassette meant for git unreadable to others
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return len(text)


def _load(path: Path) -> dict[Key, list[dict[str, Any]]]:
    where = f"cassette {path}"
    _flush_recording(path)  # replaying what this process is recording: read every response so far
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CassetteError(
            f"The {where} does not exist. Record it first: run the notebook with the secret key set and "
            "AMPLITUDE_PROFILE_CASSETTE_MODE=record (or %ampprofile_cassette record PATH)."
        ) from None
    except UnicodeDecodeError as error:
        raise CassetteError(f"The {where} is not UTF-8 text (byte {error.start}).") from None
    except OSError as error:
        raise CassetteError(f"Cannot read the {where}: {error.strerror or error}.") from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise CassetteError(f"The {where} is not valid JSON: {error}.") from None
    except RecursionError:
        raise CassetteError(f"The {where} nests its JSON too deeply to read.") from None
    if not isinstance(document, dict) or document.get("amp_profile_magic_cassette") != FORMAT_VERSION:
        raise CassetteError(f"The {where} is not an amp_profile_magic cassette of format {FORMAT_VERSION}.")
    interactions = document.get("interactions")
    if not isinstance(interactions, list):
        raise CassetteError(f"The {where} has no list of interactions.")
    answers: dict[Key, list[dict[str, Any]]] = {}
    for number, interaction in enumerate(interactions, start=1):
        try:
            key, response = _entry(interaction)
        except _BadEntry as error:
            broken = error
        else:
            answers.setdefault(key, []).append(response)
            continue
        # Raised outside the handler, so the internal _BadEntry does not ride along as the context.
        raise CassetteError(f"The {where} has a broken entry {number}{broken.where}: {broken.problem}.")
    return answers


class _BadEntry(Exception):
    def __init__(self, problem: str, where: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.where = where


def _entry(interaction: Any) -> tuple[Key, dict[str, Any]]:
    """One interaction's request key and response, checked so that replaying it cannot fail in httpx."""
    if not isinstance(interaction, dict):
        raise _BadEntry("an entry must be an object with a request and a response")
    request, response = interaction.get("request"), interaction.get("response")
    if not isinstance(request, dict) or not isinstance(response, dict):
        raise _BadEntry("an entry must be an object with a request and a response")
    method, path, query = request.get("method"), request.get("path"), request.get("query", [])
    if not isinstance(method, str) or not isinstance(path, str) or not path.startswith("/"):
        raise _BadEntry("its request needs a method and a path starting with /")
    if not isinstance(query, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(part, str) for part in pair) for pair in query
    ):
        raise _BadEntry("its request's query must be a list of [name, value] text pairs")
    key = request_key(method, path, ((name, value) for name, value in query))
    where = f" ({describe_key(key)[:120]})"
    status, headers, body = response.get("status"), response.get("headers") or {}, response.get("body")
    if type(status) is not int or not 100 <= status <= 599:
        raise _BadEntry(f"its status {status!r} is not an HTTP status (an integer from 100 to 599)", where)
    if not isinstance(body, str):
        raise _BadEntry("its response body must be text", where)
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        raise _BadEntry("its response body holds an unpaired surrogate escape (\\ud800 to \\udfff)", where) from None
    if not isinstance(headers, dict):
        raise _BadEntry("its response headers must be an object of name: value text", where)
    for name, value in headers.items():
        if not isinstance(value, str) or not name or not _header_text(name) or not _header_text(value):
            raise _BadEntry(f"its response header {name!r} is not one line of printable ASCII text", where)
        if name.lower() in _FRAMING_HEADERS:
            raise _BadEntry(f"its response header {name!r} describes framing, but the body is stored decoded", where)
    return key, {"status": status, "headers": headers, "body": body}


def _header_text(text: str) -> bool:
    # httpx encodes header text as ASCII; a line break would end the header early.
    return text.isascii() and (text.isprintable() or not text)


def _presented_key(request: httpx.Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").strip().partition(" ")
    return key.strip() if scheme.lower() == "api-key" else ""


def _kept_headers(response: httpx.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in ((name.lower(), value) for name, value in response.headers.items())
        # A header the cassette could not replay (non-ASCII, as a "Location: https://exé.com/") is not recorded: it
        # would make the whole file unreadable.
        if (name in _KEPT_HEADERS or name.startswith(_KEPT_HEADER_PREFIXES)) and _header_text(value)
    }


class Recorder:
    """An httpx response event hook that records every response to a cassette, without the request's headers.

    Hooked onto the responses of the transport httpx chose, so recording takes the same path (proxy, ``NO_PROXY``,
    deadline) as any lookup. The hook reads the body (decoded, as the client would) and stores it with the key it
    carried redacted; the client then reads the same, already loaded, body.
    """

    def __init__(self, *, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().resolve()
        self._recording = _recording(self.path)

    def __repr__(self) -> str:
        return f"<cassette Recorder {self.path}>"

    def __call__(self, response: httpx.Response) -> None:
        request = response.request
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return  # the client refuses it unread (ResponseTooLarge): nothing to replay
        body = response.read()
        method, path, query = request_key(request.method, request.url.path, request.url.params.multi_items())
        interaction = {
            "request": {"method": method, "path": path, "query": [list(pair) for pair in query]},
            "response": {
                "status": response.status_code,
                "headers": _kept_headers(response),
                "body": body.decode("utf-8", "replace"),
            },
        }
        line = redact(json.dumps(interaction, ensure_ascii=False), _presented_key(request), mask=REDACTED)
        self._recording.add(line)

    def flush(self) -> None:
        """Write what was recorded to the file now."""
        self._recording.flush()


class CassetteTransport(httpx.BaseTransport):
    """An httpx transport that answers from a cassette: nothing is sent anywhere, and no key is needed.

    A request that was not recorded raises :class:`~amp_profile_magic.CassetteError` naming the request and the
    cassette.
    """

    def __init__(self, *, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().resolve()
        self._answers = _load(self.path)
        self._served: dict[Key, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<CassetteTransport replay {self.path}>"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer the request from the cassette."""
        key = request_key(request.method, request.url.path, request.url.params.multi_items())
        answers = self._answers.get(key)
        if not answers:
            raise CassetteError(
                f"{describe_key(key)} is not in the cassette {self.path}; record the notebook again, every cell, with "
                "AMPLITUDE_PROFILE_CASSETTE_MODE=record (and the secret key set): a new recording replaces the file."
            )
        with self._lock:
            served = self._served.get(key, 0)
            self._served[key] = served + 1
        answer = answers[min(served, len(answers) - 1)]
        return httpx.Response(
            answer["status"], headers=answer.get("headers") or {}, content=answer["body"].encode(), request=request
        )


def cassette(*, path: str, mode: str) -> Recorder | CassetteTransport | None:
    """What ``mode`` needs: a response hook to record with, a transport to replay from, or None for ``"off"``."""
    if mode == "off":
        return None
    if mode not in ("record", "replay"):
        raise CassetteError(f"cassette mode {mode!r} is not one of record, replay.")
    if not path:
        raise CassetteError(f"ProfileClient.cassette_mode is {mode!r} but ProfileClient.cassette names no file.")
    return Recorder(path=path) if mode == "record" else CassetteTransport(path=path)

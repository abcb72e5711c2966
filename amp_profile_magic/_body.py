"""Read a streamed response body, decompressing it, without ever holding more than a size cap."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from ._deadline import ensure_time_left

if TYPE_CHECKING:
    import httpx

__all__ = ["ACCEPT_ENCODING", "MAX_BODY_BYTES", "BadEncoding", "TooLarge", "read_body", "settled"]

#: A profile with 100-item recommendations is a few kB; anything near this is not a User Profile API answer.
MAX_BODY_BYTES = 4_000_000
#: The encodings :func:`read_body` decodes with a bounded output (httpx's own decoders inflate a chunk in one go).
ACCEPT_ENCODING = "gzip, deflate"
_FRAMING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class TooLarge(Exception):
    """The body is longer than the cap (``size`` is at least how long it is)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class BadEncoding(Exception):
    """The body's Content-Encoding is unknown, or its compressed data is broken."""


class _Inflater:
    def __init__(self, encoding: str) -> None:
        # 32 + MAX_WBITS reads a gzip or zlib header; "deflate" is usually zlib-wrapped but sometimes raw.
        self._raw_fallback = encoding == "deflate"
        self._inflater = zlib.decompressobj(zlib.MAX_WBITS | (0 if self._raw_fallback else 32))
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        try:
            out = self._inflater.decompress(data, room)
        except zlib.error as error:
            if self._raw_fallback and not self._started:
                self._raw_fallback = False
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.feed(data, room)
            raise BadEncoding(str(error)) from None
        self._started = True
        return out

    @property
    def pending(self) -> bytes:
        return self._inflater.unconsumed_tail

    def finish(self) -> None:
        if not self._inflater.eof:
            raise BadEncoding("the compressed data ends early")


def read_body(response: httpx.Response, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole decoded body of a streamed ``response``; raise :class:`TooLarge` past ``limit`` bytes.

    Raises :class:`~amp_profile_magic._deadline.Expired` when the request's deadline passes between chunks, so a
    body that trickles in cannot outlive it.
    """
    if response.is_stream_consumed:
        # Built in memory (a cassette's answer, a test's transport): httpx has already read and decoded it.
        if len(response.content) > limit:
            raise TooLarge(len(response.content))
        return response.content
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise TooLarge(int(length))
    codings = [part.strip().lower() for part in response.headers.get("content-encoding", "").split(",")]
    codings = [coding for coding in codings if coding and coding != "identity"]
    if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
        raise BadEncoding(f"Content-Encoding {', '.join(codings)!r} was not asked for")
    inflater = _Inflater(codings[0]) if codings else None
    chunks: list[bytes] = []
    size = 0
    for raw in response.iter_raw():
        ensure_time_left()
        pending = raw
        while pending:
            if inflater is None:
                data, pending = pending, b""
            else:
                data = inflater.feed(pending, limit - size + 1)
                pending = inflater.pending
            size += len(data)
            if size > limit:
                raise TooLarge(size)
            chunks.append(data)
            if inflater is not None and not data and pending:
                break  # cannot happen with room > 0, but never spin
    if inflater is not None:
        inflater.finish()
    return b"".join(chunks)


def settled(response: httpx.Response, body: bytes) -> httpx.Response:
    """A finished copy of a streamed ``response`` holding ``body``, already decoded, for code that reads ``.text``."""
    import httpx

    # The raw bytes: decoded values re-encode as ASCII, so a "Server: Café" header raised a raw UnicodeEncodeError.
    headers = [
        (name, value) for name, value in response.headers.raw if name.decode("latin-1").lower() not in _FRAMING_HEADERS
    ]
    copy = httpx.Response(response.status_code, headers=headers, content=body, request=response.request)
    # JSON is UTF-8 (RFC 8259) whatever charset the Content-Type names: a server's (or an edited cassette's)
    # "charset=utf-16" on a UTF-8 body made .text raise a raw UnicodeError after the body had parsed.
    copy.encoding = "utf-8"
    return copy

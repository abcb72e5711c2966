"""One ``send()`` per response: uvicorn's HTTP protocol with writes coalesced per event-loop iteration.

An ASGI response arrives as two messages (head, then body) and uvicorn writes each to the socket as it
comes, so every small response costs two ``send`` system calls, two TCP segments and, on the client,
two wake-ups. On loopback those dominate the emulator's per-request cost. Gathering the writes made
during one event-loop iteration into a single write halves them without changing a byte on the wire.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["CoalescingHTTPProtocol"]


class _CoalescingTransport:
    """Stands in for an asyncio transport; writes are buffered until the loop's next iteration.

    Everything but ``write`` and ``close`` is delegated unchanged. ``close`` flushes first, so a
    response head written just before a deliberate drop still reaches the client.
    """

    __slots__ = ("_buffer", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._buffer:
            self._loop.call_soon(self._flush)
        self._buffer.append(bytes(data))

    def _flush(self) -> None:
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's default HTTP protocol (httptools if installed, else h11) with coalesced writes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]

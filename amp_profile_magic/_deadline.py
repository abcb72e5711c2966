"""One deadline per request, from connecting to its last byte, enforced at every socket wait.

httpx's timeouts apply to each socket operation, so a server that sends a byte every half second never times out.
The client opens a :func:`deadline_scope` around each request; the network backend installed by :func:`install`
shortens every connect, read and write of the calling thread to the time the scope has left, and stops a read
when the scope's ``cancel`` event is set. No thread is started: the thread that sends the request is the one
waiting on its socket, so that thread-local scope is always the right one, even on a pooled connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = ["Expired", "deadline_scope", "ensure_time_left", "install"]

log = logging.getLogger("amp_profile_magic")

#: Longest single socket wait while a cancel event may be set: how soon an interrupted batch frees its sockets.
CANCEL_POLL = 0.25


class Expired(Exception):
    """The request's deadline passed between two socket waits (while its body was being read)."""


@dataclass(frozen=True, slots=True)
class _Scope:
    deadline: float
    cancel: threading.Event | None


_local = threading.local()


@contextmanager
def deadline_scope(deadline: float, cancel: threading.Event | None = None) -> Iterator[None]:
    """Bound every socket wait of this thread, inside the block, by ``deadline`` (a ``time.monotonic`` value)."""
    previous = getattr(_local, "scope", None)
    _local.scope = _Scope(deadline, cancel)
    try:
        yield
    finally:
        _local.scope = previous


def ensure_time_left() -> None:
    """Raise :class:`Expired` if this thread's deadline has passed (a no-op outside a scope)."""
    scope: _Scope | None = getattr(_local, "scope", None)
    if scope is not None and time.monotonic() >= scope.deadline:
        raise Expired


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    scope: _Scope | None = getattr(_local, "scope", None)
    if scope is None:
        return timeout
    left = scope.deadline - time.monotonic()
    wait = left if timeout is None else min(timeout, left)
    if wait <= 0:
        raise error("the request's deadline passed")
    return wait


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        while True:
            scope: _Scope | None = getattr(_local, "scope", None)
            if scope is not None and scope.cancel is not None and scope.cancel.is_set():
                raise httpcore.ReadError("the batch was interrupted")
            wait = _bounded(timeout, httpcore.ReadTimeout)
            polling = scope is not None and scope.cancel is not None and (wait is None or wait > CANCEL_POLL)
            if not polling:
                return self._inner.read(max_bytes, wait)
            try:
                # A recv that timed out consumed nothing, so it can be tried again after a look at the cancel event.
                return self._inner.read(max_bytes, CANCEL_POLL)
            except httpcore.ReadTimeout:
                if timeout is not None:
                    timeout -= CANCEL_POLL

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        wait = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, wait, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        wait = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, wait, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install(client: httpx.Client, url: httpx.URL) -> httpcore.ConnectionPool | None:
    """Make the connections ``client`` opens for ``url`` honour this thread's deadline scope; return their pool.

    httpx chooses the transport for ``url`` (direct, or a proxy's from the environment), but has no public way to
    say which, nor to pass httpcore a network backend: these are the two private hops, and the only ones. If httpx
    changed too much, this returns None and a deadline is still checked between body chunks, just not inside a
    single socket wait.
    """
    route = getattr(client, "_transport_for_url", None)
    pool = getattr(route(url) if callable(route) else None, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(pool, httpcore.ConnectionPool) or not isinstance(backend, httpcore.NetworkBackend):
        log.debug("httpx's connection pool has no network backend to wrap; deadlines are checked between chunks")
        return None
    if not isinstance(backend, _DeadlineBackend):
        pool._network_backend = _DeadlineBackend(backend)
    return pool

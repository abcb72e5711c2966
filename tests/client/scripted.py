"""Scripted loopback servers for the transport tests: each misbehaves in one exact way, over real sockets.

A :class:`ScriptedServer` accepts connections on 127.0.0.1, reads each request's head, records it, and hands the
socket to a handler that writes whatever bytes the test wants, as slowly as it wants. :class:`ConnectProxy` is a
forward proxy for https: it answers CONNECT with a scripted refusal, or terminates the TLS itself (with a test CA's
certificate) and forwards the plain request to a loopback server, so an https endpoint can be tested end to end.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

PROFILE = {"userData": {"user_id": "12345", "amp_props": {"plan": "free"}}}


@dataclass
class Head:
    """The request line and headers a client sent."""

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)


def read_head(conn: socket.socket, *, within: float = 5.0) -> Head | None:
    """Read one request head from ``conn``; None if the client closed or sent nothing in time."""
    conn.settimeout(within)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
    except (TimeoutError, OSError):
        return None
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, target, _ = ([*lines[0].split(" ", 2), "", ""])[:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Head(method, target, headers)


Handler = Callable[["ScriptedServer", socket.socket, Head], None]


class ScriptedServer:
    """A threaded TCP server on loopback; ``handler(server, conn, head)`` writes each answer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.heads: list[Head] = []
        #: How many answers stopped because the client closed the connection first.
        self.abandoned = 0
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, name="scripted-accept", daemon=True)
        self._accepting.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def close(self) -> None:
        """Stop accepting, wake every trickling handler, and wait for them."""
        self.stopped.set()
        self._accepting.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), name="scripted-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while not self.stopped.is_set():
                head = read_head(conn, within=2.0)
                if head is None:
                    return
                with self._lock:
                    self.heads.append(head)
                try:
                    self.handler(self, conn, head)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    with self._lock:
                        self.abandoned += 1
                    return
                except _Close:
                    return

    def pause(self, seconds: float) -> None:
        """Sleep in a handler, returning early (with :class:`_Close`) when the server stops."""
        if self.stopped.wait(seconds):
            raise _Close


class _Close(Exception):
    pass


def answer(conn: socket.socket, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    """Write a complete answer with a Content-Length."""
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
    for name, value in (headers or {"Content-Type": "application/json"}).items():
        head += f"{name}: {value}\r\n"
    conn.sendall(head.encode("latin-1") + b"\r\n" + body)


def profile_body(size: int = 0) -> bytes:
    """A valid profile answer, padded with spaces to ``size`` bytes."""
    return json.dumps(PROFILE).encode().ljust(size)


def trickle(*, chunked: bool, interval: float = 0.5) -> Handler:
    """Send the status and headers at once, then a valid body one byte every ``interval`` seconds."""

    def handle(server: ScriptedServer, conn: socket.socket, head: Head) -> None:
        body = profile_body(400)
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode())
        for byte in body:
            server.pause(interval)
            conn.sendall(b"1\r\n" + bytes([byte]) + b"\r\n" if chunked else bytes([byte]))
        if chunked:
            conn.sendall(b"0\r\n\r\n")

    return handle


def trickle_head(*, interval: float = 0.3) -> Handler:
    """Send the status line and headers themselves one byte every ``interval`` seconds."""

    def handle(server: ScriptedServer, conn: socket.socket, head: Head) -> None:
        body = profile_body()
        for byte in f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode():
            conn.sendall(bytes([byte]))
            server.pause(interval)
        conn.sendall(body)

    return handle


def endless(*, chunked: bool) -> Handler:
    """Send a body that never ends, as fast as the client reads it (declared huge, or chunked)."""

    def handle(server: ScriptedServer, conn: socket.socket, head: Head) -> None:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {10**12}"
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode())
        block = b" " * 65536
        while not server.stopped.is_set():
            conn.sendall(b"10000\r\n" + block + b"\r\n" if chunked else block)

    return handle


def gzipped(body: bytes, *, status: int = 200) -> Handler:
    """Answer with ``body`` as given, labelled ``Content-Encoding: gzip`` (broken or not, as the test made it)."""

    def handle(server: ScriptedServer, conn: socket.socket, head: Head) -> None:
        answer(conn, status, body, {"Content-Type": "application/json", "Content-Encoding": "gzip"})

    return handle


def gzip_bomb(size: int) -> bytes:
    """``size`` bytes of spaces, gzipped (a few kB on the wire)."""
    return gzip.compress(b" " * size, compresslevel=9)


class ConnectProxy:
    """An https forward proxy on loopback that records every CONNECT and answers it as scripted.

    ``refuse`` (a status such as 407 or 502) answers every CONNECT with that status. Otherwise the proxy accepts
    the tunnel, terminates TLS with ``server_context`` (a certificate for the requested host), reads the plain
    request and forwards it to ``upstream`` (a loopback http URL), as a proxy that inspects TLS would; or, given
    ``respond`` (a scripted handler), lets that handler answer inside the tunnel.
    """

    def __init__(
        self,
        *,
        refuse: int | None = None,
        server_context: ssl.SSLContext | None = None,
        upstream: str = "",
        respond: Handler | None = None,
    ) -> None:
        self.refuse = refuse
        self.server_context = server_context
        self.upstream = upstream
        self.respond = respond
        self.connects: list[str] = []
        self.forwarded: list[Head] = []
        self._server = ScriptedServer(self._handle)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def heads(self) -> list[Head]:
        """Every request head the proxy received (CONNECTs, and plain-HTTP requests sent to it)."""
        return self._server.heads

    @property
    def abandoned(self) -> int:
        """How many tunnelled answers stopped because the client closed the connection first."""
        return self._server.abandoned

    def close(self) -> None:
        self._server.close()

    def _handle(self, server: ScriptedServer, conn: socket.socket, head: Head) -> None:
        if head.method != "CONNECT":
            answer(conn, 502, b"this proxy only tunnels", {"Content-Type": "text/plain"})
            return
        self.connects.append(head.target)
        if self.refuse is not None:
            answer(conn, self.refuse, b"", {"Proxy-Authenticate": 'Basic realm="corp"'} if self.refuse == 407 else {})
            raise _Close
        assert self.server_context is not None
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with self.server_context.wrap_socket(conn, server_side=True) as tls:
            inner = read_head(tls)
            if inner is None:
                raise _Close
            self.forwarded.append(inner)
            if self.respond is not None:
                try:
                    self.respond(server, tls, inner)
                except ssl.SSLError as error:  # the client closed the tunnel mid-answer: abandoned, as in plain TCP
                    raise ConnectionResetError from error
                raise _Close
            target = urlsplit(self.upstream)
            upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=5)
            headers = {name: value for name, value in inner.headers.items() if name not in ("host", "connection")}
            upstream.request(inner.method, inner.target, headers=headers)
            reply = upstream.getresponse()
            body = reply.read()
            upstream.close()
            kept = {name: value for name, value in reply.getheaders() if name.lower() == "content-type"}
            answer(tls, reply.status, body, {**kept, "Connection": "close"})
        raise _Close


def wait_for(condition: Callable[[], bool], *, within: float = 3.0) -> bool:
    """Poll ``condition`` until it holds or ``within`` seconds pass; return whether it held."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()

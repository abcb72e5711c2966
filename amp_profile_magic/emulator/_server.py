"""``Emulator``: the emulated User Profile API served by uvicorn on a loopback socket in a daemon thread."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from types import TracebackType

import uvicorn

from ._app import EmulatorApp, quiet_deliberate_drops
from ._coalescing import CoalescingHTTPProtocol
from ._data import Dataset
from ._faults import NO_FAULTS, Faults
from ._log import LoggedRequest

__all__ = ["Emulator"]

_BACKLOG = 1024
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


class Emulator:
    """A local, real-HTTP stand-in for Amplitude's User Profile API.

    ``start()`` binds ``host:port`` (port 0 picks a free port) and serves from a daemon thread;
    ``stop()`` shuts the server down. As a context manager it starts on entry and stops on exit::

        with Emulator(seed=1) as emu:
            httpx.get(f"{emu.url}/v1/userprofile?user_id=12345&get_amp_props=true",
                      headers={"Authorization": f"Api-Key {emu.api_key}"})

    The data come from :class:`Dataset` (``seed``, ``users``, ``rec_items``). Without ``api_key`` a
    random one is generated. ``rate_limit_per_minute`` throttles with a rolling window of
    ``rate_limit_window`` seconds (60, like the API; shorter windows hold the same rate, so a test meets a full
    window in seconds), answering 429 with ``Retry-After`` unless ``throttle_retry_after`` is false. An unknown user is
    answered with status ``unknown_user_status``. ``faults`` injects failures; ``plain_http_redirect``
    answers every API request with a 301 to the https URL, as the real API answers plain HTTP.
    ``faults``, ``rate_limit_per_minute``, ``rate_limit_window`` and ``plain_http_redirect`` may be changed while
    running.

    Every API request is recorded (:attr:`requests`, :attr:`request_count`, :meth:`stats`) without
    its headers, so the key never reaches the log. ``GET /_emulator/stats`` and
    ``POST /_emulator/reset`` (same key) serve the counters and reset to another process.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        users: int = 5000,
        rec_items: int = 10,
        api_key: str | None = None,
        rate_limit_per_minute: int | None = None,
        rate_limit_window: float = 60.0,
        throttle_retry_after: bool = True,
        unknown_user_status: int = 400,
        faults: Faults = NO_FAULTS,
        plain_http_redirect: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, got {type(faults).__name__}")
        self._dataset = Dataset(seed=seed, users=users, rec_items=rec_items)
        self._api_key = api_key if api_key is not None else "emu-" + secrets.token_hex(8)
        self._app = EmulatorApp(
            dataset=self._dataset,
            api_key=self._api_key,
            rate_limit_per_minute=rate_limit_per_minute,
            rate_limit_window=rate_limit_window,
            throttle_retry_after=throttle_retry_after,
            unknown_user_status=unknown_user_status,
            faults=faults,
            plain_http_redirect=plain_http_redirect,
        )
        self._host = host
        self._port = port
        self._bound_port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    def __repr__(self) -> str:
        # Deliberately without the API key: reprs end up in logs, tracebacks and notebook outputs.
        where = self.url if self.running else "stopped"
        return f"<Emulator {where} seed={self._dataset.seed} users={self._dataset.users}>"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind the socket, serve from a daemon thread and return once connections are accepted."""
        with self._lifecycle:
            if self._thread is not None:
                raise RuntimeError("the emulator is already running")
            sock = _bind(self._host, self._port)
            quiet_deliberate_drops()
            config = uvicorn.Config(
                self._app,
                log_config=None,  # leave the host process's logging configuration alone
                log_level="warning",
                access_log=False,
                lifespan="off",
                # uvicorn's "auto" protocol (httptools when installed, else h11), writing each response
                # with one send() instead of two.
                http=CoalescingHTTPProtocol,
                loop="asyncio",
                proxy_headers=False,  # nothing proxies the emulator; skip the per-request middleware
                server_header=False,  # the real API does not say "uvicorn"
                backlog=_BACKLOG,
                timeout_keep_alive=15,
                # A backstop for stop(): responses still running after a second are cancelled.
                timeout_graceful_shutdown=1,
            )
            server = uvicorn.Server(config)
            self._app.begin_serving()
            # Server.run installs signal handlers only when called from the main thread, so in this
            # daemon thread it leaves the host's SIGINT/SIGTERM handling (and Ctrl-C) untouched.
            thread = threading.Thread(
                target=server.run,
                kwargs={"sockets": [sock]},
                name=f"amp-profile-emulator:{sock.getsockname()[1]}",
                daemon=True,
            )
            thread.start()
            deadline = time.monotonic() + _START_TIMEOUT
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    server.should_exit = True
                    thread.join(_STOP_TIMEOUT)
                    sock.close()
                    raise RuntimeError("the emulator's server failed to start")
                time.sleep(0.005)
            self._bound_port = sock.getsockname()[1]
            self._server, self._thread = server, thread
            return self

    def stop(self) -> None:
        """Stop serving and close the socket; open connections are closed. Safe to call twice."""
        with self._lifecycle:
            server, thread = self._server, self._thread
            if server is None or thread is None:
                return
            self._app.abort_waits()
            server.should_exit = True
            thread.join(_STOP_TIMEOUT)
            if thread.is_alive():
                server.force_exit = True
                thread.join(_STOP_TIMEOUT)
            self._server = self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    # -- where and how to reach it ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (the bound port once started)."""
        port = self._bound_port if self._bound_port is not None else self._port
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{port}"

    @property
    def api_key(self) -> str:
        """The secret key requests must send as ``Authorization: Api-Key <key>``."""
        return self._api_key

    @property
    def dataset(self) -> Dataset:
        """The synthetic data the emulator answers from."""
        return self._dataset

    # -- runtime settings -------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The injected faults; assign a new :class:`Faults` to change them while running."""
        return self._app.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        if not isinstance(value, Faults):
            raise TypeError(f"faults must be a Faults, got {type(value).__name__}")
        self._app.faults = value

    @property
    def rate_limit_per_minute(self) -> int | None:
        """Requests allowed per rolling minute, or None; setting it starts an empty window."""
        return self._app.window.limit

    @rate_limit_per_minute.setter
    def rate_limit_per_minute(self, value: int | None) -> None:
        self._app.window.limit = value

    @property
    def rate_limit_window(self) -> float:
        """Seconds of the rolling throttle window (60 unless set); setting it starts an empty window."""
        return self._app.window.window

    @rate_limit_window.setter
    def rate_limit_window(self, value: float) -> None:
        self._app.window.window = value

    @property
    def plain_http_redirect(self) -> bool:
        """Whether every API request is answered with a 301 to the https URL."""
        return self._app.plain_http_redirect

    @plain_http_redirect.setter
    def plain_http_redirect(self, value: bool) -> None:
        self._app.plain_http_redirect = bool(value)

    def throttle_burst(self, n: int) -> None:
        """Answer the next ``n`` authenticated API requests as throttled."""
        self._app.throttle_burst(n)

    # -- what happened ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        """The logged requests to the emulated API (most recent 100,000), oldest first."""
        return self._app.log.entries()

    @property
    def request_count(self) -> int:
        """How many API requests were answered since start or the last :meth:`reset`."""
        return self._app.log.count

    def stats(self) -> dict[str, object]:
        """The counters served at ``/_emulator/stats``: requests, by_status, throttled, by_fault."""
        return self._app.log.stats()

    def reset(self) -> None:
        """Clear the log, counters, throttle window and pending burst; restart the fault sequence."""
        self._app.reset()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on accepted sockets
    # whose proto says TCP, and accepted sockets inherit it from this one. Without it, Nagle's
    # algorithm and delayed ACKs stall every response sent in two writes (head, body) by ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # Lets a fixed port be rebound right after a previous emulator closed it (TIME_WAIT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock

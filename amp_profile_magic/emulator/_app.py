"""The emulator's raw ASGI application: ``GET /v1/userprofile`` as documented, plus injectable faults."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from ._data import Dataset, Profile
from ._faults import NO_FAULTS, Faults
from ._log import LoggedRequest, RequestLog, logged_value
from ._throttle import RateWindow

__all__ = ["DeliberateDrop", "EmulatorApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

USERPROFILE_PATH = "/v1/userprofile"
STATS_PATH = "/_emulator/stats"
RESET_PATH = "/_emulator/reset"

_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"
_HTML = b"text/html"
THROTTLE_BODY = (
    b'{"error":"Number of requests per minute exceeds system limit. Contact Support if you need this limit raised"}'
)
UNKNOWN_USER_BODY = b'{"error":"User id and device id not seen before"}'
MISSING_KEY_BODY = b"Missing Api-Key in Authorization header"
INVALID_KEY_BODY = b"Invalid Api-Key"
REDIRECT_BODY = (
    b"<html>\r\n<head><title>301 Moved Permanently</title></head>\r\n<body>\r\n"
    b"<center><h1>301 Moved Permanently</h1></center>\r\n</body>\r\n</html>\r\n"
)
STOPPING_BODY = b"Service Unavailable: the emulator is stopping"
MALFORMED_HTML_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>Service temporarily unavailable</title></head>\n"
    b"<body><h1>Service temporarily unavailable</h1><p>Please try again later.</p></body></html>\n"
)
# Both caches are keyed by client-chosen query strings; clearing when full bounds their memory, and only short
# queries and small answers are kept, so a few huge requests cannot hold gigabytes (8,192 × a 60 KB query).
_CACHE_LIMIT = 8192
_CACHED_QUERY_BYTES = 4096
_CACHED_ANSWER_BYTES = 256 * 1024


class DeliberateDrop(Exception):
    """Raised by the app after starting a response, so uvicorn closes the connection mid-response."""


class _QuietDeliberateDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for every connection the emulator drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DeliberateDrop))


_filter_lock = threading.Lock()


def quiet_deliberate_drops() -> None:
    """Install (once per process) the filter that hides deliberate drops from uvicorn's error log."""
    logger = logging.getLogger("uvicorn.error")
    with _filter_lock:
        if not any(isinstance(f, _QuietDeliberateDrops) for f in logger.filters):
            logger.addFilter(_QuietDeliberateDrops())


class EmulatorApp:
    """An ASGI app answering ``GET /v1/userprofile`` like Amplitude's User Profile API.

    Each request to the emulated API is handled in this order: latency; the plain-HTTP redirect mode
    (301 to the https URL); unknown path (404, empty body); method (405); authentication (401 with
    the documented plain-text bodies); throttling (429 with the documented JSON body); injected
    faults; parameter validation (400) and the answer. Everything is recorded in :attr:`log`.

    The admin endpoints ``GET /_emulator/stats`` and ``POST /_emulator/reset`` need the same API key
    but are outside the emulated API: no latency, redirect, throttling, faults or logging.

    Settings (``faults``, ``plain_http_redirect``, ``window.limit``, ``window.window``) may be changed from another
    thread while serving; each request reads each setting once.
    """

    def __init__(
        self,
        *,
        dataset: Dataset,
        api_key: str,
        rate_limit_per_minute: int | None = None,
        rate_limit_window: float = 60.0,
        throttle_retry_after: bool = True,
        unknown_user_status: int = 400,
        faults: Faults = NO_FAULTS,
        plain_http_redirect: bool = False,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if not 100 <= unknown_user_status <= 599:
            raise ValueError(f"unknown_user_status must be an HTTP status, got {unknown_user_status!r}")
        self.dataset = dataset
        self._key = api_key.encode()
        self.throttle_retry_after = throttle_retry_after
        self.unknown_user_status = unknown_user_status
        self.faults = faults
        self.plain_http_redirect = plain_http_redirect
        self.window = RateWindow(rate_limit_per_minute, window=rate_limit_window)
        self.log = RequestLog()
        self._burst = 0
        self._burst_lock = threading.Lock()
        self._fault_rng = random.Random(f"faults:{dataset.seed}")
        # A separate stream for latency jitter, so turning jitter on does not change which requests fault.
        self._jitter_rng = random.Random(f"jitter:{dataset.seed}")
        # Set when the server stops, so latency and slow-fault waits end at once instead of holding
        # up shutdown (uvicorn would otherwise cancel them and log each as an application error).
        self._stopping: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._aborting = False
        self._params_cache: dict[bytes, dict[str, str]] = {}
        self._answer_cache: dict[bytes, tuple[int, bytes]] = {}

    def __repr__(self) -> str:
        return f"EmulatorApp(dataset={self.dataset!r})"

    # -- control ----------------------------------------------------------------------------------

    def throttle_burst(self, n: int) -> None:
        """Answer the next ``n`` authenticated API requests as throttled (``Retry-After: 1``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        with self._burst_lock:
            self._burst = n

    def reset(self) -> None:
        """Clear the log, counters, throttle window and pending burst; restart the fault sequence."""
        self.log.clear()
        self.window.clear()
        with self._burst_lock:
            self._burst = 0
        self._fault_rng.seed(f"faults:{self.dataset.seed}")
        self._jitter_rng.seed(f"jitter:{self.dataset.seed}")

    def begin_serving(self) -> None:
        """Forget an earlier :meth:`abort_waits`; called each time a server starts with this app."""
        self._aborting = False
        self._stopping = None

    def abort_waits(self) -> None:
        """End pending latency and slow-fault waits at once, and any started later (any thread).

        Called when stopping; requests caught waiting are answered 503, as a server going away would.
        """
        self._aborting = True
        stopping = self._stopping
        if stopping is not None:
            loop, event = stopping
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)  # asyncio.Event is not thread-safe

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; False if :meth:`abort_waits` cut the wait short."""
        if self._aborting:
            return False
        if self._stopping is None:
            self._stopping = (asyncio.get_running_loop(), asyncio.Event())
        try:
            await asyncio.wait_for(self._stopping[1].wait(), seconds)
        except TimeoutError:
            return True
        return False

    def _take_burst(self) -> bool:
        if not self._burst:  # unlocked fast path: the common case has no burst pending
            return False
        with self._burst_lock:
            if self._burst:
                self._burst -= 1
                return True
            return False

    # -- ASGI -------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off and websockets are not part of the API
        path: str = scope["path"]
        if path in (STATS_PATH, RESET_PATH):
            await self._admin(scope, send, path)
            return
        arrived = time.monotonic()
        faults = self.faults
        if faults.latency or faults.jitter:
            delay = faults.latency + (self._jitter_rng.uniform(0, faults.jitter) if faults.jitter else 0.0)
            waited = await self._wait(delay)
        else:
            waited = True
        query: bytes = scope["query_string"]
        method: str = scope["method"]

        async def answer(
            status: int,
            body: bytes,
            content_type: bytes | None,
            fault: str | None = None,
            headers: Sequence[tuple[bytes, bytes]] = (),
        ) -> None:
            self._record(arrived, method, path, query=query, status=status, fault=fault)
            await _respond(send, status, body, content_type, headers)

        if not waited:
            await answer(503, STOPPING_BODY, _TEXT)
            return
        if self.plain_http_redirect:
            await answer(301, REDIRECT_BODY, _HTML, headers=[(b"location", _https_location(scope))])
            return
        if path != USERPROFILE_PATH:
            await answer(404, b"", None)
            return
        if method != "GET":
            await answer(405, b"Method Not Allowed", _TEXT, headers=[(b"allow", b"GET")])
            return
        auth_failure = self._auth_failure(scope)
        if auth_failure is not None:
            await answer(401, auth_failure, _TEXT)
            return

        fault = faults.pick(self._fault_rng.random()) if faults.any_rate else None
        if fault == "throttle" or self._take_burst():
            await answer(429, THROTTLE_BODY, _JSON, "throttle", self._retry_after(1))
            return
        wait = self.window.admit(time.monotonic())
        if wait is not None:
            await answer(429, THROTTLE_BODY, _JSON, None, self._retry_after(wait))
            return

        if fault == "error":
            phrase = _phrase(faults.error_status).encode()
            await answer(faults.error_status, phrase, _TEXT, fault)
            return
        if fault == "slow" and not await self._wait(faults.slow_seconds):
            await answer(503, STOPPING_BODY, _TEXT, fault)
            return
        status, body = self._answer(query)
        if fault == "drop":
            self._record(arrived, method, path, query=query, status=0, fault=fault)
            # Promise the whole body, send only the head, then make uvicorn close the transport: the
            # client reads a status line and headers and then meets EOF, as when a proxy dies mid-reply.
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)],
                }
            )
            raise DeliberateDrop("connection dropped on purpose by the emulator's drop_rate fault")
        if fault == "malformed":
            if self._fault_rng.random() < 0.5:
                await answer(200, body[: max(1, len(body) // 2)], _JSON, fault)
            else:
                await answer(200, MALFORMED_HTML_BODY, _HTML, fault)
            return
        await answer(status, body, _JSON, fault)

    def _auth_failure(self, scope: Scope) -> bytes | None:
        """The 401 body for the request's Authorization header, or None when the key is right."""
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        if header is None:
            return MISSING_KEY_BODY
        scheme, _, key = header.strip().partition(b" ")
        key = key.strip()
        if scheme.lower() != b"api-key" or not key:
            return MISSING_KEY_BODY
        if not hmac.compare_digest(key, self._key):
            return INVALID_KEY_BODY
        return None

    def _retry_after(self, seconds: int) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(seconds).encode())] if self.throttle_retry_after else []

    def _record(self, at: float, method: str, path: str, *, query: bytes, status: int, fault: str | None) -> None:
        # A copy (the cached dict must not be shared with callers), each value cut to what a log needs to show.
        params = {name: logged_value(value) for name, value in self._params(query).items()}
        self.log.add(LoggedRequest(at=at, method=method, path=path, params=params, status=status, fault=fault))

    # -- admin ------------------------------------------------------------------------------------

    async def _admin(self, scope: Scope, send: Send, path: str) -> None:
        auth_failure = self._auth_failure(scope)
        if auth_failure is not None:
            await _respond(send, 401, auth_failure, _TEXT)
            return
        expected = "GET" if path == STATS_PATH else "POST"
        if scope["method"] != expected:
            await _respond(send, 405, b"Method Not Allowed", _TEXT, [(b"allow", expected.encode())])
            return
        if path == RESET_PATH:
            self.reset()
            await _respond(send, 200, b'{"reset":true}', _JSON)
            return
        await _respond(send, 200, _dumps(self.log.stats()), _JSON)

    # -- the API proper ---------------------------------------------------------------------------

    def _params(self, query: bytes) -> dict[str, str]:
        params = self._params_cache.get(query)
        if params is None:
            # Later duplicates win, as most web frameworks do.
            params = dict(parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True))
            if len(query) <= _CACHED_QUERY_BYTES:
                if len(self._params_cache) >= _CACHE_LIMIT:
                    self._params_cache.clear()
                self._params_cache[query] = params
        return params

    def _answer(self, query: bytes) -> tuple[int, bytes]:
        """Status and JSON body for a query; memoised, since the data are a pure function of the seed."""
        cached = self._answer_cache.get(query)
        if cached is None:
            cached = self._compute_answer(self._params(query))
            if len(query) <= _CACHED_QUERY_BYTES and len(cached[1]) <= _CACHED_ANSWER_BYTES:
                if len(self._answer_cache) >= _CACHE_LIMIT:
                    self._answer_cache.clear()
                self._answer_cache[query] = cached
        return cached

    def _compute_answer(self, params: dict[str, str]) -> tuple[int, bytes]:
        user_id = params.get("user_id") or None
        device_id = params.get("device_id") or None
        if user_id is None and device_id is None:
            return _bad_request("user_id or device_id is required")
        get_recs = _flag(params, "get_recs")
        rec_ids = _ids(params, "rec_id")
        rec_type = params.get("rec_type") or None
        if get_recs:
            if not rec_ids:
                return _bad_request("rec_id is required when get_recs=true")
            if rec_type not in (None, "model", "random"):
                return _bad_request("rec_type must be model or random")
        get_propensity = _flag(params, "get_propensity")
        prediction_ids = _ids(params, "prediction_id")
        propensity_type = params.get("propensity_type") or None
        if get_propensity:
            if not prediction_ids:
                return _bad_request("prediction_id is required when get_propensity=true")
            if propensity_type not in ("score", "pct"):
                return _bad_request("propensity_type must be score or pct when get_propensity=true")

        profile = self.dataset.lookup(user_id=user_id, device_id=device_id)
        if profile is None:
            return self.unknown_user_status, UNKNOWN_USER_BODY

        user_data: dict[str, object] = {
            "recommendations": (
                [self.dataset.recommendation(profile, rec_id, rec_type).as_json() for rec_id in rec_ids]
                if get_recs
                else None
            ),
            "user_id": profile.user_id,
            "device_id": profile.device_id,
            "amp_props": self._amp_props(profile, params),
            "cohort_ids": list(profile.cohort_ids) if _flag(params, "get_cohort_ids") else None,
        }
        if get_propensity:
            assert propensity_type is not None  # validated above
            values = [_propensity(profile, pid, propensity_type) for pid in prediction_ids]
            user_data["propensity"] = values[0] if len(values) == 1 else None
            user_data["propensities"] = [
                {"prop": value, "pred_id": pid, "prop_type": propensity_type}
                for pid, value in zip(prediction_ids, values, strict=True)
            ]
        return 200, _dumps({"userData": user_data})

    def _amp_props(self, profile: Profile, params: dict[str, str]) -> dict[str, object] | None:
        """User properties and/or computations, merged into one dict as the API does; None if neither."""
        get_props = _flag(params, "get_amp_props")
        get_comps = _flag(params, "get_computations")
        if not (get_props or get_comps):
            return None
        props: dict[str, object] = dict(profile.properties) if get_props else {}
        if get_comps:
            catalogue = self.dataset.computations
            comp_ids = _ids(params, "comp_id")
            if comp_ids:
                for comp_id in comp_ids:
                    # A known computation the user lacks is null under its name; an unknown id is
                    # null under the id itself, since there is no name to report. A null never replaces a
                    # value already there (an unknown id spelled like a property or another computation's name).
                    name, value = catalogue.get(comp_id, comp_id), profile.computations.get(comp_id)
                    if value is not None or name not in props:
                        props[name] = value
            else:
                for comp_id, value in profile.computations.items():
                    props[catalogue.get(comp_id, comp_id)] = value
        return props


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes | None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    head = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        head.append((b"content-type", content_type))
    head.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _https_location(scope: Scope) -> bytes:
    host = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
            break
    if host is None:
        server_host, server_port = scope.get("server") or ("127.0.0.1", 443)
        host = f"{server_host}:{server_port}".encode()
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope["query_string"]
    return b"https://" + host + raw_path + (b"?" + query if query else b"")


def _flag(params: dict[str, str], name: str) -> bool:
    # The API's booleans are the strings true/false; anything but "true" leaves the option off.
    return params.get(name, "").strip().lower() == "true"


def _ids(params: dict[str, str], name: str) -> list[str]:
    return [part.strip() for part in params.get(name, "").split(",") if part.strip()]


def _propensity(profile: Profile, prediction_id: str, propensity_type: str) -> float | int | None:
    prediction = profile.predictions.get(prediction_id)
    if prediction is None:
        return None
    return prediction.score if propensity_type == "score" else prediction.pct


def _bad_request(message: str) -> tuple[int, bytes]:
    return 400, _dumps({"error": message})


def _dumps(data: object) -> bytes:
    # Compact separators, like the API's documented error bodies.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Server Error"

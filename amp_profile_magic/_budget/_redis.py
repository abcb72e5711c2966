"""The shared budget in Redis: every kernel and job, on any machine, that uses the same server and database.

The spacing of sends is pyrate-limiter's GCRA with a burst of 1 (``Rate(1, interval, burst=1)`` in a
``StateBucket`` over a ``RedisStateStore``): one theoretical arrival time per scope, advanced by the library's Lua
script atomically, so sends of every participant are one interval apart and a "600 per minute" budget never goes
out as a burst. Its ``RedisBucket`` (a log) is not used: its script counts sends up to the caller's own timestamp
only, so of two callers a millisecond apart the later one's send hides from the earlier one's check, and both go
(measured: gaps of under 1 ms between sends of three processes). GCRA admits a send only once the stored arrival
time has passed, whatever the order the calls arrive in.

Beside it, a hash per scope keeps what the library has no notion of (:class:`._window.HoldState`): the throttle
hold and the adaptive rate, changed by one small Lua script. The clock is the Redis server's (``TIME``, read with
the hold in one round trip and passed to the library as the send's time), never the callers': machines' clocks
differ by milliseconds to seconds, and one even spacing needs one clock. The client is ``redis`` (redis-py),
imported on first use, with short timeouts and no retries, so a server that is down makes the caller pace in the
kernel at once instead of hanging.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any

from amp_profile_magic._secret import SecretURL

from . import _aimd
from ._window import MAX_AHEAD, BackendDown, HoldState, interval_ms

if TYPE_CHECKING:
    import redis
    from pyrate_limiter import StateBucket

__all__ = ["RedisWindow"]

#: Seconds to connect, and to wait for one answer; a step takes well under a millisecond.
SOCKET_TIMEOUT = 1.0
#: A scope's hold nobody used for this long is dropped (it only matters for the next minute or so). The library
#: expires its own state after two intervals.
TTL_SECONDS = 3600
KEY_PREFIX = "amp_profile_magic:budget:"
_FIELDS = ("held_until", "cut_factor", "cut_at", "cuts")

# HoldState.throttle in Lua, on the server's clock, so a hold and a cut are one atomic step for every participant.
# Numbers go back as strings (Redis would truncate Lua numbers to integers). ARGV: hold, sent_at (-1: unknown),
# adaptive (0/1), DECREASE, RECOVERY_PER_SECOND, FLOOR, MAX_AHEAD, TTL.
_THROTTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local hold, sent_at, adaptive = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local decrease, recovery, floor = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local max_ahead, ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
local v = redis.call('HMGET', KEYS[1], 'held_until', 'cut_factor', 'cut_at', 'cuts')
local held_until, cut_factor = tonumber(v[1]) or 0, tonumber(v[2]) or 1
local cut_at, cuts = tonumber(v[3]) or 0, tonumber(v[4]) or 0
if held_until > now + max_ahead or cut_at > now + max_ahead then
  held_until, cut_factor, cut_at = 0, 1, 0
end
held_until = math.max(held_until, now + hold)
if adaptive and (sent_at < 0 or sent_at > cut_at) then
  cut_factor = math.max(floor, math.min(1, cut_factor + recovery * math.max(0, now - cut_at)) * decrease)
  cut_at = now
  cuts = cuts + 1
end
local function f(x) return string.format('%.6f', x) end
redis.call('HSET', KEYS[1], 'held_until', f(held_until), 'cut_factor', f(cut_factor), 'cut_at', f(cut_at), 'cuts', cuts)
redis.call('EXPIRE', KEYS[1], ttl)
return 1
"""


class RedisWindow:
    """Per-scope pacing in Redis (pyrate-limiter's GCRA plus our hold), shared by processes on many machines."""

    def __init__(self, url: SecretURL, *, description: str) -> None:
        self.description = description
        self._url = url
        self._lock = threading.RLock()  # reentrant: a failing step closes the client while holding it
        self._client: redis.Redis | None = None
        self._throttle: Any = None
        self._buckets: dict[tuple[str, int], StateBucket] = {}

    def try_send(self, scope: str, requests_per_minute: float, adaptive: bool) -> tuple[float, float, float]:
        """See :meth:`._window.SharedWindow.try_send`."""
        from pyrate_limiter import RateItem

        with self._lock:  # the library's bucket keeps its last verdict on the object: one caller at a time
            try:
                client, _ = self._connect()
                now, hold = self._read(client, scope)
                read_at = time.monotonic()
                rate = hold.rate(now, requests_per_minute, adaptive)
                if hold.held_until > now:
                    return hold.held_until - now, rate, now
                bucket = self._bucket(client, scope, interval_ms(rate))
                item = RateItem(scope, math.floor(now * 1000))  # the library counts whole ms, as SQLite's does
                if bucket.put(item):
                    return 0.0, rate, now
                wait_ms = int(bucket.waiting(item))  # type: ignore[arg-type]  # a sync client answers an int
                if wait_ms > MAX_AHEAD * 1000:
                    bucket.flush()  # an arrival time from a server clock that jumped back: forget it
                    return 0.001, rate, now
                # The wait counts from the send's time, rounded down to the ms and read a round trip or two ago:
                # aim at the server time it names, on this machine's clock.
                return max((item.timestamp + wait_ms) / 1000 - now - (time.monotonic() - read_at), 0.001), rate, now
            except Exception as error:  # redis-py's errors, and OSError beneath them
                raise self._down(error) from None

    def throttle(self, scope: str, hold: float, sent_at: float | None, adaptive: bool) -> None:
        """See :meth:`._window.SharedWindow.throttle`."""
        try:
            _, script = self._connect()
            script(
                keys=[KEY_PREFIX + scope + ":hold"],
                args=[
                    repr(float(hold)),
                    repr(-1.0 if sent_at is None else float(sent_at)),
                    "1" if adaptive else "0",
                    repr(_aimd.DECREASE),
                    repr(_aimd.RECOVERY_PER_SECOND),
                    repr(_aimd.FLOOR),
                    repr(MAX_AHEAD),
                    str(TTL_SECONDS),
                ],
            )
        except Exception as error:
            raise self._down(error) from None

    def hold_remaining(self, scope: str) -> float:
        """See :meth:`._window.SharedWindow.hold_remaining`."""
        try:
            client, _ = self._connect()
            now, hold = self._read(client, scope)
        except Exception as error:
            raise self._down(error) from None
        return max(0.0, hold.held_until - now)

    def open(self) -> None:
        """See :meth:`._window.SharedWindow.open`."""
        try:
            import pyrate_limiter  # noqa: F401 - imported now rather than on the first send

            client, _ = self._connect()
            client.ping()
        except Exception as error:
            raise self._down(error) from None

    def close(self) -> None:
        """Close the connection pool; the next step reconnects."""
        with self._lock:
            client, self._client, self._throttle = self._client, None, None
            self._buckets.clear()
        if client is not None:
            client.close()

    def _read(self, client: redis.Redis, scope: str) -> tuple[float, HoldState]:
        """The server's time and the scope's hold, in one round trip."""
        pipe = client.pipeline(transaction=False)
        pipe.time()
        pipe.hmget(KEY_PREFIX + scope + ":hold", _FIELDS)
        (seconds, micros), values = pipe.execute()
        now = int(seconds) + int(micros) / 1e6
        held_until, cut_factor, cut_at, cuts = values
        hold = (
            HoldState(float(held_until), float(cut_factor), float(cut_at), int(cuts))
            if cuts is not None
            else HoldState()
        )
        hold.forget_the_future(now)
        return now, hold

    def _bucket(self, client: redis.Redis, scope: str, interval: int) -> StateBucket:
        """The library's GCRA bucket for ``scope`` at one send per ``interval`` ms (one object per rate)."""
        from pyrate_limiter import GCRA, Rate, RedisStateStore, StateBucket

        bucket = self._buckets.get((scope, interval))
        if bucket is None:
            store = RedisStateStore(client, KEY_PREFIX + scope + ":gcra")
            bucket = StateBucket([Rate(1, interval, burst=1)], algorithm=GCRA(), store=store)
            self._buckets[scope, interval] = bucket
        return bucket

    def _down(self, error: Exception) -> BackendDown:
        if isinstance(error, BackendDown):
            return error
        self.close()
        name = type(error).__name__
        reason = "redis refused the login" if "Authentication" in name else "redis unreachable"
        # Messages from redis-py name host and port, never the password; the masked URL says which server.
        return BackendDown(f"the rate budget server {self.description} is unusable: {error}", reason=reason)

    def _connect(self) -> tuple[redis.Redis, Any]:
        with self._lock:
            return self._connect_locked()

    def _connect_locked(self) -> tuple[redis.Redis, Any]:
        if self._client is None or self._throttle is None:
            try:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry
            except ImportError:
                raise BackendDown(
                    f"rate_limiter is {self.description}, but the redis package is not installed: "
                    "pip install 'amp_profile_magic[redis]'",
                    reason="redis package missing",
                ) from None
            client = redis.Redis.from_url(
                self._url.reveal(),
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                decode_responses=True,
            )
            self._client, self._throttle = client, client.register_script(_THROTTLE)
        return self._client, self._throttle

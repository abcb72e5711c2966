"""The shared budget in Redis: every kernel and job, on any machine, that uses the same server and database.

Each step is one Lua script, which Redis runs atomically: the same three steps as :class:`._gcra.ScopeState`, on
a hash per scope. The clock is the Redis server's (``TIME``), never the callers': machines' clocks differ by
milliseconds to seconds, and one even spacing needs one clock. The client is ``redis`` (redis-py), imported on
first use, with short timeouts and no retries, so a server that is down makes the caller pace in the kernel at
once instead of hanging.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from amp_profile_magic._secret import SecretURL

from . import _aimd
from ._gcra import HEADROOM, LATENESS_FORGIVEN, MAX_AHEAD
from ._window import BackendDown

if TYPE_CHECKING:
    import redis

__all__ = ["RedisWindow"]

#: Seconds to connect, and to wait for one answer; a step takes well under a millisecond.
SOCKET_TIMEOUT = 1.0
#: A scope nobody used for this long is dropped (its state only matters for the next minute or so).
TTL_SECONDS = 3600
KEY_PREFIX = "amp_profile_magic:budget:"

# Mirrors ScopeState (._gcra) and ._aimd: reserve, claim, throttle. Numbers go back as strings (Redis would
# truncate Lua numbers to integers). ARGV: op, requests_per_minute, adaptive (0/1), hold, sent_at (-1: unknown),
# DECREASE, RECOVERY_PER_SECOND, FLOOR, MAX_AHEAD, TTL, LATENESS_FORGIVEN, HEADROOM.
_SCRIPT = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local op = ARGV[1]
local rpm = tonumber(ARGV[2])
local adaptive = ARGV[3] == '1'
local hold = tonumber(ARGV[4])
local sent_at = tonumber(ARGV[5])
local decrease, recovery, floor = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local max_ahead, ttl, forgiven = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local headroom = tonumber(ARGV[12])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', key, 'next_slot', 'last_send', 'held_until', 'cut_factor', 'cut_at', 'cuts')
local next_slot, last_send, held_until = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
local cut_factor, cut_at, cuts = tonumber(v[4]) or 1, tonumber(v[5]) or 0, tonumber(v[6]) or 0
local horizon = now + max_ahead
if next_slot > horizon or held_until > horizon or last_send > horizon or cut_at > horizon then
  next_slot, last_send, held_until, cut_at, cut_factor = 0, 0, 0, 0, 1
end
local function share()
  if not adaptive then return 1 end
  return math.min(1, cut_factor + recovery * math.max(0, now - cut_at))
end
local function f(x) return string.format('%.6f', x) end
local out
if op == 'reserve' then
  local rate = rpm * share()
  local slot = math.max(now, next_slot, held_until)
  next_slot = slot + 60 / rate * (1 + headroom)
  out = {f(slot - now), f(rate)}
elseif op == 'claim' then
  local interval = 60 / (rpm * share()) * (1 + headroom)
  local earliest = math.max(last_send + interval, held_until)
  if now < earliest then
    out = {f(earliest - now), f(now)}
  else
    last_send = math.max(earliest, now - math.min(forgiven, interval * 0.05))
    next_slot = math.max(next_slot, last_send + interval)
    out = {f(0), f(now)}
  end
elseif op == 'hold' then
  return {f(math.max(0, held_until - now)), f(now)}
else
  held_until = math.max(held_until, now + hold)
  next_slot = math.max(next_slot, held_until)
  if adaptive and (sent_at < 0 or sent_at >= cut_at) then
    cut_factor = math.max(floor, share() * decrease)
    cut_at = now
    cuts = cuts + 1
  end
  out = {f(0), f(now)}
end
redis.call('HSET', key, 'next_slot', f(next_slot), 'last_send', f(last_send), 'held_until', f(held_until),
  'cut_factor', f(cut_factor), 'cut_at', f(cut_at), 'cuts', cuts)
redis.call('EXPIRE', key, ttl)
return out
"""


class RedisWindow:
    """Per-scope pacing state in Redis, updated atomically by a Lua script on the server's clock."""

    def __init__(self, url: SecretURL, *, description: str) -> None:
        self.description = description
        self._url = url
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._script: Any = None

    def reserve(self, scope: str, requests_per_minute: float, adaptive: bool) -> tuple[float, float]:
        """See :meth:`._window.SharedWindow.reserve`."""
        return self._run("reserve", scope, requests_per_minute, adaptive)

    def claim(self, scope: str, requests_per_minute: float, adaptive: bool) -> tuple[float, float]:
        """See :meth:`._window.SharedWindow.claim`."""
        return self._run("claim", scope, requests_per_minute, adaptive)

    def throttle(self, scope: str, hold: float, sent_at: float | None, adaptive: bool) -> None:
        """See :meth:`._window.SharedWindow.throttle`."""
        self._run("throttle", scope, 1.0, adaptive, hold=hold, sent_at=sent_at)

    def hold_remaining(self, scope: str) -> float:
        """See :meth:`._window.SharedWindow.hold_remaining`."""
        return self._run("hold", scope, 1.0, False)[0]

    def close(self) -> None:
        """Close the connection pool; the next step reconnects."""
        with self._lock:
            client, self._client, self._script = self._client, None, None
        if client is not None:
            client.close()

    def _run(
        self, op: str, scope: str, rpm: float, adaptive: bool, *, hold: float = 0.0, sent_at: float | None = None
    ) -> tuple[float, float]:
        args = (
            op,
            repr(float(rpm)),
            "1" if adaptive else "0",
            repr(float(hold)),
            repr(-1.0 if sent_at is None else float(sent_at)),
            repr(_aimd.DECREASE),
            repr(_aimd.RECOVERY_PER_SECOND),
            repr(_aimd.FLOOR),
            repr(MAX_AHEAD),
            str(TTL_SECONDS),
            repr(LATENESS_FORGIVEN),
            repr(HEADROOM),
        )
        try:
            script = self._connect()
            first, second = script(keys=[KEY_PREFIX + scope], args=args)
        except BackendDown:
            raise
        except Exception as error:  # redis-py's errors, and OSError beneath them
            self.close()
            # Messages from redis-py name host and port, never the password; the masked URL says which server.
            raise BackendDown(f"the rate budget server {self.description} is unusable: {error}") from None
        return float(first), float(second)

    def _connect(self) -> Any:
        with self._lock:
            if self._script is None:
                self._script = self._register()
            return self._script

    def _register(self) -> Any:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise BackendDown(
                f"rate_limiter is {self.description}, but the redis package is not installed: "
                "pip install 'amp_profile_magic[redis]'"
            ) from None
        client = redis.Redis.from_url(
            self._url.reveal(),
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            decode_responses=True,
        )
        self._client = client
        return client.register_script(_SCRIPT)

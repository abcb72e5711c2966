"""The emulated API's per-minute request limit, as a rolling 60-second window."""

from __future__ import annotations

import math
import threading
from collections import deque

__all__ = ["RateWindow"]

WINDOW_SECONDS = 60.0


class RateWindow:
    """Admits at most ``limit`` requests in any 60 seconds; ``limit=None`` admits everything.

    Only admitted requests enter the window, so a throttled client is not punished further for
    retrying. Time is passed in (``time.monotonic()`` seconds) so the rule is easy to reason about.
    """

    def __init__(self, limit: int | None = None) -> None:
        self._lock = threading.Lock()
        self._admitted: deque[float] = deque()
        self._limit = _check_limit(limit)

    @property
    def limit(self) -> int | None:
        """Requests allowed per rolling minute, or None for no limit."""
        return self._limit

    @limit.setter
    def limit(self, value: int | None) -> None:
        # A new limit starts an empty window: traffic admitted under the old rule should not count
        # against the new one (and a test lowering the limit must not inherit earlier requests).
        with self._lock:
            self._limit = _check_limit(value)
            self._admitted.clear()

    def admit(self, now: float) -> int | None:
        """Admit a request arriving at ``now``, or return the whole seconds (>= 1) until a slot frees."""
        limit = self._limit
        if limit is None:
            return None
        with self._lock:
            admitted = self._admitted
            horizon = now - WINDOW_SECONDS
            while admitted and admitted[0] <= horizon:
                admitted.popleft()
            if len(admitted) >= limit:
                # The slot frees when the request that is `limit` places back leaves the window.
                frees_at = admitted[len(admitted) - limit] + WINDOW_SECONDS
                return max(1, math.ceil(frees_at - now))
            admitted.append(now)
            return None

    def clear(self) -> None:
        """Forget every admitted request."""
        with self._lock:
            self._admitted.clear()


def _check_limit(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"rate_limit_per_minute must be a positive int or None, got {value!r}")
    return value

"""The emulated API's per-minute request limit, as a rolling window (60 seconds, like the API, unless set)."""

from __future__ import annotations

import math
import threading
from collections import deque

__all__ = ["RateWindow"]

WINDOW_SECONDS = 60.0


class RateWindow:
    """Admits at most ``limit`` requests per minute, counted over any rolling ``window`` seconds.

    The window holds ``limit × window / 60`` requests: 600 per minute over 60 s (the API) admits 600 in any
    minute; over 3 s it admits 30 in any 3 s, the same rate, so a test meets a full window in seconds instead of a
    minute. ``limit=None`` admits everything. Only admitted requests enter the window, so a throttled client is not
    punished further for retrying. Time is passed in (``time.monotonic()`` seconds) so the rule is easy to reason
    about.
    """

    def __init__(self, limit: int | None = None, *, window: float = WINDOW_SECONDS) -> None:
        self._lock = threading.Lock()
        self._admitted: deque[float] = deque()
        self._window = _check_window(window)
        self._limit = _check_limit(limit)
        self._capacity = _capacity(self._limit, self._window)

    @property
    def limit(self) -> int | None:
        """Requests allowed per minute, or None for no limit."""
        return self._limit

    @limit.setter
    def limit(self, value: int | None) -> None:
        # A new limit starts an empty window: traffic admitted under the old rule should not count
        # against the new one (and a test lowering the limit must not inherit earlier requests).
        limit = _check_limit(value)
        capacity = _capacity(limit, self._window)
        with self._lock:
            self._limit, self._capacity = limit, capacity
            self._admitted.clear()

    @property
    def window(self) -> float:
        """Seconds over which requests are counted (60 unless set)."""
        return self._window

    @window.setter
    def window(self, value: float) -> None:
        window = _check_window(value)
        capacity = _capacity(self._limit, window)
        with self._lock:
            self._window, self._capacity = window, capacity
            self._admitted.clear()

    def admit(self, now: float) -> int | None:
        """Admit a request arriving at ``now``, or return the whole seconds (>= 1) until a slot frees."""
        if self._capacity is None:  # no limit: the common case needs no lock
            return None
        with self._lock:
            capacity, window = self._capacity, self._window
            if capacity is None:
                return None
            admitted = self._admitted
            horizon = now - window
            while admitted and admitted[0] <= horizon:
                admitted.popleft()
            if len(admitted) >= capacity:
                # The slot frees when the request that is `capacity` places back leaves the window.
                frees_at = admitted[len(admitted) - capacity] + window
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


def _check_window(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600 or math.isnan(value):
        raise ValueError(f"rate_limit_window must be seconds in (0, 3600], got {value!r}")
    return float(value)


def _capacity(limit: int | None, window: float) -> int | None:
    """Requests one window holds; the rate must come out whole, or the emulator would throttle below it."""
    if limit is None:
        return None
    exact = limit * window / 60.0
    capacity = round(exact)
    if capacity < 1 or abs(exact - capacity) > 1e-9 * max(1.0, exact):
        raise ValueError(
            f"rate_limit_per_minute × rate_limit_window / 60 must be a whole number of requests (at least 1): "
            f"{limit} × {window:g} / 60 = {exact:g}"
        )
    return capacity

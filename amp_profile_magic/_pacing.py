"""Even request pacing, shared by every lookup in one process (one kernel)."""

from __future__ import annotations

import math
import threading
import time

__all__ = ["MIN_REQUESTS_PER_MINUTE", "Cancelled", "Pacer", "kernel_pacer"]


class Cancelled(Exception):
    """A wait was cut short because the caller's batch was interrupted."""


class Pacer:
    """Hands out send times at least ``60 / requests_per_minute`` seconds apart.

    Spacing every request evenly (a GCRA with no burst allowance) keeps any rolling minute at or under the limit
    by construction, and never sends the bursts that a fixed-window counter allows at a window's edge. Rate-limit
    libraries on PyPI either count per window (bursty) or are asyncio-only, and batches here run on threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._last_send = -math.inf
        self._held_until = 0.0

    def reserve(self, requests_per_minute: float) -> float:
        """Claim the next free send time (a ``time.monotonic`` value) for a caller limited to this rate."""
        interval = _interval(requests_per_minute)
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + interval
            return slot

    def acquire(self, requests_per_minute: float, cancel: threading.Event | None = None) -> None:
        """Block until this caller may send; raise :class:`Cancelled` if ``cancel`` is set meanwhile.

        Ctrl-C ends the wait of a caller in the main thread: its sleeps are plain ``time.sleep`` calls.
        """
        interval = _interval(requests_per_minute)
        when = self.reserve(requests_per_minute)
        while True:
            delay = when - time.monotonic()
            if delay > 0:
                try:
                    sleep(delay, cancel)
                except BaseException:
                    self._give_back()
                    raise
            with self._lock:
                # A slot is only a first estimate: a thread that wakes late (a stalled process, a busy machine)
                # would send right behind the next slot's holder, and a hold() may have come after the slot was
                # reserved. So each send also waits a full interval after the previous actual send, and the hold.
                now = time.monotonic()
                when = max(self._last_send + interval, self._held_until)
                if now >= when:
                    self._last_send = now
                    self._next_slot = max(self._next_slot, now + interval)
                    return

    def _give_back(self) -> None:
        # A stopped batch's waiters must not leave their slots reserved: after a mistyped slow rate, the next batch
        # would wait them all out. Spacing never rested on the reservations: each send also waits its own full
        # interval after the previous actual send, and the hold (see acquire), so the next free slot can be now.
        with self._lock:
            self._next_slot = min(self._next_slot, max(time.monotonic(), self._held_until))

    def hold(self, seconds: float) -> None:
        """Push every later send at least ``seconds`` into the future (the API asked us to back off)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a throttle hold must be a finite number of seconds, not {seconds!r}")
        with self._lock:
            self._held_until = max(self._held_until, time.monotonic() + seconds)
            self._next_slot = max(self._next_slot, self._held_until)

    def hold_remaining(self) -> float:
        """Seconds left of the current throttle hold (0 when sends are not held)."""
        with self._lock:
            return max(0.0, self._held_until - time.monotonic())

    def reset(self) -> None:
        """Forget past reservations (tests start each case from a clean budget)."""
        with self._lock:
            self._next_slot = 0.0
            self._last_send = -math.inf
            self._held_until = 0.0


#: The slowest rate a pacer takes (one request per 100 minutes): a rate of 1e-300 made the next slot a time no
#: clock can sleep until, and left it reserved for every later caller of the process.
MIN_REQUESTS_PER_MINUTE = 0.01


def _interval(requests_per_minute: float) -> float:
    # NaN compares false with everything, so a NaN rate made acquire() spin forever without sleeping.
    if not math.isfinite(requests_per_minute) or requests_per_minute < MIN_REQUESTS_PER_MINUTE:
        raise ValueError(
            f"requests_per_minute must be a finite number of at least {MIN_REQUESTS_PER_MINUTE}, "
            f"not {requests_per_minute!r}"
        )
    return 60.0 / requests_per_minute


def sleep(seconds: float, cancel: threading.Event | None) -> None:
    """Sleep, waking early with :class:`Cancelled` when ``cancel`` is set (and on Ctrl-C in the main thread)."""
    if not math.isfinite(seconds):
        # Event.wait(nan) never returns, and time.sleep(nan) is a ValueError deep in tenacity.
        raise ValueError(f"cannot wait {seconds!r} seconds")
    seconds = max(0.0, seconds)
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise Cancelled


_KERNEL_PACER = Pacer()


def kernel_pacer() -> Pacer:
    """The process-wide pacer: the organisation's budget is shared, so every client in a kernel shares it too."""
    return _KERNEL_PACER

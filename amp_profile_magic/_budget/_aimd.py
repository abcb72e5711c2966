"""Adaptive pacing: lower the rate multiplicatively on a throttle, recover it additively (AIMD).

A throttle despite pacing means others are spending the organisation's budget too. The rate a participant paces
at is ``requests_per_minute × factor``; a throttle multiplies the factor by :data:`DECREASE`, and it climbs back by
:data:`RECOVERY_PER_SECOND` of the full rate each second without one, up to 1. The state is two numbers (the
factor right after the last cut, and when that was), so recovery is computed when read and costs no writes; the
SQLite and Redis backends keep those two numbers in the shared scope so every participant slows down together.
The Redis backend's Lua script mirrors :func:`factor` and :func:`cut` (same constants, passed in).
"""

from __future__ import annotations

__all__ = ["DECREASE", "FLOOR", "RECOVERY_PER_SECOND", "cut", "factor"]

#: A cut keeps 70% of the rate: a rolling window throttles only once its whole length is over the limit, so the
#: sawtooth between cuts averages about 85% of what is left, where halving (TCP Reno's 0.5) would average 75%.
DECREASE = 0.7
#: Back to the full rate within about a minute of the last cut (from 0.7): one window of the real API.
RECOVERY_PER_SECOND = 0.005
#: Never below 5% of requests_per_minute, so a batch always finishes.
FLOOR = 0.05


def factor(cut_factor: float, cut_at: float, now: float) -> float:
    """The share of ``requests_per_minute`` to pace at ``now``, given the last cut."""
    return min(1.0, cut_factor + RECOVERY_PER_SECOND * max(0.0, now - cut_at))


def cut(cut_factor: float, cut_at: float, now: float, sent_at: float | None) -> tuple[float, float] | None:
    """The new ``(cut_factor, cut_at)`` after a throttle seen at ``now``, or None when it changes nothing.

    A request sent before the last cut was paced at the old rate: its throttle is the congestion that cut already
    answered, so it does not cut again (TCP's one decrease per round trip). ``sent_at`` is on the same clock as
    ``now``; None (unknown) always cuts. A request sent in the cut's own tick counts as sent before it: the shared
    budgets keep milliseconds, and a throttle answered within one (loopback) had its own send cut the rate twice.
    """
    if sent_at is not None and sent_at <= cut_at:
        return None
    return max(FLOOR, factor(cut_factor, cut_at, now) * DECREASE), now

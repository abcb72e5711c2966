"""One scope's shared pacing state and its three atomic steps, for backends that run Python inside a transaction.

The state is a GCRA with no burst allowance, as in :class:`amp_profile_magic._pacing.Pacer`: ``next_slot`` is the
theoretical arrival time, advanced by one interval per reservation, so sends are spread evenly across every
participant and a "600 per minute" budget never goes out as a burst of 600. ``last_send`` makes each actual send
wait a full interval after the previous one (a participant that wakes late must not send right behind the next
slot's holder), ``held_until`` is a throttle's hold, and ``cut_factor``/``cut_at`` are the adaptive rate
(:mod:`._aimd`). Times are seconds on the backend's clock. The Redis backend runs the same steps in Lua.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _aimd

__all__ = ["HEADROOM", "LATENESS_FORGIVEN", "MAX_AHEAD", "ScopeState"]

#: A stored time this far past "now" comes from a clock that jumped back (or a corrupt row): forget it rather than
#: wait for it. Longer than any Retry-After the client honours.
MAX_AHEAD = 3600.0
#: Seconds of a claim's lateness not passed on to the next send (and never more than 5% of an interval).
LATENESS_FORGIVEN = 0.002
#: Shared sends are spaced 1% wider than the rate asks. The budget spaces grants, but the API counts arrivals, and
#: between the two a process may be descheduled or a packet delayed by tens of milliseconds; at exactly the limit,
#: one such delay early in a window and none at its end would be throttled. 1% of a minute is 600 ms.
HEADROOM = 0.01


@dataclass(slots=True)
class ScopeState:
    """The shared pacing state of one scope (endpoint and project)."""

    next_slot: float = 0.0
    last_send: float = 0.0
    held_until: float = 0.0
    cut_factor: float = 1.0
    cut_at: float = 0.0
    cuts: int = 0

    def rate(self, now: float, requests_per_minute: float, adaptive: bool) -> float:
        """Requests per minute this participant may send at ``now``."""
        share = _aimd.factor(self.cut_factor, self.cut_at, now) if adaptive else 1.0
        return requests_per_minute * share

    def reserve(self, now: float, requests_per_minute: float, adaptive: bool) -> tuple[float, float]:
        """Take the next free slot: return the seconds until it and the rate it was paced at."""
        self._forget_the_future(now)
        rate = self.rate(now, requests_per_minute, adaptive)
        slot = max(now, self.next_slot, self.held_until)
        self.next_slot = slot + 60.0 / rate * (1 + HEADROOM)
        return slot - now, rate

    def claim(self, now: float, requests_per_minute: float, adaptive: bool) -> float:
        """Send now if a full interval has passed since the last send and no hold is on: 0.0, else the wait."""
        self._forget_the_future(now)
        interval = 60.0 / self.rate(now, requests_per_minute, adaptive) * (1 + HEADROOM)
        earliest = max(self.last_send + interval, self.held_until)
        if now < earliest:
            return earliest - now
        # A claim lands a little after its earliest time (waking up, a round trip to the backend). Counted from the
        # actual time, that lateness would add to every interval, over 20% at 3,000/min across processes; counted
        # from the earliest time, a send late by a whole interval would let the next go right behind it. So up to
        # LATENESS_FORGIVEN of lateness is not passed on.
        self.last_send = max(earliest, now - min(LATENESS_FORGIVEN, interval * 0.05))
        self.next_slot = max(self.next_slot, self.last_send + interval)
        return 0.0

    def throttle(self, now: float, hold: float, sent_at: float | None, adaptive: bool) -> None:
        """Hold every participant ``hold`` seconds and, when adaptive, cut the rate once per congestion event."""
        self._forget_the_future(now)
        self.held_until = max(self.held_until, now + hold)
        self.next_slot = max(self.next_slot, self.held_until)
        if adaptive:
            after = _aimd.cut(self.cut_factor, self.cut_at, now, sent_at)
            if after is not None:
                self.cut_factor, self.cut_at = after
                self.cuts += 1

    def _forget_the_future(self, now: float) -> None:
        horizon = now + MAX_AHEAD
        if self.next_slot > horizon or self.held_until > horizon or self.last_send > horizon or self.cut_at > horizon:
            self.next_slot = self.last_send = self.held_until = self.cut_at = 0.0
            self.cut_factor = 1.0

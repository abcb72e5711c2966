"""What a shared budget backend offers: one non-blocking send attempt, a throttle, a hold; and "unusable".

The even spacing of sends is pyrate-limiter's (a bucket of ``Rate(1, interval)``: one send per interval, whoever
sends it); the caller does the waiting, so it can be interrupted. Beside the library's bucket each backend keeps a
small state of ours, :class:`HoldState`: the throttle hold every participant obeys and the adaptive rate
(:mod:`._aimd`), which no rate-limit library has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from . import _aimd

__all__ = ["HEADROOM", "MAX_AHEAD", "BackendDown", "HoldState", "SharedWindow", "interval_ms"]

#: Shared sends are spaced 1% wider than the rate asks. The budget spaces grants, but the API counts arrivals, and
#: between the two a process may be descheduled or a packet delayed by tens of milliseconds; at exactly the limit,
#: one such delay early in a window and none at its end would be throttled. 1% of a minute is 600 ms.
HEADROOM = 0.01
#: A stored time this far past "now" comes from a clock that jumped back (or a corrupt row): forget it rather than
#: wait for it. Longer than any Retry-After the client honours.
MAX_AHEAD = 3600.0


class BackendDown(Exception):
    """The shared backend cannot be used (down, locked, read-only, unsafe): the caller paces in the kernel instead.

    Internal: it never leaves :mod:`amp_profile_magic._budget`. Its message is shown in the one warning, so it must
    never carry a password (messages use the masked URL). ``reason`` is the short form for the summary line.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def interval_ms(rate: float) -> int:
    """Milliseconds between two sends at ``rate`` per minute, with :data:`HEADROOM`, rounded up.

    The library counts whole milliseconds (each send's time rounded down), so two sends may be up to 1 ms closer
    than this on a finer clock; the error does not add up: n + 1 sends span at least n intervals less 1 ms.
    """
    return max(1, math.ceil(60_000.0 / rate * (1 + HEADROOM)))


@dataclass(slots=True)
class HoldState:
    """Ours, beside the library's bucket: the throttle hold shared by every participant, and the adaptive rate.

    Times are seconds on the backend's clock. The Redis backend runs :meth:`throttle` in Lua.
    """

    held_until: float = 0.0
    cut_factor: float = 1.0
    cut_at: float = 0.0
    cuts: int = 0

    def rate(self, now: float, requests_per_minute: float, adaptive: bool) -> float:
        """Requests per minute this participant may send at ``now``."""
        share = _aimd.factor(self.cut_factor, self.cut_at, now) if adaptive else 1.0
        return requests_per_minute * share

    def throttle(self, now: float, hold: float, sent_at: float | None, adaptive: bool) -> None:
        """Hold every participant ``hold`` seconds and, when adaptive, cut the rate once per congestion event."""
        self.forget_the_future(now)
        self.held_until = max(self.held_until, now + hold)
        if adaptive:
            after = _aimd.cut(self.cut_factor, self.cut_at, now, sent_at)
            if after is not None:
                self.cut_factor, self.cut_at = after
                self.cuts += 1

    def forget_the_future(self, now: float) -> None:
        """Drop times more than :data:`MAX_AHEAD` ahead of ``now`` (the clock jumped back)."""
        if self.held_until > now + MAX_AHEAD or self.cut_at > now + MAX_AHEAD:
            self.held_until, self.cut_factor, self.cut_at = 0.0, 1.0, 0.0


class SharedWindow(Protocol):
    """A store of per-scope pacing state that many processes use at once."""

    #: The backend's URL with any password masked, for messages.
    description: str

    def try_send(self, scope: str, requests_per_minute: float, adaptive: bool) -> tuple[float, float, float]:
        """Try to take the next send: ``(wait, rate, now)``; ``wait`` 0 means granted at ``now`` (backend clock),
        else the seconds until trying again is worth it. ``rate`` is what the send was paced at, per minute."""
        ...

    def throttle(self, scope: str, hold: float, sent_at: float | None, adaptive: bool) -> None:
        """A throttle was seen: hold every participant ``hold`` seconds, cut the adaptive rate."""
        ...

    def hold_remaining(self, scope: str) -> float:
        """Seconds left of the scope's throttle hold (0 when none)."""
        ...

    def open(self) -> None:
        """Import the library and connect (the file, the server) now instead of on the first send."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...

"""What a shared budget backend offers: three atomic steps on one scope, and the error that means "unusable"."""

from __future__ import annotations

from typing import Protocol

__all__ = ["BackendDown", "SharedWindow"]


class BackendDown(Exception):
    """The shared backend cannot be used (down, locked, read-only, unsafe): the caller paces in the kernel instead.

    Internal: it never leaves :mod:`amp_profile_magic._budget`. Its message is shown in the one warning, so it must
    never carry a password (messages use the masked URL).
    """


class SharedWindow(Protocol):
    """A store of per-scope pacing state (:class:`._gcra.ScopeState`) that many processes update atomically."""

    #: The backend's URL with any password masked, for messages.
    description: str

    def reserve(self, scope: str, requests_per_minute: float, adaptive: bool) -> tuple[float, float]:
        """Take the scope's next slot: the seconds until it, and the rate (per minute) it was paced at."""
        ...

    def claim(self, scope: str, requests_per_minute: float, adaptive: bool) -> tuple[float, float]:
        """Send now if allowed: ``(0.0, stamp)`` with the backend clock's time of the send, else ``(wait, now)``."""
        ...

    def throttle(self, scope: str, hold: float, sent_at: float | None, adaptive: bool) -> None:
        """A throttle was seen: hold every participant ``hold`` seconds, cut the adaptive rate."""
        ...

    def hold_remaining(self, scope: str) -> float:
        """Seconds left of the scope's throttle hold (0 when none)."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...

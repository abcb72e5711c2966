"""Fault injection settings for the emulator: the ways a real network and a real API misbehave."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

__all__ = ["NO_FAULTS", "Faults"]

_RATE_FIELDS = ("throttle_rate", "error_rate", "drop_rate", "malformed_rate", "slow_rate")


@dataclass(frozen=True, kw_only=True)
class Faults:
    """How often, and how, the emulator misbehaves; every fault is off by default.

    Each request that passes authentication draws one number from an RNG seeded from the emulator's
    seed, so a run with the same seed, settings and request sequence meets the same faults. The rates
    are therefore mutually exclusive probabilities and must sum to at most 1:

    - ``throttle_rate``: answer as throttled (429, the documented JSON body, ``Retry-After: 1``).
    - ``error_rate``: answer ``error_status`` (a 5xx) with a plain-text body.
    - ``drop_rate``: send the response's status line and headers, then close the connection, so the
      client sees the peer hang up mid-response (with uvicorn the app starts the response and raises;
      uvicorn then closes the transport).
    - ``malformed_rate``: answer 200 with a body that is not the documented JSON (truncated JSON or an
      HTML page).
    - ``slow_rate``: wait ``slow_seconds`` before answering normally.

    ``latency`` plus ``uniform(0, jitter)`` seconds is added to every request to the emulated API; the
    wait is an ``asyncio.sleep``, so concurrent requests overlap rather than queue.
    """

    error_rate: float = 0.0
    error_status: int = 503
    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    throttle_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 5.0
    latency: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "error_status":
                if not isinstance(value, int) or not 500 <= value <= 599:
                    raise ValueError(f"error_status must be a 5xx status, got {value!r}")
                continue
            # bool is an int subclass; rejecting it catches `Faults(drop_rate=True)` typos.
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{field.name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"{field.name} must not be negative, got {value!r}")
            if field.name in _RATE_FIELDS and value > 1:
                raise ValueError(f"{field.name} is a probability and must be at most 1, got {value!r}")
        total = sum(getattr(self, name) for name in _RATE_FIELDS)
        # A little slack so that e.g. 0.1 + 0.2 + 0.7 is accepted despite binary rounding.
        if total > 1 + 1e-9:
            raise ValueError(f"the fault rates are exclusive outcomes of one draw and must sum to <= 1 (got {total})")

    @property
    def any_rate(self) -> bool:
        """Whether any per-request fault (not counting latency/jitter) can occur."""
        return any(getattr(self, name) > 0 for name in _RATE_FIELDS)

    def pick(self, draw: float) -> str | None:
        """The fault for a request whose draw from ``[0, 1)`` is ``draw``, or None for no fault.

        The names are ``"throttle"``, ``"error"``, ``"drop"``, ``"malformed"`` and ``"slow"``.
        """
        threshold = 0.0
        for name in _RATE_FIELDS:
            threshold += getattr(self, name)
            if draw < threshold:
                return name.removesuffix("_rate")
        return None


#: The default: a well-behaved API.
NO_FAULTS = Faults()

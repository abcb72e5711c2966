"""Batch outcomes: one per user given, in input order, data or error."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, overload

from ._exceptions import ProfileError
from ._models import Profile
from ._query import ProfileQuery

__all__ = ["BatchResult", "Outcome", "PacingMeter", "PacingSummary", "describe_retries"]


def describe_retries(retries: int, throttled: int) -> str:
    """``186 retries (4 throttled)``, or "" when nothing was retried: the summary line's and progress bar's part."""
    if not retries:
        return ""
    held = f" ({throttled:,} throttled)" if throttled else ""
    return f"{retries:,} {'retry' if retries == 1 else 'retries'}{held}"


class Outcome(NamedTuple):
    """What happened to one query of a batch: exactly one of ``profile`` and ``error`` is set.

    A named tuple rather than a frozen dataclass: a cached 100,000-user re-run makes one per user.
    """

    query: ProfileQuery
    profile: Profile | None = None
    error: ProfileError | None = None
    #: When the answer came from the local store: the (oldest) fetch time of its stored responses, a Unix time.
    stored_at: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the lookup returned data."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class PacingSummary:
    """How pacing went in a batch: throttled responses, the lowest rate sends were paced at, and any fallback."""

    throttled: int = 0
    #: Requests per minute at the lowest, when adaptive pacing went below requests_per_minute; else None.
    paced_down_to: float | None = None
    #: Why sends were paced in the kernel instead of the shared budget ("redis unreachable"); "" when none was.
    fallback: str = ""
    #: The rate those kernel-paced sends were allowed, per minute (a share of requests_per_minute).
    fallback_rate: float = 0.0

    def parts(self) -> list[str]:
        """The summary line's pacing parts, each only when there is something to say."""
        parts = []
        if self.fallback:
            parts.append(f"budget: kernel fallback at {self.fallback_rate:,.0f}/min ({self.fallback})")
        if self.paced_down_to is not None:
            if self.throttled:
                throttles = "throttle" if self.throttled == 1 else "throttles"
                parts.append(f"paced down to {self.paced_down_to:,.0f}/min after {self.throttled} {throttles}")
            else:
                # The shared rate was already down: throttles seen earlier, by this kernel's last cell or by another
                # participant of the budget. Which one the budget does not record, so the line does not guess.
                parts.append(f"paced down to {self.paced_down_to:,.0f}/min, still recovering from earlier throttles")
        return parts

    def describe(self) -> str:
        """``paced down to 240/min after 3 throttles`` (the parts joined by " · "), or "" when nothing changed."""
        return " · ".join(self.parts())


class PacingMeter:
    """Counts one client's throttled responses, the lowest rate it paced at, and any fallback, since :meth:`start`.

    Batches of one client run one at a time (a cell, a form fetch), so one meter per client suffices.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._throttled = 0
        self._lowest: float | None = None
        self._fallback = ""
        self._fallback_rate = 0.0

    def start(self) -> None:
        """Begin a new batch's count."""
        with self._lock:
            self._throttled, self._lowest, self._fallback, self._fallback_rate = 0, None, "", 0.0

    def paced(self, rate: float, ceiling: float, fallback: str = "") -> None:
        """A send was paced at ``rate`` while it could have gone at ``ceiling`` (both per minute); ``fallback`` says
        why it was paced in the kernel instead of the shared budget, when it was."""
        with self._lock:
            if fallback:
                self._fallback, self._fallback_rate = fallback, ceiling
            if rate < ceiling * 0.995:  # below by more than rounding
                self._lowest = rate if self._lowest is None else min(self._lowest, rate)

    def throttle(self) -> None:
        """A response was throttled."""
        with self._lock:
            self._throttled += 1

    def summary(self) -> PacingSummary:
        """The counts so far."""
        with self._lock:
            return PacingSummary(self._throttled, self._lowest, self._fallback, self._fallback_rate)


@dataclass(frozen=True, slots=True)
class BatchResult(Sequence[Outcome]):
    """Every query's :class:`Outcome`, in input order (duplicates share one request and one outcome)."""

    outcomes: tuple[Outcome, ...]
    #: Distinct queries looked up (duplicates collapsed); a props + comps query costs two requests, retries more.
    unique_queries: int
    interrupted: bool = False
    #: Retries the batch's requests needed (5xx, timeouts, dropped connections, throttling), and how many of
    #: them were throttling: counted here and shown in the summary line rather than logged one by one.
    retries: int = 0
    throttled: int = 0
    #: Throttles seen and how far adaptive pacing lowered the rate (see ProfileClient.adaptive_pacing).
    pacing: PacingSummary = field(default_factory=PacingSummary)

    @overload
    def __getitem__(self, index: int) -> Outcome: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Outcome]: ...
    def __getitem__(self, index: int | slice) -> Outcome | Sequence[Outcome]:
        return self.outcomes[index]

    def __len__(self) -> int:
        return len(self.outcomes)

    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.outcomes)

    @property
    def profiles(self) -> list[Profile]:
        """The profiles of the successful lookups, in input order."""
        return [outcome.profile for outcome in self.outcomes if outcome.profile is not None]

    @property
    def failures(self) -> list[Outcome]:
        """The outcomes that ended in an error (including users an interrupt left unfetched)."""
        return [outcome for outcome in self.outcomes if outcome.error is not None]

    @property
    def from_store(self) -> list[Outcome]:
        """The successful outcomes the local store answered (nothing was sent for them), per input like
        :attr:`profiles`: an id given twice is counted twice."""
        return [outcome for outcome in self.outcomes if outcome.error is None and outcome.stored_at is not None]

    @property
    def fetched(self) -> list[Outcome]:
        """The successful outcomes the API answered in this batch, per input like :attr:`profiles`."""
        return [outcome for outcome in self.outcomes if outcome.error is None and outcome.stored_at is None]

    @property
    def missing(self) -> int:
        """How many users an interrupt left unfetched."""
        return sum(1 for outcome in self.outcomes if outcome.error is not None and outcome.error.kind == "not_fetched")

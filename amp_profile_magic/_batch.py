"""Batch outcomes: one per user given, in input order, data or error."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from ._exceptions import ProfileError
from ._models import Profile
from ._query import ProfileQuery

__all__ = ["BatchResult", "Outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one query of a batch: exactly one of ``profile`` and ``error`` is set."""

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
    #: The rate the shared budget paced this batch down to (requests per minute), when it had to; else None.
    paced_down_to: float | None = None

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
        """The unique successful lookups the local store answered (nothing was sent for them)."""
        return [outcome for outcome in self._unique() if outcome.ok and outcome.stored_at is not None]

    @property
    def fetched(self) -> list[Outcome]:
        """The unique successful lookups answered by the API in this batch."""
        return [outcome for outcome in self._unique() if outcome.ok and outcome.stored_at is None]

    def _unique(self) -> list[Outcome]:
        return list({outcome.query: outcome for outcome in self.outcomes}.values())

    @property
    def missing(self) -> int:
        """How many users an interrupt left unfetched."""
        return sum(1 for outcome in self.outcomes if outcome.error is not None and outcome.error.kind == "not_fetched")

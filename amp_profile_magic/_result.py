"""Turning a batch of outcomes into DataFrames, with every failure kept beside them."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from amp_profile_magic._batch import BatchResult, describe_retries
from amp_profile_magic._exceptions import SectionFailed

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile
    from amp_profile_magic.sections import Section

__all__ = ["FAILURE_COLUMNS", "ProfileResult", "build_result", "failures_frame", "summary_line"]

FAILURE_COLUMNS = ("user_id", "device_id", "kind", "status", "field", "message")


def failure_records(batch: BatchResult) -> list[dict[str, Any]]:
    """One record per failed input (duplicates included), in input order, with the ids that were asked for.

    ``field`` names the response value that could not be read (``recommendations[0].last_updated``), else None.
    """
    return [
        {
            "user_id": outcome.query.user_id,
            "device_id": outcome.query.device_id,
            "kind": outcome.error.kind,
            "status": outcome.error.status,
            "field": getattr(outcome.error, "field", None),
            "message": outcome.error.message,
        }
        for outcome in batch.failures
        if outcome.error is not None
    ]


def failures_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The failures as a DataFrame with the documented columns, empty when there are none."""
    import pandas as pd

    frame = pd.DataFrame(list(records), columns=list(FAILURE_COLUMNS))
    frame["status"] = frame["status"].astype("Int64")
    return frame


def summary_line(batch: BatchResult, *, now: float | None = None) -> str:
    """One line accounting for every input, each part shown only when non-zero::

    3,000 profiles (1,200 from the local store, 0–35 min old; 1,800 fetched) · 2 failed: unknown_user ×2
    · 186 retries (4 throttled) · paced down to 480/min after 4 throttles
    """
    import time

    total = len(batch)
    failed = batch.failures
    ok = total - len(failed)
    noun = "profile" if ok == 1 else "profiles"
    if batch.interrupted:
        parts = [f"Interrupted: {ok:,} of {total:,} fetched, {batch.missing:,} missing (kept what finished)"]
        # The rest failed before the interrupt (an unknown user, say): without them the parts would not add up.
        failed = [outcome for outcome in failed if outcome.error is not None and outcome.error.kind != "not_fetched"]
    else:
        parts = [f"{ok:,} {noun}{_sources(batch, time.time() if now is None else now)}"]
    if failed:
        kinds = Counter(outcome.error.kind for outcome in failed if outcome.error is not None)
        detail = ", ".join(f"{kind} ×{count:,}" for kind, count in kinds.most_common())
        parts.append(f"{len(failed):,} failed: {detail}")
    retried = describe_retries(batch.retries, batch.throttled)
    if retried:
        parts.append(retried)
    paced = batch.pacing.describe()
    if paced:
        parts.append(paced)
    return " · ".join(parts)


def _sources(batch: BatchResult, now: float) -> str:
    """`` (1,200 from the local store, 0–35 min old; 1,800 fetched)``, or nothing when the store answered none.

    Counted per input, like the profiles before it, so the two parts add up when an id is given twice.
    """
    from amp_profile_magic._store import format_age

    stored = batch.from_store
    if not stored:
        return ""
    times = [outcome.stored_at for outcome in stored if outcome.stored_at is not None]
    low, high = format_age(now - max(times)), format_age(now - min(times))
    if low == high:
        age = f"{low} old"
    elif low.split()[-1] == high.split()[-1]:
        age = f"{low.split()[0]}–{high} old"
    else:
        age = f"{low}–{high} old"
    fetched = len(batch.fetched)
    return f" ({len(stored):,} from the local store, {age}" + (f"; {fetched:,} fetched)" if fetched else ")")


class ProfileResult(Mapping[str, "pd.DataFrame"]):
    """Several sections' DataFrames by name (``res["recs"]`` or ``res.recs``), plus ``res.failures``.

    ``failures`` has one row per input that did not return data: ``user_id, device_id, kind, status, field, message``.
    """

    def __init__(
        self, frames: Mapping[str, pd.DataFrame], *, failures: pd.DataFrame, summary: str, max_rows: int = 20
    ) -> None:
        self._frames = dict(frames)
        self.failures = failures
        self.summary = summary
        self._max_rows = max_rows

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self._frames[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def __getattr__(self, name: str) -> pd.DataFrame:
        frames = self.__dict__.get("_frames", {})
        if name in frames:
            frame: pd.DataFrame = frames[name]
            return frame
        raise AttributeError(f"no section {name!r} in this result (sections: {', '.join(frames)})")

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self._frames]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}: {len(frame)}×{frame.shape[1]}" for name, frame in self._frames.items())
        return f"<ProfileResult {self.summary}; {shapes}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))
        for name, frame in self._frames.items():
            printer.text(f"\n\n[{name}]\n")
            printer.text(frame.to_string(max_rows=self._max_rows))

    def _repr_html_(self) -> str:
        parts = [f"<p><strong>{html.escape(self.summary)}</strong></p>"]
        for name, frame in self._frames.items():
            parts.append(f"<h4 style='margin:8px 0 4px'>{html.escape(name)} <small>{len(frame)} rows</small></h4>")
            parts.append(frame.to_html(max_rows=self._max_rows, notebook=True))
        if len(self.failures):
            parts.append("<h4 style='margin:8px 0 4px'>failures</h4>")
            parts.append(self.failures.to_html(max_rows=self._max_rows, notebook=True))
        return "".join(parts)


def build_result(
    sections: Sequence[Section], batch: BatchResult, *, max_rows: int = 20
) -> pd.DataFrame | ProfileResult:
    """One section → its DataFrame (failures in ``df.attrs["failures"]``); several → a :class:`ProfileResult`."""
    profiles = batch.profiles
    records = failure_records(batch)
    summary = summary_line(batch)
    if len(sections) == 1:
        frame = _frame(sections[0], profiles)
        # attrs hold plain records, not a DataFrame: pandas compares attrs with == when concatenating.
        frame.attrs["failures"] = records
        frame.attrs["summary"] = summary
        return frame
    frames = {section.name: _frame(section, profiles) for section in sections}
    return ProfileResult(frames, failures=failures_frame(records), summary=summary, max_rows=max_rows)


def _frame(section: Section, profiles: Sequence[Profile]) -> pd.DataFrame:
    """``section.frame``, checked: a plugin's error, or anything but a DataFrame, is SectionFailed naming it.

    The whole cell fails then (its answers are in the local store: the cell without that section costs nothing).
    """
    import pandas as pd

    failure: SectionFailed | None = None
    try:
        frame = section.frame(profiles)
        if isinstance(frame, pd.DataFrame):
            return frame
        failure = SectionFailed.of(section, "frame", TypeError())
    except Exception as error:  # a plugin's bug: named in one line, without its message or frames
        failure = SectionFailed.of(section, "frame", error)
    raise failure

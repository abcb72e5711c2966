"""``recs=ID[,ID...]`` and ``rec_type=model|random``: one row per recommended item."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from amp_profile_magic._query import REC_TYPES, ProfileQuery

from ._base import Control, Section, SectionUsageError, split_ids

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile

COLUMNS = (
    "user_id",
    "device_id",
    "rec_id",
    "child_rec_id",
    "rank",
    "item",
    "is_control",
    "recommendation_source",
    "last_updated",
)


class RecsSection(Section):
    """Recommendations: ``rank`` is 1-based in the API's order; ``last_updated`` is a UTC timestamp (ns)."""

    name = "recs"
    keywords = ("recs", "rec_type")
    usage = (
        "recs=ID[,ID...]        recommendations, one row per item (rank 1 = API's first)",
        "rec_type=model|random  override the experiment's control setting",
    )

    def query_fields(self, tokens: Mapping[str, str | None]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if "recs" in tokens:
            fields["rec_ids"] = split_ids("recs", tokens["recs"])
        if "rec_type" in tokens:
            value = tokens["rec_type"]
            if value not in REC_TYPES:
                raise SectionUsageError(f"rec_type={value or ''}: expected one of {', '.join(REC_TYPES)}")
            if "recs" not in tokens:
                raise SectionUsageError("rec_type needs recs=ID[,ID...] too")
            fields["rec_type"] = value
        return fields

    def requested(self, query: ProfileQuery) -> bool:
        return bool(query.rec_ids)

    def frame(self, profiles: Sequence[Profile]) -> pd.DataFrame:
        import pandas as pd

        columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        for profile in profiles:
            for rec in profile.recommendations or ():
                count = len(rec.items)
                columns["user_id"] += [profile.user_id] * count
                columns["device_id"] += [profile.device_id] * count
                columns["rec_id"] += [rec.rec_id] * count
                columns["child_rec_id"] += [rec.child_rec_id] * count
                columns["rank"] += range(1, count + 1)
                columns["item"] += rec.items
                columns["is_control"] += [rec.is_control] * count
                columns["recommendation_source"] += [rec.recommendation_source] * count
                columns["last_updated"] += [rec.last_updated] * count
        frame = pd.DataFrame(columns, columns=list(COLUMNS))
        frame["rank"] = frame["rank"].astype("int64")
        frame["is_control"] = frame["is_control"].astype("boolean")
        # The model keeps only times a nanosecond column holds; one resolution whatever pandas would infer.
        frame["last_updated"] = pd.to_datetime(frame["last_updated"], utc=True).astype("datetime64[ns, UTC]")
        return frame

    def controls(self) -> tuple[Control, ...]:
        return (
            Control(keyword="recs", label="Recommendations", kind="ids", placeholder="rec ids, comma-separated"),
            Control(keyword="rec_type", label="Rec type", kind="choice", options=("", *REC_TYPES), default=""),
        )

"""``recs=ID[,ID...]`` and ``rec_type=model|random``: one row per recommended item."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from amp_profile_magic._exceptions import InvalidQuery

from ._base import Control, Params, Section, SectionUsageError, clean_ids, split_ids

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile, Reader

__all__ = ["REC_TYPES", "Recommendation", "RecsRequest", "RecsSection"]

REC_TYPES = ("model", "random")

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


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommendation list, as the API returns it; ``last_updated`` is a UTC datetime."""

    rec_id: str
    child_rec_id: str | None
    items: tuple[str, ...]
    is_control: bool | None
    recommendation_source: str | None
    last_updated: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecsRequest:
    """``rec_ids`` (a list or a comma-separated string) and an optional ``rec_type`` override."""

    rec_ids: tuple[str, ...] = ()
    rec_type: Literal["model", "random"] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rec_ids", clean_ids("rec_id", self.rec_ids))
        if self.rec_type is not None and self.rec_type not in REC_TYPES:
            raise InvalidQuery("rec_type", f"{self.rec_type!r} is not one of {', '.join(REC_TYPES)}")
        if self.rec_type is not None and not self.rec_ids:
            raise InvalidQuery("rec_type", "only applies to recommendations: give rec ids too")


class RecsSection(Section):
    """Recommendations: ``rank`` is 1-based in the API's order; ``last_updated`` is a UTC timestamp (ns)."""

    name = "recs"
    keywords = ("recs", "rec_type")
    usage = (
        "recs=ID[,ID...]        recommendations, one row per item (rank 1 = the API's first)",
        "rec_type=model|random  override the experiment's control setting",
    )

    reads = ("recommendations",)
    attributes = ("recommendations",)
    request_type = RecsRequest

    def request(self, tokens: Mapping[str, str | None]) -> RecsRequest:
        ids, value = split_ids("recs", tokens["recs"]), tokens.get("rec_type")
        if "rec_type" in tokens and value not in REC_TYPES:
            raise SectionUsageError(f"rec_type={value or ''}: expected one of {', '.join(REC_TYPES)}")
        return RecsRequest(rec_ids=ids, rec_type=value)  # type: ignore[arg-type]  # checked just above

    def params(self, request: RecsRequest) -> Params:
        params = (("get_recs", "true"), ("rec_id", ",".join(request.rec_ids)))
        return params if request.rec_type is None else (*params, ("rec_type", request.rec_type))

    def read(self, data: Mapping[str, Any], request: RecsRequest, reader: Reader) -> dict[str, Any]:
        recs = []
        for index, entry in enumerate(reader.listing(data.get("recommendations"), "recommendations")):
            path = f"recommendations[{index}]"
            if not isinstance(entry, dict):
                reader.fail(path, f"is {reader.describe(entry)}, not an object")
            rec_id = reader.identifier(entry.get("rec_id"), f"{path}.rec_id")
            items = reader.listing(entry.get("items"), f"{path}.items")
            recs.append(
                Recommendation(
                    rec_id=rec_id,
                    child_rec_id=reader.optional_identifier(entry.get("child_rec_id"), f"{path}.child_rec_id"),
                    items=reader.identifiers(items, f"{path}.items"),
                    is_control=reader.flag(entry.get("is_control"), f"{path}.is_control"),
                    recommendation_source=reader.text(
                        entry.get("recommendation_source"), f"{path}.recommendation_source"
                    ),
                    last_updated=reader.timestamp(entry.get("last_updated"), f"{path}.last_updated"),
                )
            )
        return {"recommendations": tuple(recs)}

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

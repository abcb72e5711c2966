"""``propensity=ID[,ID...]`` and ``propensity_type=score|pct``: one row per prediction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from amp_profile_magic._query import PROPENSITY_TYPES, ProfileQuery

from ._base import Control, Section, SectionUsageError, split_ids

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile


class PropensitySection(Section):
    """Prediction propensities: a raw ``score`` or a percentile ``pct`` (the default type is ``score``)."""

    name = "propensity"
    keywords = ("propensity", "propensity_type")
    usage = (
        "propensity=ID[,ID...]  prediction propensities, one row per prediction",
        "propensity_type=score|pct  raw score (default) or percentile",
    )

    def query_fields(self, tokens: Mapping[str, str | None]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if "propensity" in tokens:
            fields["prediction_ids"] = split_ids("propensity", tokens["propensity"])
        if "propensity_type" in tokens:
            value = tokens["propensity_type"]
            if value not in PROPENSITY_TYPES:
                raise SectionUsageError(f"propensity_type={value or ''}: expected one of {', '.join(PROPENSITY_TYPES)}")
            if "propensity" not in tokens:
                raise SectionUsageError("propensity_type needs propensity=ID[,ID...] too")
            fields["propensity_type"] = value
        return fields

    def requested(self, query: ProfileQuery) -> bool:
        return bool(query.prediction_ids)

    def frame(self, profiles: Sequence[Profile]) -> pd.DataFrame:
        import pandas as pd

        rows: dict[str, list[Any]] = {
            "user_id": [],
            "device_id": [],
            "prediction_id": [],
            "propensity_type": [],
            "propensity": [],
        }
        for profile in profiles:
            for entry in profile.propensities or ():
                rows["user_id"].append(profile.user_id)
                rows["device_id"].append(profile.device_id)
                rows["prediction_id"].append(entry.prediction_id)
                rows["propensity_type"].append(entry.propensity_type)
                rows["propensity"].append(entry.value)
        frame = pd.DataFrame(rows)
        frame["propensity"] = frame["propensity"].astype("float64")
        return frame

    def controls(self) -> tuple[Control, ...]:
        return (
            Control(keyword="propensity", label="Predictions", kind="ids", placeholder="prediction ids"),
            Control(
                keyword="propensity_type",
                label="Propensity type",
                kind="choice",
                options=PROPENSITY_TYPES,
                default="score",
            ),
        )

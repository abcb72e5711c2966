"""``propensity=ID[,ID...]`` and ``propensity_type=score|pct``: one row per prediction."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from amp_profile_magic._exceptions import InvalidQuery

from ._base import Control, Params, Section, SectionUsageError, clean_ids, split_ids

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile, Reader

__all__ = ["PROPENSITY_RANGE", "PROPENSITY_TYPES", "Propensity", "PropensityRequest", "PropensitySection"]

PROPENSITY_TYPES = ("score", "pct")

#: A propensity is a score in [0, 1] or a percentile in [0, 100]; the API's ``prop_type`` echo is unreliable, so both
#: types are held to the wider range.
PROPENSITY_RANGE = (0.0, 100.0)


@dataclass(frozen=True, slots=True)
class Propensity:
    """One prediction's propensity for a user.

    ``propensity_type`` is the type that was *requested*: the API's own ``prop_type`` echo is unreliable.
    """

    prediction_id: str
    propensity_type: str
    value: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PropensityRequest:
    """``prediction_ids`` (a list or a comma-separated string), and ``propensity_type`` score (default) or pct."""

    prediction_ids: tuple[str, ...] = ()
    propensity_type: Literal["score", "pct"] = "score"

    def __post_init__(self) -> None:
        object.__setattr__(self, "prediction_ids", clean_ids("prediction_id", self.prediction_ids))
        if self.propensity_type not in PROPENSITY_TYPES:
            raise InvalidQuery(
                "propensity_type", f"{self.propensity_type!r} is not one of {', '.join(PROPENSITY_TYPES)}"
            )
        if self.propensity_type != "score" and not self.prediction_ids:
            # "score" is the default, so only an explicit other type can be told apart from "not given".
            raise InvalidQuery("propensity_type", "only applies to propensities: give prediction ids too")


class PropensitySection(Section):
    """Prediction propensities: a raw ``score`` or a percentile ``pct`` (the default type is ``score``)."""

    name = "propensity"
    keywords = ("propensity", "propensity_type")
    usage = (
        "propensity=ID[,ID...]  prediction propensities, one row per prediction",
        "propensity_type=score|pct   raw score (default) or percentile",
    )

    reads = ("propensity", "propensities")
    attributes = ("propensities", "propensity")
    request_type = PropensityRequest

    def request(self, tokens: Mapping[str, str | None]) -> PropensityRequest:
        ids, value = split_ids("propensity", tokens["propensity"]), tokens.get("propensity_type", "score")
        if value not in PROPENSITY_TYPES:
            raise SectionUsageError(f"propensity_type={value or ''}: expected one of {', '.join(PROPENSITY_TYPES)}")
        return PropensityRequest(prediction_ids=ids, propensity_type=value)  # type: ignore[arg-type]  # checked

    def params(self, request: PropensityRequest) -> Params:
        return (
            ("get_propensity", "true"),
            ("prediction_id", ",".join(request.prediction_ids)),
            ("propensity_type", request.propensity_type),
        )

    def read(self, data: Mapping[str, Any], request: PropensityRequest, reader: Reader) -> dict[str, Any]:
        scalar = _number(reader, data.get("propensity"), "propensity")
        by_id: dict[str, float | None] = {}
        raw = data.get("propensities")
        if raw is not None:
            for index, entry in enumerate(reader.listing(raw, "propensities")):
                path = f"propensities[{index}]"
                if not isinstance(entry, dict):
                    reader.fail(path, f"is {reader.describe(entry)}, not an object")
                pred_id = reader.identifier(entry.get("pred_id"), f"{path}.pred_id")
                by_id[pred_id] = _number(reader, entry.get("prop"), f"{path}.prop")
        elif len(request.prediction_ids) == 1 and scalar is not None:
            by_id[request.prediction_ids[0]] = scalar
        # One entry per requested id, in request order: an id the API left out is reported, not dropped.
        entries = tuple(
            Propensity(prediction_id=pred_id, propensity_type=request.propensity_type, value=by_id.get(pred_id))
            for pred_id in request.prediction_ids
        )
        # ``propensity`` is the API's scalar: the value when one prediction id was asked.
        return {"propensities": entries, "propensity": scalar}

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


def _number(reader: Reader, value: object, path: str) -> float | None:
    low, high = PROPENSITY_RANGE
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        reader.fail(path, f"is {reader.describe(value)}, not a number or null")
    # Compared as is: float() of a 400-digit integer would raise OverflowError.
    if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
        reader.fail(path, f"is {reader.describe(value)}, not a propensity (a number from {low:g} to {high:g})")
    return float(value)

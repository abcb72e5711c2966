"""Typed profiles built from the API's ``userData`` responses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ._exceptions import MalformedResponse
from ._query import ProfileQuery

__all__ = ["Profile", "Propensity", "Recommendation", "profile_from_responses"]


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommendation list, as the API returns it."""

    rec_id: str
    child_rec_id: str | None
    items: tuple[str, ...]
    is_control: bool | None
    recommendation_source: str | None
    last_updated: int | None


@dataclass(frozen=True, slots=True)
class Propensity:
    """One prediction's propensity for a user.

    ``propensity_type`` is the type that was *requested*: the API's own ``prop_type`` echo is unreliable.
    """

    prediction_id: str
    propensity_type: str
    value: float | None


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything one lookup returned for a user; a section that was not asked for is ``None``."""

    user_id: str | None
    device_id: str | None
    recommendations: tuple[Recommendation, ...] | None = None
    properties: Mapping[str, Any] | None = None
    cohort_ids: tuple[str, ...] | None = None
    computations: Mapping[str, Any] | None = None
    propensities: tuple[Propensity, ...] | None = None
    #: The API's scalar ``propensity``: the value when one prediction id was asked, else ``None``.
    propensity: float | None = None
    #: The main response's ``userData`` as received, for section plugins that read fields of their own.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def _malformed(what: str) -> MalformedResponse:
    return MalformedResponse(f"The API's response is not the documented JSON: {what}.")


def _user_data(payload: object) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise _malformed("the body is not a JSON object")
    data = payload.get("userData")
    if not isinstance(data, Mapping):
        raise _malformed("it has no 'userData' object")
    return data


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise _malformed(f"'{key}' is {type(value).__name__}, not a string")


def _recommendations(raw: object) -> tuple[Recommendation, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise _malformed("'recommendations' is not a list")
    recs = []
    for entry in raw:
        if not isinstance(entry, Mapping) or "rec_id" not in entry:
            raise _malformed("a recommendation has no 'rec_id'")
        items = entry.get("items") or ()
        if not isinstance(items, Sequence) or isinstance(items, str):
            raise _malformed(f"recommendation {entry['rec_id']!r} has no item list")
        last_updated = entry.get("last_updated")
        recs.append(
            Recommendation(
                rec_id=str(entry["rec_id"]),
                child_rec_id=None if entry.get("child_rec_id") is None else str(entry["child_rec_id"]),
                items=tuple(str(item) for item in items),
                is_control=entry.get("is_control"),
                recommendation_source=entry.get("recommendation_source"),
                last_updated=int(last_updated) if isinstance(last_updated, int | float) else None,
            )
        )
    return tuple(recs)


def _mapping(raw: object, key: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _malformed(f"'{key}' is not an object")
    return dict(raw)


def _cohorts(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise _malformed("'cohort_ids' is not a list")
    return tuple(str(cohort) for cohort in raw)


def _is_number(value: object) -> TypeGuard[int | float]:
    # bool is an int subclass, but a JSON true is no propensity.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _propensities(data: Mapping[str, Any], query: ProfileQuery) -> tuple[Propensity, ...]:
    raw = data.get("propensities")
    by_id: dict[str, float | None] = {}
    if raw is not None:
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise _malformed("'propensities' is not a list")
        for entry in raw:
            if not isinstance(entry, Mapping) or "pred_id" not in entry:
                raise _malformed("a propensity has no 'pred_id'")
            value = entry.get("prop")
            by_id[str(entry["pred_id"])] = float(value) if _is_number(value) else None
    elif len(query.prediction_ids) == 1 and _is_number(data.get("propensity")):
        by_id[query.prediction_ids[0]] = float(data["propensity"])
    # One entry per requested id, in request order: an id the API left out is reported, not dropped.
    return tuple(
        Propensity(prediction_id=pred_id, propensity_type=query.propensity_type, value=by_id.get(pred_id))
        for pred_id in query.prediction_ids
    )


def profile_from_responses(query: ProfileQuery, payloads: Sequence[object]) -> Profile:
    """Build a :class:`Profile` from the JSON bodies of ``query.requests``, in the same order.

    Raises :class:`MalformedResponse` when a body does not have the documented shape.
    """
    main = _user_data(payloads[0])
    comps_data = _user_data(payloads[1]) if len(payloads) > 1 else main
    scalar = main.get("propensity")
    return Profile(
        user_id=_optional_str(main, "user_id"),
        device_id=_optional_str(main, "device_id"),
        recommendations=_recommendations(main.get("recommendations")) if query.rec_ids else None,
        properties=_mapping(main.get("amp_props"), "amp_props") if query.props else None,
        cohort_ids=_cohorts(main.get("cohort_ids")) if query.cohorts else None,
        computations=(_mapping(comps_data.get("amp_props"), "amp_props") if query.wants_computations else None),
        propensities=_propensities(main, query) if query.prediction_ids else None,
        propensity=float(scalar) if _is_number(scalar) else None,
        raw=main,
    )

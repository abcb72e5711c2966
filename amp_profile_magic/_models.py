"""Typed profiles built from the API's ``userData`` responses: the one place where response values are checked.

Every value a section's frame builder sees was validated here. A value that is not what the API documents is never
coerced into another one (a string ``last_updated`` is not a missing timestamp, ``true`` is not 1970-01-01): the
lookup fails with :class:`MalformedResponse` naming the field and the reason, and in a batch only that user fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from ._exceptions import MalformedResponse
from ._query import ProfileQuery
from ._secret import Secret, redact

__all__ = [
    "MAX_DEPTH",
    "PROPENSITY_RANGE",
    "TIMESTAMP_RANGE",
    "Profile",
    "Propensity",
    "Recommendation",
    "profile_from_responses",
]

#: Nesting levels a property or computation value may have. Amplitude's values are flat or shallow lists; a deeper
#: one would only make pandas and IPython's display recurse until they fail.
MAX_DEPTH = 32

#: ``last_updated`` must fall in what a pandas ``datetime64[ns]`` column holds (1677-09-21 to 2262-04-11), a day of
#: margin on each side.
TIMESTAMP_RANGE = (datetime(1677, 9, 22, tzinfo=UTC), datetime(2262, 4, 11, tzinfo=UTC))

#: A propensity is a score in [0, 1] or a percentile in [0, 100]; the API's ``prop_type`` echo is unreliable, so both
#: types are held to the wider range.
PROPENSITY_RANGE = (0.0, 100.0)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_RANGE = (TIMESTAMP_RANGE[0].timestamp(), TIMESTAMP_RANGE[1].timestamp())
_QUOTE_LIMIT = 40


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommendation list, as the API returns it; ``last_updated`` is a UTC datetime."""

    rec_id: str
    child_rec_id: str | None
    items: tuple[str, ...]
    is_control: bool | None
    recommendation_source: str | None
    last_updated: datetime | None


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
    """Everything one lookup returned for a user; a section that was not asked for is ``None``.

    ``user_id`` and ``device_id`` are the response's ids; an id the response leaves out is the query's, so every
    profile traces back to what was asked.
    """

    user_id: str | None
    device_id: str | None
    recommendations: tuple[Recommendation, ...] | None = None
    properties: Mapping[str, Any] | None = None
    cohort_ids: tuple[str, ...] | None = None
    computations: Mapping[str, Any] | None = None
    propensities: tuple[Propensity, ...] | None = None
    #: The API's scalar ``propensity`` (when propensities were asked): the value when one prediction id was asked.
    propensity: float | None = None
    #: The main response's ``userData`` as received, for section plugins that read fields of their own.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


class _Reader:
    """Reads one lookup's responses into typed values, failing with the field's path and the reason."""

    def __init__(self, secret: Secret | None) -> None:
        self._secret = secret

    # -- failing ------------------------------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        # Redact before shortening: a key cut in half would no longer be found.
        return redact(text, self._secret.reveal()) if self._secret else text

    def fail(self, path: str, reason: str) -> NoReturn:
        where = self._clean(path)
        # Only 200 answers reach validation (every other status raised in the client already).
        raise MalformedResponse(
            f"The API's response is not the documented JSON: {where} {self._clean(reason)}.", status=200, field=where
        )

    def describe(self, value: object) -> str:
        """Name a JSON value in a message without printing all of it (it may be huge or deeply nested)."""
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            if math.isnan(value):
                return "NaN"
            if math.isinf(value):
                # json.loads reads both Infinity and numbers beyond a float's range (1e400) as inf.
                return ("-" if value < 0 else "") + "Infinity (or a number too large for a float)"
            return repr(value)
        if isinstance(value, int):
            digits = len(str(abs(value)))  # JSON parsing already refused integers of more than 4,300 digits
            return repr(value) if digits <= 24 else f"an integer of {digits} digits"
        if isinstance(value, str):
            text = self._clean(value)
            shown = text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 1] + "…"
            return f"the string {shown!r}"
        if isinstance(value, dict):
            return "an object"
        if isinstance(value, list):
            return "a list"
        return f"a {type(value).__name__}"

    def key_path(self, parent: str, key: str) -> str:
        shown = key if len(key) <= _QUOTE_LIMIT else key[: _QUOTE_LIMIT - 1] + "…"
        return f"{parent}[{shown!r}]"

    # -- scalars ------------------------------------------------------------------------------------------------

    def identifier(self, value: object, path: str) -> str:
        """A string or integer id, as a string."""
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return str(value)
        self.fail(path, f"is {self.describe(value)}, not a string or integer id")

    def identifiers(self, values: list[Any], path: str) -> tuple[str, ...]:
        """A list of ids, as strings; the element's path is only built for a message."""
        if all(type(value) is str for value in values):  # the common case, without a path per element
            return tuple(values)
        return tuple(self.identifier(value, f"{path}[{index}]") for index, value in enumerate(values))

    def optional_identifier(self, value: object, path: str) -> str | None:
        return None if value is None else self.identifier(value, path)

    def text(self, value: object, path: str) -> str | None:
        if value is None or isinstance(value, str):
            return value
        self.fail(path, f"is {self.describe(value)}, not a string or null")

    def flag(self, value: object, path: str) -> bool | None:
        if value is None or isinstance(value, bool):
            return value
        self.fail(path, f"is {self.describe(value)}, not true, false or null")

    def timestamp(self, value: object, path: str) -> datetime | None:
        """Epoch seconds (an integer or a float, exponent form included) or an ISO 8601 string, in pandas' range."""
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):  # an int never converts: it may overflow
                self._not_a_time(value, path)
            if not _EPOCH_RANGE[0] <= value <= _EPOCH_RANGE[1]:
                self._out_of_range(value, path, unit=" seconds")
            # Exact for ints and keeps a float's microseconds; fromtimestamp would round through the local clock.
            return _EPOCH + timedelta(seconds=value)
        if not isinstance(value, str):
            self._not_a_time(value, path)
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = False  # failed below, outside this block: the ValueError quotes the string unredacted
        else:
            parsed = True
        if not parsed:
            self._not_a_time(value, path)
        try:
            # The API's times are UTC; a string without an offset is read as UTC too.
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
            inside = TIMESTAMP_RANGE[0] <= when <= TIMESTAMP_RANGE[1]
        except OverflowError:  # an offset that moves year 1 or 9999 past what datetime holds
            inside = False
        if not inside:
            self._out_of_range(value, path)
        return when

    def _not_a_time(self, value: object, path: str) -> NoReturn:
        self.fail(path, f"is {self.describe(value)}, not epoch seconds or an ISO 8601 timestamp")

    def _out_of_range(self, value: object, path: str, unit: str = "") -> NoReturn:
        low, high = TIMESTAMP_RANGE
        span = f"outside the timestamps a pandas column holds ({low:%Y-%m-%d} to {high:%Y-%m-%d})"
        self.fail(path, f"is {self.describe(value)}{unit}, {span}")

    def propensity(self, value: object, path: str) -> float | None:
        low, high = PROPENSITY_RANGE
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"is {self.describe(value)}, not a number or null")
        # Compared as is: float() of a 400-digit integer would raise OverflowError.
        if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
            self.fail(path, f"is {self.describe(value)}, not a propensity (a number from {low:g} to {high:g})")
        return float(value)

    # -- containers ---------------------------------------------------------------------------------------------

    def listing(self, value: object, path: str) -> list[Any]:
        """A JSON list; ``null`` reads as an empty one."""
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.fail(path, f"is {self.describe(value)}, not a list")

    def mapping(self, value: object, path: str) -> Mapping[str, Any]:
        """A JSON object; ``null`` reads as an empty one."""
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        self.fail(path, f"is {self.describe(value)}, not an object")

    def json_values(self, value: object, path: str) -> dict[str, Any]:
        """An object of arbitrary JSON values (properties, computations), checked to be finite and shallow."""
        mapping = self.mapping(value, path)
        for key, item in mapping.items():
            kind = type(item)
            if item is None or kind is str or kind is int or kind is bool:
                continue  # the common case, checked without building the path
            if kind is float and math.isfinite(item):
                continue
            self.plain_json(item, self.key_path(path, key))
        return dict(mapping)

    def plain_json(self, value: object, path: str) -> None:
        """Refuse NaN, infinities and nesting past :data:`MAX_DEPTH`; iterative, so depth cannot overflow it."""
        pending: list[tuple[object, int]] = [(value, 0)]
        while pending:
            item, depth = pending.pop()
            if isinstance(item, float) and not math.isfinite(item):
                self.fail(path, f"holds {self.describe(item)}, which is not a JSON number")
            if isinstance(item, list | dict):
                if depth >= MAX_DEPTH:
                    self.fail(path, f"is nested more than {MAX_DEPTH} levels deep")
                children = item.values() if isinstance(item, dict) else item
                pending.extend((child, depth + 1) for child in children)

    # -- sections -----------------------------------------------------------------------------------------------

    def user_data(self, payload: object) -> Mapping[str, Any]:
        # JSON objects are checked as dicts (what json.loads gives): the Mapping ABC costs several times more a value.
        if not isinstance(payload, dict):
            self.fail("the body", f"is {self.describe(payload)}, not a JSON object")
        data = payload.get("userData")
        if not isinstance(data, dict):
            self.fail("userData", f"is {self.describe(data)}, not an object")
        return data

    def recommendations(self, raw: object) -> tuple[Recommendation, ...]:
        recs = []
        for index, entry in enumerate(self.listing(raw, "recommendations")):
            path = f"recommendations[{index}]"
            if not isinstance(entry, dict):
                self.fail(path, f"is {self.describe(entry)}, not an object")
            rec_id = self.identifier(entry.get("rec_id"), f"{path}.rec_id")
            items = self.listing(entry.get("items"), f"{path}.items")
            recs.append(
                Recommendation(
                    rec_id=rec_id,
                    child_rec_id=self.optional_identifier(entry.get("child_rec_id"), f"{path}.child_rec_id"),
                    items=self.identifiers(items, f"{path}.items"),
                    is_control=self.flag(entry.get("is_control"), f"{path}.is_control"),
                    recommendation_source=self.text(
                        entry.get("recommendation_source"), f"{path}.recommendation_source"
                    ),
                    last_updated=self.timestamp(entry.get("last_updated"), f"{path}.last_updated"),
                )
            )
        return tuple(recs)

    def cohorts(self, raw: object) -> tuple[str, ...]:
        return self.identifiers(self.listing(raw, "cohort_ids"), "cohort_ids")

    def propensities(self, data: Mapping[str, Any], query: ProfileQuery) -> tuple[tuple[Propensity, ...], float | None]:
        scalar = self.propensity(data.get("propensity"), "propensity")
        by_id: dict[str, float | None] = {}
        raw = data.get("propensities")
        if raw is not None:
            for index, entry in enumerate(self.listing(raw, "propensities")):
                path = f"propensities[{index}]"
                if not isinstance(entry, dict):
                    self.fail(path, f"is {self.describe(entry)}, not an object")
                pred_id = self.identifier(entry.get("pred_id"), f"{path}.pred_id")
                by_id[pred_id] = self.propensity(entry.get("prop"), f"{path}.prop")
        elif len(query.prediction_ids) == 1 and scalar is not None:
            by_id[query.prediction_ids[0]] = scalar
        # One entry per requested id, in request order: an id the API left out is reported, not dropped.
        entries = tuple(
            Propensity(prediction_id=pred_id, propensity_type=query.propensity_type, value=by_id.get(pred_id))
            for pred_id in query.prediction_ids
        )
        return entries, scalar


def profile_from_responses(query: ProfileQuery, payloads: Sequence[object], *, secret: Secret | None = None) -> Profile:
    """Build a :class:`Profile` from the JSON bodies of ``query.requests``, in the same order.

    Only the sections ``query`` asked for are read. Raises :class:`MalformedResponse`, whose ``field`` names the
    offending value, when a body does not have the documented shape; ``secret`` is masked in its message.
    """
    reader = _Reader(secret)
    main = reader.user_data(payloads[0])
    comps_data = reader.user_data(payloads[1]) if len(payloads) > 1 else main
    # The response's ids win; the query's fill in the ones it leaves out (null, absent or empty).
    user_id = reader.optional_identifier(main.get("user_id"), "user_id") or query.user_id
    device_id = reader.optional_identifier(main.get("device_id"), "device_id") or query.device_id
    propensities, scalar = reader.propensities(main, query) if query.prediction_ids else (None, None)
    return Profile(
        user_id=user_id,
        device_id=device_id,
        recommendations=reader.recommendations(main.get("recommendations")) if query.rec_ids else None,
        properties=reader.json_values(main.get("amp_props"), "amp_props") if query.props else None,
        cohort_ids=reader.cohorts(main.get("cohort_ids")) if query.cohorts else None,
        computations=(
            reader.json_values(comps_data.get("amp_props"), "amp_props") if query.wants_computations else None
        ),
        propensities=propensities,
        propensity=scalar,
        raw=main,
    )

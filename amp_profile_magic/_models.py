"""Typed profiles built from the API's ``userData`` responses: the one place where response values are checked.

Each section reads its slice of a response with a :class:`Reader` (see :meth:`.sections.Section.read`), so every
value a section's frame builder sees was validated. A value that is not what the API documents is never coerced
into another one (a string ``last_updated`` is not a missing timestamp, ``true`` is not 1970-01-01): the lookup
fails with :class:`MalformedResponse` naming the field and the reason, and in a batch only that user fails.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat
from operator import is_
from typing import Any, NoReturn

from ._exceptions import MalformedResponse
from ._secret import Secret, redact

__all__ = ["MAX_DEPTH", "TIMESTAMP_RANGE", "Profile", "Reader", "declare_attributes"]

#: Nesting levels a property or computation value may have. Amplitude's values are flat or shallow lists; a deeper
#: one would only make pandas and IPython's display recurse until they fail.
MAX_DEPTH = 32

#: Timestamps must fall in what a pandas ``datetime64[ns]`` column holds (1677-09-21 to 2262-04-11), a day of
#: margin on each side.
TIMESTAMP_RANGE = (datetime(1677, 9, 22, tzinfo=UTC), datetime(2262, 4, 11, tzinfo=UTC))

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_RANGE = (TIMESTAMP_RANGE[0].timestamp(), TIMESTAMP_RANGE[1].timestamp())
_QUOTE_LIMIT = 40

#: The profile attributes sections fill (``recommendations``, ``properties``, a plugin's own): one not asked is None.
_ATTRIBUTES: set[str] = set()


def declare_attributes(names: Iterable[str]) -> None:
    """Make ``names`` profile attributes (None on a profile whose lookup did not ask for them); sections call it."""
    _ATTRIBUTES.update(names)


class Profile:
    """Everything one lookup returned for a user: its ids, and each asked section's slice as an attribute.

    ``user_id`` and ``device_id`` are the response's ids; an id the response leaves out is the query's, so every
    profile traces back to what was asked. Each section declares the attributes its slice fills
    (``profile.recommendations``, ``profile.properties``, …); an attribute of a section that was not asked is None.
    """

    # The slices live in the instance dict, so reading one is a plain attribute lookup (a frame builder reads one
    # per profile); only an attribute that was not asked falls through to __getattr__.
    __slots__ = ("__dict__", "device_id", "raw", "user_id")

    def __init__(
        self,
        user_id: str | None,
        device_id: str | None,
        *,
        raw: Mapping[str, Any] | None = None,
        **slices: Any,
    ) -> None:
        self.user_id = user_id
        self.device_id = device_id
        #: The main response's ``userData`` as received.
        self.raw: Mapping[str, Any] = raw if raw is not None else {}
        # None is "not asked" (or nothing there): it is what a missing attribute reads as, so it is not kept.
        self.__dict__.update((name, value) for name, value in slices.items() if value is not None)

    @classmethod
    def _of(cls, user_id: str | None, device_id: str | None, raw: Mapping[str, Any], slices: dict[str, Any]) -> Profile:
        """What ``Profile(user_id, device_id, raw=raw, **slices)`` makes, without packing keywords: one per user of
        a batch. The profile keeps ``slices`` (a section's read made it for this profile alone)."""
        profile = cls.__new__(cls)
        profile.user_id = user_id
        profile.device_id = device_id
        profile.raw = raw
        if any(map(is_, slices.values(), repeat(None))):
            slices = {name: value for name, value in slices.items() if value is not None}
        profile.__dict__ = slices
        return profile

    @classmethod
    def _many(
        cls,
        users: Sequence[str | None],
        devices: Sequence[str | None],
        raws: Sequence[Mapping[str, Any]],
        slices: Sequence[dict[str, Any]],
    ) -> list[Profile]:
        """``_of`` for each position of the four columns (a cached re-run's 100,000 profiles), in one pass."""
        if any(map(is_, chain.from_iterable(map(dict.values, slices)), repeat(None))):
            return list(map(cls._of, users, devices, raws, slices))
        if not len(users) == len(devices) == len(raws) == len(slices):
            raise ValueError("Profile._many: columns of different lengths")
        # Each attribute set by setattr mapped from C over the whole batch: a loop setting all four per profile
        # took a third longer (and the slot descriptors' own __set__, mapped, longer still).
        profiles = list(map(object.__new__, repeat(cls, len(users))))
        for name, values in (("__dict__", slices), ("user_id", users), ("device_id", devices), ("raw", raws)):
            deque(map(setattr, profiles, repeat(name), values), maxlen=0)
        return profiles

    @property
    def _slices(self) -> dict[str, Any]:
        return self.__dict__

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and name in _ATTRIBUTES:
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Profile):
            return NotImplemented
        return (self.user_id, self.device_id, self._slices) == (other.user_id, other.device_id, other._slices)

    __hash__ = None  # type: ignore[assignment]  # holds dicts, like the dataclass it replaced

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.user_id, self.device_id, dict(self.raw), self._slices)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        user_id, device_id, raw, slices = state
        Profile.__init__(self, user_id, device_id, raw=raw, **slices)

    def __repr__(self) -> str:
        slices = "".join(f", {name}={value!r}" for name, value in self._slices.items())
        return f"Profile(user_id={self.user_id!r}, device_id={self.device_id!r}{slices})"


class Reader:
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
        key = self._clean(key)  # before shortening, as in describe(): a cut key would no longer be found
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
        try:
            "".join(values)  # TypeError unless every one is a str (the common case), checked without a path each
        except TypeError:
            pass
        else:
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

    # -- the envelope -------------------------------------------------------------------------------------------

    def user_data(self, payload: object) -> Mapping[str, Any]:
        # JSON objects are checked as dicts (what json.loads gives): the Mapping ABC costs several times more a value.
        if not isinstance(payload, dict):
            self.fail("the body", f"is {self.describe(payload)}, not a JSON object")
        data = payload.get("userData")
        if not isinstance(data, dict):
            self.fail("userData", f"is {self.describe(data)}, not an object")
        return data

"""What one lookup asks for, validated before anything is sent."""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from ._exceptions import InvalidQuery

__all__ = ["PROPENSITY_TYPES", "REC_TYPES", "ProfileQuery"]

REC_TYPES = ("model", "random")
PROPENSITY_TYPES = ("score", "pct")

RecType = Literal["model", "random"]
PropensityType = Literal["score", "pct"]


#: Parameters that hold one id: a comma in them is part of the id, not a separator.
SINGLE_ID_PARAMETERS = ("user_id", "device_id")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean_id(parameter: str, value: object) -> str:
    """The id exactly as given (never stripped or re-read), or :class:`InvalidQuery` saying why it cannot be sent."""
    if isinstance(value, bool) or not isinstance(value, str | numbers.Integral):
        raise InvalidQuery(parameter, f"expected a string id, got {type(value).__name__}")
    text = str(value) if isinstance(value, str) else str(int(value))
    if not text.strip():
        raise InvalidQuery(parameter, f"{'blank' if text else 'empty'} id")
    if "," in text and parameter not in SINGLE_ID_PARAMETERS:
        raise InvalidQuery(parameter, f"{text!r} contains a comma, which the API uses to separate ids")
    if LONE_SURROGATE.search(text):
        # A lone surrogate (e.g. from a mis-decoded file) has no UTF-8 form, so it cannot go into a URL.
        raise InvalidQuery(parameter, f"{text!r} is not valid Unicode text (it holds a lone surrogate)")
    return text


def _clean_ids(parameter: str, values: Iterable[object] | None) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        # A comma-separated string is list syntax ("a, b"): the spaces after its commas are not part of the ids.
        values = [part.strip() for part in values.split(",")]
    elif isinstance(values, bytes) or not isinstance(values, Iterable):
        kind = type(values).__name__
        raise InvalidQuery(parameter, f"expected a list of ids or a comma-separated string, not {kind}")
    cleaned = tuple(_clean_id(parameter, value) for value in values)
    # The API answers each id once; asking twice would only duplicate rows.
    return tuple(dict.fromkeys(cleaned))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileQuery:
    """One user's (or device's) lookup: who, and which sections of the profile.

    Construction validates everything the API would otherwise reject or silently ignore, and raises
    :class:`InvalidQuery` naming the bad parameter. Queries are hashable, so a batch can send duplicates once.
    """

    user_id: str | None = None
    device_id: str | None = None
    rec_ids: tuple[str, ...] = ()
    rec_type: RecType | None = None
    props: bool = False
    cohorts: bool = False
    comps: bool = False
    comp_ids: tuple[str, ...] = ()
    prediction_ids: tuple[str, ...] = ()
    propensity_type: PropensityType = "score"
    #: Further query parameters for the main request, added by section plugins beyond the built-in five.
    extra_params: tuple[tuple[str, str], ...] = ()
    _requests: tuple[tuple[tuple[str, str], ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        user_id = None if self.user_id is None else _clean_id("user_id", self.user_id)
        device_id = None if self.device_id is None else _clean_id("device_id", self.device_id)
        if user_id is None and device_id is None:
            raise InvalidQuery("user_id", "give a user_id or a device_id (or both)")
        set_(self, "user_id", user_id)
        set_(self, "device_id", device_id)
        for flag in ("props", "cohorts", "comps"):
            # A string like "false" is truthy: only real booleans say what was meant.
            if not isinstance(getattr(self, flag), bool):
                raise InvalidQuery(flag, f"expected True or False, got {type(getattr(self, flag)).__name__}")
        set_(self, "rec_ids", _clean_ids("rec_id", self.rec_ids))
        set_(self, "comp_ids", _clean_ids("comp_id", self.comp_ids))
        set_(self, "prediction_ids", _clean_ids("prediction_id", self.prediction_ids))
        if self.rec_type is not None and self.rec_type not in REC_TYPES:
            raise InvalidQuery("rec_type", f"{self.rec_type!r} is not one of {', '.join(REC_TYPES)}")
        if self.rec_type is not None and not self.rec_ids:
            raise InvalidQuery("rec_type", "only applies to recommendations: give rec ids too")
        if self.propensity_type not in PROPENSITY_TYPES:
            raise InvalidQuery(
                "propensity_type", f"{self.propensity_type!r} is not one of {', '.join(PROPENSITY_TYPES)}"
            )
        if self.propensity_type != "score" and not self.prediction_ids:
            # "score" is the default, so only an explicit other type can be told apart from "not given".
            raise InvalidQuery("propensity_type", "only applies to propensities: give prediction ids too")
        set_(self, "_requests", self._plan())

    @property
    def wants_computations(self) -> bool:
        """Whether any computation (all of them, or chosen ids) was asked for."""
        return self.comps or bool(self.comp_ids)

    def _plan(self) -> tuple[tuple[tuple[str, str], ...], ...]:
        identity: list[tuple[str, str]] = []
        if self.user_id is not None:
            identity.append(("user_id", self.user_id))
        if self.device_id is not None:
            identity.append(("device_id", self.device_id))
        main = list(identity)
        if self.rec_ids:
            main += [("get_recs", "true"), ("rec_id", ",".join(self.rec_ids))]
            if self.rec_type is not None:
                main.append(("rec_type", self.rec_type))
        if self.props:
            main.append(("get_amp_props", "true"))
        if self.cohorts:
            main.append(("get_cohort_ids", "true"))
        if self.prediction_ids:
            main += [
                ("get_propensity", "true"),
                ("prediction_id", ",".join(self.prediction_ids)),
                ("propensity_type", self.propensity_type),
            ]
        main += list(self.extra_params)
        computations: list[tuple[str, str]] = []
        if self.wants_computations:
            computations.append(("get_computations", "true"))
            if self.comp_ids:
                computations.append(("comp_id", ",".join(self.comp_ids)))
        if self.props and computations:
            # The API returns user properties and computations merged into one `amp_props` dict, and the
            # response alone cannot tell which key is which: ask for computations in a request of their own.
            return (tuple(main), tuple(identity + computations))
        return (tuple(main + computations),)

    @property
    def requests(self) -> tuple[tuple[tuple[str, str], ...], ...]:
        """The query strings (as ordered pairs) this lookup sends: one, or two when props and comps are both asked."""
        return self._requests

    def describe(self) -> str:
        """Name the looked-up identity the way error messages and failure tables do."""
        parts = []
        if self.user_id is not None:
            parts.append(f"user {self.user_id}")
        if self.device_id is not None:
            parts.append(f"device {self.device_id}")
        return ", ".join(parts)

"""``comps`` or ``comps=ID[,ID...]``: one row per profile, one column per computation, numbers parsed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from amp_profile_magic._query import ProfileQuery

from ._base import Control, Section, split_ids
from .props import properties_frame

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile


class CompsSection(Section):
    """Computations, which the API returns as strings inside ``amp_props``.

    Asked together with ``props``, they cost a second request per user: the API merges both into one dict and
    the response cannot tell them apart.
    """

    name = "comps"
    keywords = ("comps",)
    usage = (
        "comps                  all computations, one column each (numeric strings become numbers)",
        "comps=ID[,ID...]       only these computation ids",
    )

    def query_fields(self, tokens: Mapping[str, str | None]) -> dict[str, Any]:
        value = tokens["comps"]
        if value is None:
            return {"comps": True}
        return {"comp_ids": split_ids("comps", value)}

    def requested(self, query: ProfileQuery) -> bool:
        return query.wants_computations

    def frame(self, profiles: Sequence[Profile]) -> pd.DataFrame:
        frame = properties_frame(profiles, [profile.computations or {} for profile in profiles], prefix="comp:")
        for column in frame.columns[2:]:
            numbers = _numbers(frame[column])
            if numbers is not None:
                frame[column] = numbers
        return frame

    def controls(self) -> tuple[Control, ...]:
        return (
            Control(
                keyword="comps",
                label="Computations",
                kind="ids",
                placeholder="'all' or ids, comma-separated",
                bare_word="all",
            ),
        )


def _numbers(values: pd.Series[Any]) -> pd.Series[Any] | None:
    """The column as finite numbers when every present value is a number or a numeric string, else None.

    A text computation stays text; so does a column holding a boolean, an object, ``"nan"`` or ``"1e400"``: reading
    those as numbers would turn them into values they are not.
    """
    import math

    import pandas as pd

    present = values.dropna()
    if not all(isinstance(value, str | int | float) and not isinstance(value, bool) for value in present):
        return None
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() != len(present) or not all(math.isfinite(number) for number in numbers.dropna()):
        return None
    return numbers

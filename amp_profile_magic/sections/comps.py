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
        import pandas as pd

        frame = properties_frame(profiles, [profile.computations or {} for profile in profiles])
        for column in frame.columns[2:]:
            values = frame[column]
            numbers = pd.to_numeric(values, errors="coerce")
            # Convert only when every present value is numeric: a text computation stays text.
            if numbers.notna().sum() == values.notna().sum():
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

"""``comps`` or ``comps=ID[,ID...]``: one row per profile, one column per computation, numbers parsed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._base import Control, Params, Section, check_flag, clean_ids, split_ids
from .props import properties_frame

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile, Reader


@dataclass(frozen=True, slots=True, kw_only=True)
class CompsRequest:
    """``comps=True`` asks for every computation, ``comp_ids`` (a list or a comma-separated string) for some."""

    comps: bool = False
    comp_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_flag("comps", self.comps)
        object.__setattr__(self, "comp_ids", clean_ids("comp_id", self.comp_ids))


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

    reads = ("amp_props",)
    attributes = ("computations",)
    request_type = CompsRequest

    def request(self, tokens: Mapping[str, str | None]) -> CompsRequest:
        value = tokens["comps"]
        if value is None:
            return CompsRequest(comps=True)
        return CompsRequest(comp_ids=split_ids("comps", value))

    def params(self, request: CompsRequest) -> Params:
        ids = (("comp_id", ",".join(request.comp_ids)),) if request.comp_ids else ()
        return (("get_computations", "true"), *ids)

    def read(self, data: Mapping[str, Any], request: CompsRequest, reader: Reader) -> dict[str, Any]:
        return {"computations": reader.json_values(data.get("amp_props"), "amp_props")}

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
    # An integer past a float's 53 bits (an order id of 23 digits, 2**53 + 1 next to a "1.5") would come back as
    # another number: the column stays as the API gave it.
    for value, number in zip(present, numbers[present.index], strict=True):
        try:
            exact = int(value.strip()) if isinstance(value, str) else value
        except ValueError:
            continue  # a decimal: read as the nearest float, as json.loads reads one
        if isinstance(exact, int) and int(number) != exact:
            return None
    return numbers

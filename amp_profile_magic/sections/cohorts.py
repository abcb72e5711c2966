"""``cohorts``: one row per cohort membership."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from ._base import Control, Params, Section, SectionUsageError, check_flag

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile, Reader


@dataclass(frozen=True, slots=True, kw_only=True)
class CohortsRequest:
    """``cohorts=True`` asks for the user's cohort memberships."""

    cohorts: bool = False

    def __post_init__(self) -> None:
        check_flag("cohorts", self.cohorts)


_LIST_OR_NONE = frozenset({list, type(None)})
_get: Callable[[Any, str], Any] = dict.get  # a plain two-argument callable for map()


_cohort_ids_of, _user_of, _device_of = attrgetter("cohort_ids"), attrgetter("user_id"), attrgetter("device_id")


class CohortsSection(Section):
    """Cohort ids the user belongs to, among cohorts synced to the Profile API."""

    name = "cohorts"
    keywords = ("cohorts",)
    usage = ("cohorts                cohort memberships, one row each",)
    reads = ("cohort_ids",)
    attributes = ("cohort_ids",)
    request_type = CohortsRequest

    def request(self, tokens: Mapping[str, str | None]) -> CohortsRequest:
        if tokens["cohorts"] is not None:
            raise SectionUsageError(f"cohorts={tokens['cohorts']}: cohorts takes no value")
        return CohortsRequest(cohorts=True)

    def params(self, request: CohortsRequest) -> Params:
        return (("get_cohort_ids", "true"),)

    def read(self, data: Mapping[str, Any], request: CohortsRequest, reader: Reader) -> dict[str, Any]:
        return {"cohort_ids": reader.identifiers(reader.listing(data.get("cohort_ids"), "cohort_ids"), "cohort_ids")}

    def read_many(
        self, datas: Sequence[Mapping[str, Any]], request: CohortsRequest, reader: Reader
    ) -> list[dict[str, Any]]:
        # In C over all the users (map, set, one join), then one dict per user: a loop making these checks user by
        # user was most of this section's share of a cached 100,000-user re-run.
        try:
            listed = list(map(_get, datas, repeat("cohort_ids")))
        except TypeError:  # a Mapping that is not a dict
            return super().read_many(datas, request, reader)
        if set(map(type, listed)) <= _LIST_OR_NONE:
            try:
                "".join(chain.from_iterable(filter(None, listed)))  # TypeError unless every id is a str
            except TypeError:
                pass
            else:
                return [{"cohort_ids": tuple(ids) if ids else ()} for ids in listed]
        return super().read_many(datas, request, reader)  # the careful way, naming what is wrong

    def frame(self, profiles: Sequence[Profile]) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        # Each profile's ids repeated by its number of cohorts, in C: a Python list per profile was most of the
        # time a 100,000-user frame took. The attributes are read by attrgetter mapped from C, too.
        listed = list(map(_cohort_ids_of, profiles))
        if None in listed:  # a profile built without the section reads None
            listed = [ids or () for ids in listed]
        counts = list(map(len, listed))
        cohorts = list(chain.from_iterable(listed))

        def repeated(values: list[Any]) -> Any:
            if values.count(None) == len(values):  # a batch of user ids alone has no device ids: no repeat needed
                return np.full(len(cohorts), None, dtype=object)
            return np.repeat(np.array(values, dtype=object), counts)

        users, devices = repeated(list(map(_user_of, profiles))), repeated(list(map(_device_of, profiles)))
        return pd.DataFrame({"user_id": users, "device_id": devices, "cohort_id": cohorts})

    def controls(self) -> tuple[Control, ...]:
        return (Control(keyword="cohorts", label="Cohort memberships", kind="toggle", default=False),)

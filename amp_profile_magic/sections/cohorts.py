"""``cohorts``: one row per cohort membership."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
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
        slices: list[dict[str, Any]] = []
        append = slices.append
        try:
            for data in datas:
                ids = data.get("cohort_ids")
                if ids is None:
                    append({"cohort_ids": ()})
                    continue
                if ids.__class__ is not list:
                    break
                "".join(ids)  # TypeError unless every id is a str (the common case): one call, not one per id
                append({"cohort_ids": tuple(ids)})
            else:
                return slices
        except TypeError:
            pass
        return super().read_many(datas, request, reader)  # the careful way, naming what is wrong

    def frame(self, profiles: Sequence[Profile]) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        # Each profile's ids repeated by its number of cohorts, in C: a Python list per profile was most of the
        # time a 100,000-user frame took.
        listed = [profile.cohort_ids or () for profile in profiles]
        counts = list(map(len, listed))
        users = np.repeat(np.array([profile.user_id for profile in profiles], dtype=object), counts)
        devices = np.repeat(np.array([profile.device_id for profile in profiles], dtype=object), counts)
        cohorts = list(chain.from_iterable(listed))
        return pd.DataFrame({"user_id": users, "device_id": devices, "cohort_id": cohorts})

    def controls(self) -> tuple[Control, ...]:
        return (Control(keyword="cohorts", label="Cohort memberships", kind="toggle", default=False),)

"""``cohorts``: one row per cohort membership."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

    def frame(self, profiles: Sequence[Profile]) -> pd.DataFrame:
        import pandas as pd

        users: list[str | None] = []
        devices: list[str | None] = []
        cohorts: list[str] = []
        for profile in profiles:
            ids = profile.cohort_ids or ()
            users += [profile.user_id] * len(ids)
            devices += [profile.device_id] * len(ids)
            cohorts += ids
        return pd.DataFrame({"user_id": users, "device_id": devices, "cohort_id": cohorts})

    def controls(self) -> tuple[Control, ...]:
        return (Control(keyword="cohorts", label="Cohort memberships", kind="toggle", default=False),)

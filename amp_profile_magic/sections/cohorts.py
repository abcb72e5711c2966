"""``cohorts``: one row per cohort membership."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from amp_profile_magic._query import ProfileQuery

from ._base import Control, Section, SectionUsageError

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile


class CohortsSection(Section):
    """Cohort ids the user belongs to, among cohorts synced to the Profile API."""

    name = "cohorts"
    keywords = ("cohorts",)
    usage = ("cohorts                cohort memberships, one row each",)

    def query_fields(self, tokens: Mapping[str, str | None]) -> dict[str, Any]:
        if tokens["cohorts"] is not None:
            raise SectionUsageError(f"cohorts={tokens['cohorts']}: cohorts takes no value")
        return {"cohorts": True}

    def requested(self, query: ProfileQuery) -> bool:
        return query.cohorts

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

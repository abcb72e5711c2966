"""A section plugin for a hypothetical ``userData`` field, ``loyalty``, with its own query parameters.

It is what README's "Writing a section plugin" shows, and the test suite installs it through an entry point in a
throwaway distribution: it uses only the public plugin API, and the package knows nothing of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from amp_profile_magic.sections import Control, Section, SectionUsageError, clean_ids, split_ids


@dataclass(frozen=True, slots=True, kw_only=True)
class LoyaltyRequest:
    """``ProfileClient.lookup(loyalty=True, loyalty_programs=[...])``: validated here, whatever asks."""

    loyalty: bool = False
    loyalty_programs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from amp_profile_magic import InvalidQuery

        if not isinstance(self.loyalty, bool):
            raise InvalidQuery("loyalty", f"expected True or False, got {type(self.loyalty).__name__}")
        object.__setattr__(self, "loyalty_programs", clean_ids("loyalty_program", self.loyalty_programs))
        if self.loyalty_programs and not self.loyalty:
            raise InvalidQuery("loyalty_program", "only applies to loyalty: give loyalty=True too")


class LoyaltySection(Section):
    """The user's loyalty tier and points, per program."""

    name = "loyalty"
    keywords = ("loyalty", "loyalty_program")
    usage = (
        "loyalty                loyalty tier and points, one row per program",
        "loyalty_program=ID[,ID...]  only these loyalty programs",
    )
    reads = ("loyalty",)  # the userData field its slice is read from
    attributes = ("loyalty",)  # profile.loyalty
    request_type = LoyaltyRequest

    def request(self, tokens: Mapping[str, str | None]) -> LoyaltyRequest:
        if tokens["loyalty"] is not None:
            raise SectionUsageError(f"loyalty={tokens['loyalty']}: loyalty takes no value")
        programs = split_ids("loyalty_program", tokens["loyalty_program"]) if "loyalty_program" in tokens else ()
        return LoyaltyRequest(loyalty=True, loyalty_programs=programs)

    def params(self, request: LoyaltyRequest) -> tuple[tuple[str, str], ...]:
        programs = (("loyalty_program", ",".join(request.loyalty_programs)),) if request.loyalty_programs else ()
        return (("get_loyalty", "true"), *programs)

    def read(self, data: Mapping[str, Any], request: LoyaltyRequest, reader: Any) -> dict[str, Any]:
        rows = []
        for index, entry in enumerate(reader.listing(data.get("loyalty"), "loyalty")):
            path = f"loyalty[{index}]"
            if not isinstance(entry, dict):
                reader.fail(path, f"is {reader.describe(entry)}, not an object")
            points = entry.get("points")
            if isinstance(points, bool) or not isinstance(points, int):
                reader.fail(f"{path}.points", f"is {reader.describe(points)}, not a whole number")
            rows.append(
                (
                    reader.identifier(entry.get("program"), f"{path}.program"),
                    reader.text(entry.get("tier"), f"{path}.tier"),
                    points,
                )
            )
        return {"loyalty": tuple(rows)}

    def frame(self, profiles: Sequence[Any]) -> pd.DataFrame:
        rows = [(profile.user_id, profile.device_id, *entry) for profile in profiles for entry in profile.loyalty or ()]
        return pd.DataFrame(rows, columns=["user_id", "device_id", "program", "tier", "points"])

    def controls(self) -> tuple[Control, ...]:
        return (
            Control(keyword="loyalty", label="Loyalty", kind="toggle", default=False),
            Control(keyword="loyalty_program", label="Programs", kind="ids", placeholder="program ids"),
        )

"""A section plugin reading ``amp_props``, which the built-in ``props`` and ``comps`` read too.

A hypothetical ``get_experiment_props=true`` makes the API add the user's experiment flags to ``amp_props``: a
request holding it with ``props`` would merge both into one dict, so the planner must give it a request of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from amp_profile_magic.sections import Section, SectionUsageError, identity_columns


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentsRequest:
    """``ProfileClient.lookup(experiments=True)``."""

    experiments: bool = False


class ExperimentsSection(Section):
    """The user's experiment flags, one column each."""

    name = "experiments"
    keywords = ("experiments",)
    usage = ("experiments            experiment flags, one column each",)
    reads = ("amp_props",)
    attributes = ("experiment_flags",)
    request_type = ExperimentsRequest

    def request(self, tokens: Mapping[str, str | None]) -> ExperimentsRequest:
        if tokens["experiments"] is not None:
            raise SectionUsageError(f"experiments={tokens['experiments']}: experiments takes no value")
        return ExperimentsRequest(experiments=True)

    def params(self, request: ExperimentsRequest) -> tuple[tuple[str, str], ...]:
        return (("get_experiment_props", "true"),)

    def read(self, data: Mapping[str, Any], request: ExperimentsRequest, reader: Any) -> dict[str, Any]:
        return {"experiment_flags": reader.json_values(data.get("amp_props"), "amp_props")}

    def frame(self, profiles: Sequence[Any]) -> pd.DataFrame:
        flags = [profile.experiment_flags or {} for profile in profiles]
        keys = list(dict.fromkeys(key for mapping in flags for key in mapping))
        return pd.DataFrame({**identity_columns(profiles), **{key: [f.get(key) for f in flags] for key in keys}})

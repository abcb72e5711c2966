"""``props``: one row per profile, one column per user property, native JSON types kept."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._base import Control, Params, Section, SectionUsageError, check_flag, identity_columns

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile, Reader


@dataclass(frozen=True, slots=True, kw_only=True)
class PropsRequest:
    """``props=True`` asks for the user's properties."""

    props: bool = False

    def __post_init__(self) -> None:
        check_flag("props", self.props)


class PropsSection(Section):
    """User properties (``get_amp_props``), which the API returns without computations."""

    name = "props"
    keywords = ("props",)
    usage = ("props                  user properties, one column each, native types",)

    reads = ("amp_props",)
    attributes = ("properties",)
    request_type = PropsRequest

    def request(self, tokens: Mapping[str, str | None]) -> PropsRequest:
        if tokens["props"] is not None:
            raise SectionUsageError(f"props={tokens['props']}: props takes no value")
        return PropsRequest(props=True)

    def params(self, request: PropsRequest) -> Params:
        return (("get_amp_props", "true"),)

    def read(self, data: Mapping[str, Any], request: PropsRequest, reader: Reader) -> dict[str, Any]:
        return {"properties": reader.json_values(data.get("amp_props"), "amp_props")}

    def frame(self, profiles: Sequence[Profile]) -> pd.DataFrame:
        return properties_frame(profiles, [profile.properties or {} for profile in profiles], prefix="prop:")

    def controls(self) -> tuple[Control, ...]:
        return (Control(keyword="props", label="User properties", kind="toggle", default=False),)


#: The identity columns every frame starts with; a key named like one of them is renamed.
IDENTITY_COLUMNS = ("user_id", "device_id")

#: Python ints a nullable Int64 column holds; a larger integer keeps its column as Python objects.
_INT64 = (-(2**63), 2**63 - 1)


def column_name(key: str, prefix: str) -> str:
    """The column for a property (or computation) ``key``: the key itself unless it would collide.

    A key named like an identity column gets ``prefix`` (``prop:user_id``). So that a renamed key never meets a real
    one, a key that already starts with ``prefix`` gets it too (``prop:x`` becomes ``prop:prop:x``): no two keys
    share a column and none is dropped.
    """
    return prefix + key if key in IDENTITY_COLUMNS or key.startswith(prefix) else key


def properties_frame(profiles: Sequence[Profile], values: Sequence[Mapping[str, Any]], *, prefix: str) -> pd.DataFrame:
    """One row per profile: identity columns, then every key seen in any profile, in first-seen order."""
    import pandas as pd

    columns: dict[str, list[Any]] = identity_columns(profiles)
    keys = list(dict.fromkeys(key for mapping in values for key in mapping))
    for key in keys:
        columns[column_name(key, prefix)] = _native([mapping.get(key) for mapping in values])
    return pd.DataFrame(columns)


def _native(values: list[Any]) -> Any:
    """The column's values; ints or bools with gaps become nullable arrays, which pandas would make float/object."""
    import pandas as pd

    present = [value for value in values if value is not None]
    if len(present) == len(values) or not present:
        return values
    if all(isinstance(value, bool) for value in present):
        return pd.array(values, dtype="boolean")
    if all(
        isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1] for value in present
    ):
        return pd.array(values, dtype="Int64")
    return values

"""What a section plugin is: grammar keywords in, query parameters out, responses to a DataFrame."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from amp_profile_magic._query import ProfileQuery

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile

__all__ = ["Control", "Section", "SectionUsageError"]


class SectionUsageError(ValueError):
    """A section's keyword got a value it cannot use; the message names the token."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Control:
    """One form control a section wants, described without importing ipywidgets.

    ``kind`` is ``"toggle"`` (a checkbox; the keyword is bare), ``"ids"`` (a comma-separated text box) or
    ``"choice"`` (a dropdown over ``options``). The form turns the values back into grammar tokens, so a plugin
    gets its controls without the form knowing about it: a checked toggle gives the bare keyword, a filled ids box
    ``keyword=ids`` (or the bare keyword when it holds ``bare_word``, as ``comps`` does with ``all``), and a choice
    other than ``default`` (the section's behaviour when the keyword is absent) gives ``keyword=choice``.
    """

    keyword: str
    label: str
    kind: str
    options: tuple[str, ...] = ()
    default: str | bool | None = None
    placeholder: str = ""
    bare_word: str = ""


class Section(ABC):
    """A part of a profile that ``%ampprofile`` can ask for and turn into one DataFrame.

    Subclasses declare the grammar keywords they own, translate those tokens into :class:`ProfileQuery` fields,
    and build their frame from the profiles of a lookup or batch. Register one under the entry-point group
    ``amp_profile_magic.sections`` (or with :func:`amp_profile_magic.sections.register`).
    """

    #: The result key and the section's name in help, panels and the form.
    name: ClassVar[str]
    #: The grammar keywords this section owns; the first one switches the section on.
    keywords: ClassVar[tuple[str, ...]]
    #: One help line per keyword, shown by ``%ampprofile?``.
    usage: ClassVar[tuple[str, ...]]

    @abstractmethod
    def query_fields(self, tokens: Mapping[str, str | None]) -> dict[str, Any]:
        """Turn this section's tokens (keyword → value, ``None`` for a bare keyword) into ProfileQuery fields.

        Raise :class:`SectionUsageError` naming the token when a value is unusable.
        """

    @abstractmethod
    def requested(self, query: ProfileQuery) -> bool:
        """Whether ``query`` asks for this section."""

    @abstractmethod
    def frame(self, profiles: Sequence[Profile]) -> pd.DataFrame:
        """Build this section's DataFrame from successful profiles; ``user_id``/``device_id`` are always columns."""

    def controls(self) -> tuple[Control, ...]:
        """The form controls for this section; none by default, so a section without them is magic-only."""
        return ()


def split_ids(keyword: str, value: str | None) -> tuple[str, ...]:
    """Split ``a,b,c`` into ids, refusing a missing value or empty ids."""
    if value is None or not value.strip():
        raise SectionUsageError(f"{keyword}= needs one or more comma-separated ids, e.g. {keyword}=a,b")
    ids = tuple(part.strip() for part in value.split(","))
    if not all(ids):
        raise SectionUsageError(f"{keyword}={value}: empty id in the list")
    return ids


def identity_columns(profiles: Sequence[Profile]) -> dict[str, list[str | None]]:
    """The ``user_id`` and ``device_id`` columns, one entry per profile."""
    return {
        "user_id": [profile.user_id for profile in profiles],
        "device_id": [profile.device_id for profile in profiles],
    }

"""Section plugins: each part of a profile that ``%ampprofile`` can fetch, one class per section.

Sections are found through the entry-point group ``amp_profile_magic.sections``; the built-ins register there
too (see ``pyproject.toml``). :func:`register` adds one at run time, for a notebook or a test. README's "Writing
a section plugin" walks through one.
"""

from __future__ import annotations

from ._base import Control, Params, Section, SectionUsageError, clean_ids, identity_columns, split_ids
from ._registry import available_sections, register, unregister

__all__ = [
    "Control",
    "Params",
    "Section",
    "SectionUsageError",
    "available_sections",
    "clean_ids",
    "identity_columns",
    "register",
    "split_ids",
    "unregister",
]

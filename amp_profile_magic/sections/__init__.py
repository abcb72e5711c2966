"""Section plugins: each part of a profile that ``%ampprofile`` can fetch, one class per section.

Sections are found through the entry-point group ``amp_profile_magic.sections``; the built-ins register there
too (see ``pyproject.toml``). :func:`register` adds one at run time, for a notebook or a test.
"""

from __future__ import annotations

from ._base import Control, Section, SectionUsageError
from ._registry import available_sections, register, unregister

__all__ = ["Control", "Section", "SectionUsageError", "available_sections", "register", "unregister"]

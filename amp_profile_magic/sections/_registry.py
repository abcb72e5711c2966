"""Discovering sections from entry points, plus run-time registration."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from ._base import Section

__all__ = ["available_sections", "register", "unregister"]

GROUP = "amp_profile_magic.sections"
BUILTIN_ORDER = ("recs", "props", "cohorts", "comps", "propensity")

log = logging.getLogger("amp_profile_magic")

_registered: dict[str, Section] = {}
_discovered: dict[str, Section] | None = None
_ordered: dict[str, Section] | None = None


def _discover() -> dict[str, Section]:
    found: dict[str, Section] = {}
    for entry in entry_points(group=GROUP):
        try:
            section_class = entry.load()
            section = section_class()
        except Exception:
            # A broken third-party plugin must not take the built-in sections down with it.
            log.exception("Could not load section plugin %r from %s", entry.name, entry.value)
            continue
        if not isinstance(section, Section):
            log.error("Section plugin %r is not a Section subclass; skipped", entry.name)
            continue
        found[section.name] = section
    if not all(name in found for name in BUILTIN_ORDER):
        # Running from a source tree that was never pip-installed: the entry points are not there.
        from .cohorts import CohortsSection
        from .comps import CompsSection
        from .propensity import PropensitySection
        from .props import PropsSection
        from .recs import RecsSection

        for builtin in (RecsSection(), PropsSection(), CohortsSection(), CompsSection(), PropensitySection()):
            found.setdefault(builtin.name, builtin)
    return found


def available_sections() -> dict[str, Section]:
    """Every section by name: built-ins first in their documented order, then plugins, then run-time ones.

    The same dict until the sections change (every query asks for it): do not modify it.
    """
    global _discovered, _ordered
    if _ordered is None:
        if _discovered is None:
            _discovered = _discover()
        merged = {**_discovered, **_registered}
        _ordered = {name: merged[name] for name in BUILTIN_ORDER if name in merged}
        _ordered.update({name: section for name, section in merged.items() if name not in _ordered})
    return _ordered


def register(section: Section) -> None:
    """Add (or replace) a section for this process, as if an installed package declared its entry point."""
    if not isinstance(section, Section):
        raise TypeError(f"expected a Section instance, got {type(section).__name__}")
    global _ordered
    _registered[section.name] = section
    _ordered = None


def unregister(name: str) -> None:
    """Remove a section added with :func:`register`; unknown names are ignored."""
    global _ordered
    _registered.pop(name, None)
    _ordered = None


def reset() -> None:
    """Forget run-time registrations and rediscover entry points on next use (tests' clean slate)."""
    global _discovered, _ordered
    _registered.clear()
    _discovered = _ordered = None

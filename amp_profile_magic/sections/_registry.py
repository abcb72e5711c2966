"""Discovering sections from entry points, plus run-time registration."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from importlib.metadata import entry_points

from ._base import Control, Section

__all__ = ["available_sections", "controls_of", "problem_with", "register", "section_is_builtin", "unregister"]

GROUP = "amp_profile_magic.sections"
BUILTIN_ORDER = ("recs", "props", "cohorts", "comps", "propensity")

log = logging.getLogger("amp_profile_magic")

_registered: dict[str, Section] = {}
_discovered: dict[str, Section] | None = None
_ordered: dict[str, Section] | None = None


def _discover() -> dict[str, Section]:
    plugins: list[tuple[str, Section]] = []
    for entry in entry_points(group=GROUP):
        where = f"section plugin {entry.name!r} ({entry.value})"
        try:
            section_class = entry.load()
            section = section_class()
        except (Exception, SystemExit) as error:  # SystemExit too: a plugin must not end the kernel
            # One line, and only the error's type: its message (or a traceback's locals) may quote a secret.
            module = entry.value.partition(":")[0]
            log.error("Skipped %s: loading it raised %s (`import %s` shows why).", where, type(error).__name__, module)
            continue
        if not isinstance(section, Section):
            log.error("Skipped %s: it is not a Section subclass.", where)
            continue
        if _builtin_name(section) is None:  # the package's own five come from _builtins(), first
            plugins.append((where, section))
    found = _builtins()
    for where, section in plugins:
        problem = problem_with(section, found.values())
        if problem is not None:
            log.error("Skipped %s: %s.", where, problem)
            continue
        found[section.name] = section
    return found


def _builtins() -> dict[str, Section]:
    from .cohorts import CohortsSection
    from .comps import CompsSection
    from .propensity import PropensitySection
    from .props import PropsSection
    from .recs import RecsSection

    sections = (RecsSection(), PropsSection(), CohortsSection(), CompsSection(), PropensitySection())
    return {section.name: section for section in sections}


def controls_of(section: Section) -> tuple[Control, ...]:
    """``section.controls()``, or none (with one error line naming it) when a plugin's raises or gives non-Controls:
    the form and the completer must not break for every section because of one."""
    try:
        controls = tuple(section.controls())
        if all(isinstance(control, Control) for control in controls):
            return controls
        problem = "it returned something other than Controls"
    except Exception as error:  # a plugin's bug: named in one line, without its message or frames
        problem = f"it raised {type(error).__name__}"
    kind = type(section)
    log.error(
        "Left out the controls of the %s section (%s.%s): %s.",
        section.name,
        kind.__module__,
        kind.__qualname__,
        problem,
    )
    return ()


def section_is_builtin(section: Section) -> bool:
    """Whether ``section`` is one of the package's own five (whose errors are the package's, not a plugin's)."""
    return _builtin_name(section) is not None


def _builtin_name(section: Section) -> str | None:
    """The built-in name of one of the package's own section classes, or None for a plugin."""
    module = type(section).__module__
    if module.startswith(__package__ + ".") and getattr(section, "name", None) in BUILTIN_ORDER:
        return str(section.name)
    return None


def problem_with(section: Section, others: Iterable[Section]) -> str | None:
    """What makes ``section`` unusable next to ``others`` (its declarations, or clashes with theirs), or None.

    Every check reads the plugin's attributes inside a try: a property that raises is one more broken plugin.
    """
    try:
        return _problem(section, list(others))
    except Exception as error:  # whatever a plugin's properties raise
        return f"reading its declarations raised {type(error).__name__}"


def _problem(section: Section, others: list[Section]) -> str | None:
    name = getattr(section, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        return f"its name must be an identifier (a str), not {name!r}"
    keywords = getattr(section, "keywords", None)
    if not isinstance(keywords, tuple) or not keywords:
        return "its keywords must be a non-empty tuple of str"
    if not all(isinstance(keyword, str) and keyword.isidentifier() for keyword in keywords):
        return f"its keywords must be identifiers, not {keywords!r}"
    usage = getattr(section, "usage", None)
    if not isinstance(usage, tuple) or not all(isinstance(line, str) for line in usage):
        return "its usage must be a tuple of str (one help line each)"
    attributes = getattr(section, "attributes", ())
    if not isinstance(attributes, tuple) or not all(isinstance(item, str) for item in attributes):
        return "its attributes must be a tuple of str"
    request_type = getattr(section, "request_type", None)
    if not (isinstance(request_type, type) and dataclasses.is_dataclass(request_type)):
        return f"its request_type must be a dataclass, not {request_type!r}"
    request_type()  # "not asked" is the default request: it must exist
    hash(section)  # sections are dict keys (a @dataclass section without frozen=True is not hashable)
    for other in others:
        if other.name == name:
            return f"the name {name!r} is taken by {type(other).__name__}"
        taken = set(keywords) & set(other.keywords)
        if taken:
            return f"its keyword {sorted(taken)[0]!r} belongs to the {other.name} section"
        shared = set(attributes) & set(other.attributes)
        if shared:
            return f"its attribute {sorted(shared)[0]!r} belongs to the {other.name} section"
        arguments = set(section.arguments) & set(other.arguments)
        if arguments:
            return f"its lookup argument {sorted(arguments)[0]!r} belongs to the {other.name} section"
    return None


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
    """Add (or replace) a section for this process, as if an installed package declared its entry point.

    Raises ``ValueError`` naming what is wrong when its declarations are unusable or clash with another section's
    (a run-time section of the same name is replaced).
    """
    if not isinstance(section, Section):
        raise TypeError(f"expected a Section instance, got {type(section).__name__}")
    others = [other for name, other in available_sections().items() if name != getattr(section, "name", None)]
    if getattr(section, "name", None) in BUILTIN_ORDER:
        others.append(available_sections()[section.name])  # a built-in is not replaced at run time
    problem = problem_with(section, others)
    if problem is not None:
        raise ValueError(f"cannot register {type(section).__name__}: {problem}")
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

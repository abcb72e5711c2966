"""Tab completion for ``%ampprofile``, ``%%ampprofile`` and ``%ampprofile_form``: keywords, choices, variables.

IPython on its own offers nothing useful on these lines: magic names for ``rec``, nothing for ``pro`` or after
``--users``, builtins after ``recs=``. This matcher offers the grammar's keywords (from the installed section
plugins), the values of choice keywords (``rec_type=model``), and namespace variables after ``--users`` and
``--devices``. Inside ``{...}`` and after ``$`` it stays out of the way: IPython already completes names there.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping
from typing import Any

from IPython.core.completer import CompletionContext, SimpleCompletion, SimpleMatcherResult, context_matcher

__all__ = ["MATCHER_ID", "matcher_for"]

#: How IPython knows this matcher (``IPCompleter.suppress_competing_matchers`` and ``disable_matchers`` use it).
MATCHER_ID = "amp_profile_magic.ampprofile"

# The magic may be the value of an assignment (`res = %ampprofile ...`); %%ampprofile only starts a cell.
_LINE = re.compile(r"^\s*(?:[\w.]+\s*=\s*)?(?P<magic>%ampprofile_form|%ampprofile)\s(?P<rest>.*)$")
_CELL = re.compile(r"^(?P<magic>%%ampprofile)\s(?P<rest>.*)$")
_VARIABLE_OPTIONS = ("--users", "--devices")
_NAME_OPTIONS = ("-o", "--out")
#: The line magics that take --users/--devices VARIABLE (the form prefills from the same line).
_LINE_MAGICS = ("%ampprofile", "%ampprofile_form")
# How the local store answers, and the dry run (as in _grammar.FLAGS, not imported: completion stays light).
_FLAGS = ("--refresh", "--store-only", "--dry-run")


def matcher_for(shell: Any) -> Any:
    """An IPython (API v2) matcher for the magics' lines in ``shell``, for ``Completer.custom_matchers``."""

    def ampprofile_matcher(context: CompletionContext) -> SimpleMatcherResult:
        words = _magic_words(context)
        if words is None:
            return {"completions": []}
        magic, before, current = words
        completions = list(_complete(magic, before, current, shell.user_ns, set(shell.user_ns_hidden)))
        # Only when there is something to offer: an empty answer must leave IPython's own completions alone.
        return {"completions": completions, "matched_fragment": current, "suppress": bool(completions)}

    # Marks it as API v2 (it gets the whole context, not only the token) under a stable identifier.
    return context_matcher(identifier=MATCHER_ID)(ampprofile_matcher)


def _magic_words(context: CompletionContext) -> tuple[str, list[str], str] | None:
    """The magic, the words before the cursor's word, and the cursor's word; ``None`` off the magics' lines."""
    first_line = context.cursor_line == 0
    match = (_CELL.match(context.text_until_cursor) if first_line else None) or _LINE.match(context.text_until_cursor)
    if match is None:
        return None
    rest = match["rest"]
    current = "" if rest[-1:].isspace() else (rest.split() or [""])[-1]
    before = rest.split()
    if current:
        before = before[:-1]
    return match["magic"], before, current


def _complete(
    magic: str, before: list[str], current: str, namespace: Mapping[str, Any], hidden: set[str]
) -> Iterator[SimpleCompletion]:
    previous = before[-1] if before else ""
    if previous in _NAME_OPTIONS:
        return  # a new name: nothing to offer
    if previous in _VARIABLE_OPTIONS and magic in _LINE_MAGICS:
        if "." not in current and "[" not in current:  # attributes and subscripts: IPython's own completers
            yield from _variables(current, namespace, hidden)
        return
    if "{" in current or "$" in current:
        return  # IPython completes namespace names inside {...} and after $
    keyword, has_value, value = current.partition("=")
    if has_value:
        yield from _choices(keyword, value)
        return
    used = {word.partition("=")[0] for word in before}
    for candidate, kind in _keywords(magic):
        name = candidate.rstrip("=")
        if candidate.startswith(current) and (name not in used or name.startswith("-")):
            yield SimpleCompletion(candidate, type=kind)


def _keywords(magic: str) -> Iterator[tuple[str, str]]:
    """What may start a word on ``magic``'s line, as typed (``recs=``, ``props``), with its completion type."""
    from amp_profile_magic.sections import available_sections

    if magic != "%%ampprofile":  # the cell body names who
        yield from (("user=", "keyword"), ("device=", "keyword"))
    for section in available_sections().values():
        forms = [line.split()[0] for line in section.usage if line.split()]
        for keyword in section.keywords:
            bare = keyword in forms
            valued = any(form.startswith(f"{keyword}=") for form in forms) or not bare
            if bare:
                yield keyword, "keyword"
            if valued:
                yield f"{keyword}=", "keyword"
    if magic in _LINE_MAGICS:
        yield from ((option, "option") for option in _VARIABLE_OPTIONS)
    yield from ((option, "option") for option in _NAME_OPTIONS)
    yield from ((flag, "option") for flag in _FLAGS)


def _choices(keyword: str, value: str) -> Iterator[SimpleCompletion]:
    """``keyword=choice`` for a choice keyword's options starting with ``value`` (ids cannot be guessed)."""
    from amp_profile_magic.sections import available_sections
    from amp_profile_magic.sections._registry import controls_of

    for section in available_sections().values():
        for control in controls_of(section):
            if control.keyword == keyword and control.kind == "choice":
                for option in control.options:
                    if option and option.startswith(value):
                        yield SimpleCompletion(f"{keyword}={option}", type="value")


def _variables(prefix: str, namespace: Mapping[str, Any], hidden: set[str]) -> Iterator[SimpleCompletion]:
    """Namespace names that could hold ids: not private, hidden (In, Out, exit), modules, classes or callables."""
    for name, value in sorted(namespace.items()):
        if not name.startswith(prefix) or name.startswith("_") or name in hidden:
            continue
        if isinstance(value, types.ModuleType | type) or callable(value):
            continue
        yield SimpleCompletion(name, type="variable")

"""The ``%ampprofile`` grammar: words in (see :mod:`._words`), a validated invocation out, nothing sent.

Every problem raises :class:`GrammarError` (the magic turns it into IPython's ``UsageError``) naming the token.
Ids are sent exactly as written or as a variable holds them: nothing here strips, splits or re-reads an id.
"""

from __future__ import annotations

import difflib
import keyword
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from typing import Any, NamedTuple

from amp_profile_magic._exceptions import InvalidQuery, SectionFailed
from amp_profile_magic._query import ProfileQuery
from amp_profile_magic._words import (
    Evaluate,
    GrammarError,
    Word,
    article,
    exact_float_limit,
    expand,
    id_text,
    quote,
    split_words,
)
from amp_profile_magic.sections import Section, SectionUsageError, available_sections
from amp_profile_magic.sections._base import all_clean_ids

__all__ = ["GrammarError", "Identity", "Invocation", "parse_body", "parse_ids", "parse_line", "zip_identities"]

IDENTITY_KEYS = ("user", "device")
OPTIONS = ("-o", "--out", "--users", "--devices")
#: Options without a value: how the local store is used, and a dry run that sends nothing.
FLAGS = ("--refresh", "--store-only", "--dry-run")


class Identity(NamedTuple):
    """Who to look up: a user id, a device id, or both (a pair, so a batch's identities are built at C speed)."""

    user_id: str | None = None
    device_id: str | None = None


#: ``Identity._make`` without its Python frame: the tuple's own constructor, called from C once per id of a batch.
_identity = partial(tuple.__new__, Identity)


@dataclass(frozen=True, slots=True)
class Invocation:
    """A parsed ``%ampprofile`` line: which sections, for whom, and where to put the result.

    ``tokens`` are the words after expansion (``key=value``, a bare keyword, an option and its value).
    """

    sections: tuple[Section, ...]
    #: Each chosen section's validated request, in the sections' order.
    requests: tuple[tuple[Section, Any], ...]
    identity: Identity | None = None
    users_expr: str | None = None
    devices_expr: str | None = None
    out: str | None = None
    #: How the local store answers: "use" (fresh answers), "refresh" (ignore them) or "only" (send nothing).
    cache: str = "use"
    dry_run: bool = False
    #: Each section keyword given, and its value after expansion (``None`` for a bare keyword).
    keywords: Mapping[str, str | None] = field(default_factory=dict, repr=False)

    def query(self, identity: Identity) -> ProfileQuery:
        """The query for one identity; raises :class:`GrammarError` if the API would refuse it."""
        try:
            return ProfileQuery(user_id=identity.user_id, device_id=identity.device_id, requests=self.requests)
        except InvalidQuery as error:
            raise GrammarError(str(error)) from None

    def queries(self, identities: Iterable[Identity]) -> list[ProfileQuery]:
        """The query for each identity, in order; :class:`GrammarError` for the first the API would refuse."""
        try:
            return ProfileQuery.each(identities, requests=self.requests)
        except InvalidQuery as error:
            raise GrammarError(str(error)) from None


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(slots=True)
class _Tokens:
    identity: dict[str, str] = field(default_factory=dict)
    per_section: dict[str, dict[str, str | None]] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)


def _identity_value(key: str, value: Word | None, evaluate: Evaluate | None) -> str:
    """One user or device id, exactly as written or as the variable holds it."""
    if value is None or not value.pieces:
        raise GrammarError(f"{key}= needs an id, e.g. {key}=12345")
    expanded = expand(value, evaluate, label=f"{key}={value.source}")
    text = expanded.text
    if expanded.plain_has(","):
        # Most likely several users meant; an id that really holds a comma is written quoted (or in a variable).
        raise GrammarError(
            f"{key}={value.source}: one id per {key}= (several ids: --users VAR, or one per line in %%ampprofile); "
            f"if the comma is part of the id, quote it: {key}={quote(text)}"
        )
    if not text.strip():
        raise GrammarError(f"{key}={value.source}: the id is {'blank' if text else 'empty'}")
    return text


def _section_value(key: str, value: Word, evaluate: Evaluate | None) -> str:
    """A section keyword's value; refuses what the section's comma-separated reading would change."""
    expanded = expand(value, evaluate, label=f"{key}={value.source}")
    holder = expanded.holder(",")
    if holder is not None:
        # The API separates ids with commas, so an id holding one cannot be sent in a list.
        raise GrammarError(
            f"{key}={value.source}: {holder} holds a comma, which would split it into several ids; "
            "an id in a list cannot hold a comma"
        )
    text = expanded.text
    for part in text.split(","):
        if part.strip() and part != part.strip():
            raise GrammarError(
                f"{key}={value.source}: {part!r} starts or ends with a space, which {key}= would drop "
                "(ids are sent exactly)"
            )
    return text


def _python_source(value: Word) -> str:
    """An --users/--devices expression as typed; a wholly quoted one (``"df['a b']"``) loses its outer quotes."""
    if len(value.pieces) == 1 and value.pieces[0].kind == "quoted":
        return value.pieces[0].text
    return value.source


def _read_option(word: Word, rest: list[Word], found: _Tokens, evaluate: Evaluate | None) -> None:
    split = word.split_key()
    name, value = split if split is not None else (word.text, None)
    if name in FLAGS and word.is_plain:
        if split is not None:
            raise GrammarError(f"{name} takes no value")
        if name in found.flags:
            raise GrammarError(f"{name} given twice")
        found.flags.add(name)
        return
    if name not in OPTIONS or (split is None and not word.is_plain):
        raise GrammarError(f"unknown option {word.source!r}{_suggest(name, (*OPTIONS, *FLAGS))}")
    if value is None:
        if not rest:
            raise GrammarError(f"{name} needs a value, e.g. {name} NAME")
        value = rest.pop(0)
    if not value.source:
        raise GrammarError(f"{name} needs a value, e.g. {name} NAME")
    # --users/--devices take Python expressions: df['user_id'] must reach eval with its quotes.
    if name in ("--users", "--devices"):
        text = _python_source(value)
    else:
        text = expand(value, evaluate, label=f"{name} {value.source}").text
    canonical = "--out" if name == "-o" else name
    if canonical in found.options:
        raise GrammarError(f"{name} given twice")
    found.options[canonical] = text


def _unknown(
    word: Word, key: str, previous: tuple[str, str] | None, known: Iterable[str], sections: Iterable[str]
) -> GrammarError:
    if not key:
        return GrammarError(f"{word.source}: a keyword is missing before the =, e.g. user={word.source[1:]}")
    known = list(known)
    if key != key.lower() and key.lower() in known:
        return GrammarError(f"unknown keyword {key!r}; keywords are lower case: {key.lower()!r}")
    hint = _suggest(key, known)
    if not hint:
        hint = f" (sections: {', '.join(sections)})"
        if previous is not None and word.is_plain and "=" not in word.source:
            # `user=john smith`: the second word may have been meant as part of the first value.
            hint += f"; if it belongs to the value before it, quote both: {previous[0]}="
            hint += quote(previous[1] + " " + word.text)
    return GrammarError(f"unknown keyword {key!r}{hint}")


def _twice(key: str, value: Word | None, owner: Mapping[str, Section]) -> str:
    if key in IDENTITY_KEYS:
        return (
            f"{key}= given twice: one lookup per line; several ids go in --users/--devices VARIABLE or a "
            "%%ampprofile cell"
        )
    if value is not None and key in owner and owner[key].keywords[0] == key:
        return f"{key!r} given twice; give it once, with several ids separated by commas: {key}=a,b"
    return f"{key!r} given twice; give it once"


#: Names IPython runs every magic line through: a result bound to one of them would break all later cells.
_KERNEL_NAMES = frozenset({"get_ipython", "In", "Out", "exit", "quit"})
#: Names IPython's output and input history writes after every cell (plus ``_N`` and ``_iN``): bound to a
#: DataFrame, the next cell's result is written into it, or the displayhook fails.
_HISTORY_NAMES = frozenset({"_", "__", "___", "_i", "_ii", "_iii", "_ih", "_oh", "_dh", "_exit_code"})
_HISTORY_NUMBERED = re.compile(r"_i?[0-9]+")


def _read_tokens(words: list[Word], owner: Mapping[str, Section], *, cell: bool, evaluate: Evaluate | None) -> _Tokens:
    found = _Tokens()
    seen: set[str] = set()
    rest = list(words)
    previous: tuple[str, str] | None = None
    while rest:
        word = rest.pop(0)
        if word.pieces and word.pieces[0].kind == "plain" and word.pieces[0].text.startswith("-"):
            _read_option(word, rest, found, evaluate)
            previous = None
            continue
        split = word.split_key()
        if split is None and not word.is_plain:
            raise GrammarError(
                f"{word.source}: expected a keyword such as props or user=ID; quotes and variables go in values"
            )
        key, value = split if split is not None else (word.text, None)
        if key in seen:
            raise GrammarError(_twice(key, value, owner))
        seen.add(key)
        text: str | None
        if key in IDENTITY_KEYS:
            if cell:
                raise GrammarError(f"{word.source!r}: in %%ampprofile, put one id per line in the cell body")
            text = found.identity[key] = _identity_value(key, value, evaluate)
        elif key in owner:
            text = None if value is None else _section_value(key, value, evaluate)
            found.per_section.setdefault(owner[key].name, {})[key] = text
        else:
            sections = dict.fromkeys(section.keywords[0] for section in owner.values())
            raise _unknown(word, key, previous, (*IDENTITY_KEYS, *owner, *OPTIONS, *FLAGS), sections)
        previous = None if text is None or value is None or not value.is_plain else (key, text)
    return found


def _section_requests(
    sections: Mapping[str, Section], per_section: Mapping[str, Mapping[str, str | None]]
) -> tuple[tuple[Section, Any], ...]:
    """Each section's request for its tokens; the section is the only validator of them."""
    chosen = []
    for name, section in sections.items():
        if name not in per_section:
            continue
        if section.keywords[0] not in per_section[name]:
            first = next(iter(per_section[name]))
            raise GrammarError(f"{first} needs {section.keywords[0]}=… too")
        failure = None
        try:
            chosen.append((section, section.request(per_section[name])))
        except (SectionUsageError, InvalidQuery) as error:
            raise GrammarError(str(error)) from None
        except Exception as error:  # a plugin's bug: named in one line, without its message or frames
            failure = SectionFailed.of(section, "request", error)
        if failure is not None:
            raise GrammarError(f"{failure.message} {failure.hint}")
    if not chosen:
        what = ", ".join(section.keywords[0] for section in sections.values())
        raise GrammarError(f"nothing to fetch: add a section ({what})")
    return tuple(chosen)


def parse_line(line: str, *, cell: bool = False, evaluate: Evaluate | None = None) -> Invocation:
    """Parse a ``%ampprofile`` line (or a ``%%ampprofile`` header when ``cell``) without sending anything.

    ``evaluate`` looks ``{expr}`` and ``$name`` up in the user's namespace; without it any expansion is refused.
    """
    sections = available_sections()
    owner = {kw: section for section in sections.values() for kw in section.keywords}
    found = _read_tokens(split_words(line, comments=True), owner, cell=cell, evaluate=evaluate)
    requests = _section_requests(sections, found.per_section)
    out = found.options.get("--out")
    if out is not None and (not out.isidentifier() or keyword.iskeyword(out)):
        raise GrammarError(f"-o {out!r}: not a valid Python variable name")
    if out is not None:
        # Python reads identifiers NFKC-normalised: bound as typed, -o ｆｏｏ could never be read back as ｆｏｏ.
        out = unicodedata.normalize("NFKC", out)
    if out is not None and (out in _KERNEL_NAMES or (out.startswith("__") and out.endswith("__"))):
        # Bound over, these break the kernel itself: every later magic (get_ipython) or every builtin (__builtins__).
        raise GrammarError(f"-o {out!r}: the kernel needs that name; choose another")
    if out is not None and (out in _HISTORY_NAMES or _HISTORY_NUMBERED.fullmatch(out)):
        raise GrammarError(f"-o {out!r}: IPython keeps its input and output history in that name; choose another")
    users_expr, devices_expr = found.options.get("--users"), found.options.get("--devices")
    if cell and (users_expr or devices_expr):
        raise GrammarError("--users/--devices take ids from a variable; in %%ampprofile put ids in the cell body")
    if found.identity and (users_expr or devices_expr):
        raise GrammarError("give either user=/device= or --users/--devices, not both")
    if not cell and not found.identity and not (users_expr or devices_expr):
        raise GrammarError("who to look up? add user=ID, device=ID, or --users VARIABLE")
    if {"--refresh", "--store-only"} <= found.flags:
        raise GrammarError("--refresh fetches again and --store-only sends nothing: give one of them")
    cache = "refresh" if "--refresh" in found.flags else "only" if "--store-only" in found.flags else "use"
    identity = found.identity
    invocation = Invocation(
        sections=tuple(section for section, _ in requests),
        requests=requests,
        identity=Identity(identity.get("user"), identity.get("device")) if identity else None,
        users_expr=users_expr,
        devices_expr=devices_expr,
        out=out,
        cache=cache,
        dry_run="--dry-run" in found.flags,
        keywords={key: value for tokens in found.per_section.values() for key, value in tokens.items()},
    )
    if invocation.identity is not None:
        invocation.query(invocation.identity)  # the identity's own checks, before anything is sent
    return invocation


def _body_line(number: int, line: str) -> Identity | None:
    try:
        words = split_words(line, expand=False, comments=True)
    except GrammarError as error:
        raise GrammarError(f"line {number}: {error}") from None
    if not words:
        return None
    found: dict[str, str] = {}
    for word in words:
        split = word.split_key()
        key, value = split if split is not None else ("user", word)
        if split is None and key in found:
            first = words[0].split_key()
            head, *rest = words
            advice = "an id with spaces is quoted whole"
            if all(item.is_plain for item in words) and all(item.split_key() is None for item in rest):
                # `user=john smith` or `john smith`: the id with its spaces, quoted whole (a quote around "user="
                # would make it part of the id). Only for plain words: quoting quotes again would send garbage.
                texts = [first[1].text if first else head.text, *(item.text for item in rest)]
                advice += f": {first[0] + '=' if first else ''}{quote(' '.join(texts))}"
            raise GrammarError(f"line {number}: {word.source!r} is a second bare id; one lookup per line, and {advice}")
        if key not in IDENTITY_KEYS:
            raise GrammarError(
                f"line {number}: {word.source!r} is not user=ID, device=ID or a bare user id "
                "(quote an id that holds = or spaces)"
            )
        if key in found:
            raise GrammarError(f"line {number}: {key}= given twice (one lookup per line)")
        try:
            found[key] = _identity_value(key, value, None)
        except GrammarError as error:
            raise GrammarError(f"line {number}: {error}") from None
    return Identity(found.get("user"), found.get("device"))


def parse_body(body: str) -> list[Identity]:
    """Read a ``%%ampprofile`` body: per line, a bare user id, or ``user=ID`` and/or ``device=ID``.

    The line's quoting rules apply, without expansion (``$``, ``{`` and ``}`` must be quoted). Blank lines and
    ``#`` comments (a word starting with ``#``) are skipped.
    """
    # A byte-order mark opens text pasted from some files: never part of the first id (others are refused).
    identities = [
        identity
        for number, line in enumerate(body.removeprefix("\ufeff").splitlines(), start=1)
        if (identity := _body_line(number, line)) is not None
    ]
    if not identities:
        raise GrammarError("the cell body lists no ids: put one user id (or user=ID / device=ID) per line")
    return identities


def _as_id(name: str, index: int, value: object, float_limit: int | None = None) -> str:
    try:
        text = id_text(value, float_limit=float_limit)
    except ValueError as error:
        raise GrammarError(f"{name}: the id at position {index} {error}") from None
    if not text.strip():
        raise GrammarError(f"{name}: the id at position {index} is {'blank' if text else 'empty'} ({text!r})")
    return text


def parse_ids(name: str, values: object) -> list[str]:
    """Turn a namespace value (list, tuple, Series, Index, array, set, …) into ids, refusing anything ambiguous.

    Each id is sent exactly as it is held: str as is, integers (also numpy's and pandas' nullable ``Int64``) as
    digits, and whole floats below 2**53 (2**24 for float32) as their integer. A missing value is refused naming
    its position.
    """
    if isinstance(values, str | bytes):
        raise GrammarError(f"{name} is a string; --users/--devices want a list of ids, e.g. ['a', 'b']")
    if hasattr(values, "columns"):
        raise GrammarError(f"{name} is a DataFrame; pass one column, e.g. {name}['user_id']")
    if isinstance(values, Mapping):
        raise GrammarError(f"{name} is a mapping; pass a list of ids (e.g. list({name}))")
    if not isinstance(values, Iterable):
        raise GrammarError(f"{name} is {article(type(values).__name__)}, not a list of ids")
    try:
        ids = list(values)
    except Exception as error:  # the user's own iterable failing (a 0-d array, a generator that raises)
        message = " ".join(str(error).split())
        raise GrammarError(f"{name} could not be read as a list of ids: {type(error).__name__}: {message}") from None
    # A Series or Index of float32 yields Python floats already rounded: its dtype says where exactness ended.
    float_limit = exact_float_limit(getattr(values, "dtype", None))
    if not all_clean_ids(ids):
        # Any other list (a non-string, blank or unencodable id) is read one by one, to name the first bad one.
        ids = [_as_id(name, index, value, float_limit) for index, value in enumerate(ids)]
    if not ids:
        raise GrammarError(f"{name} is empty: nothing to look up")
    return ids


def zip_identities(users: Sequence[str] | None, devices: Sequence[str] | None) -> list[Identity]:
    """Pair ``--users`` and ``--devices`` ids position by position (they must be the same length)."""
    if users is not None and devices is not None:
        if len(users) != len(devices):
            raise GrammarError(f"--users has {len(users)} ids but --devices has {len(devices)}; they pair up")
        return list(map(_identity, zip(users, devices, strict=True)))
    if users is not None:
        return list(map(_identity, zip(users, repeat(None))))
    return list(map(_identity, zip(repeat(None), devices or ())))

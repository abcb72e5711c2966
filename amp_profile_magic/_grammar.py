"""The ``%ampprofile`` grammar: ``key=value`` tokens in, a validated invocation out, nothing sent.

Every problem raises :class:`GrammarError` (the magic turns it into IPython's ``UsageError``) naming the token.
"""

from __future__ import annotations

import difflib
import keyword
import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amp_profile_magic._exceptions import InvalidQuery
from amp_profile_magic._query import ProfileQuery
from amp_profile_magic.sections import Section, SectionUsageError, available_sections

__all__ = ["GrammarError", "Identity", "Invocation", "parse_body", "parse_ids", "parse_line"]

IDENTITY_KEYS = ("user", "device")
UNEXPANDED = re.compile(r"\$\w+|\{[^{}]*\}")
OPTIONS = ("-o", "--out", "--users", "--devices")


class GrammarError(ValueError):
    """A line or cell the grammar cannot accept; the message names the offending token."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who to look up: a user id, a device id, or both."""

    user_id: str | None = None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class Invocation:
    """A parsed ``%ampprofile`` line: which sections, for whom, and where to put the result."""

    sections: tuple[Section, ...]
    fields: Mapping[str, Any]
    identity: Identity | None = None
    users_expr: str | None = None
    devices_expr: str | None = None
    out: str | None = None
    tokens: tuple[str, ...] = field(default=(), repr=False)

    def query(self, identity: Identity) -> ProfileQuery:
        """The query for one identity; raises :class:`GrammarError` if the API would refuse it."""
        try:
            return ProfileQuery(user_id=identity.user_id, device_id=identity.device_id, **self.fields)
        except InvalidQuery as error:
            raise GrammarError(str(error)) from None


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError as error:
        raise GrammarError(f"cannot read the line: {error} (check the quotes)") from None


def _split_raw(line: str) -> list[tuple[str, str]]:
    """Split like :func:`_split`, pairing each token with its source text (quotes kept)."""
    # --users/--devices take Python expressions: df['user_id'] must reach eval with its quotes.
    chunks: list[str] = []
    current: list[str] = []
    quote = ""
    escaped = False
    for char in line:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char.isspace():
            if current:
                chunks.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        chunks.append("".join(current))
    return [(token, chunk) for chunk in chunks for token in _split(chunk)]


def _python_source(token: str, raw: str) -> str:
    """The expression as typed; a wholly quoted one (``"df['a b']"``) loses its outer quotes once."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" and raw[0] not in raw[1:-1]:
        return token
    return raw


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(slots=True)
class _Tokens:
    identity: dict[str, str] = field(default_factory=dict)
    per_section: dict[str, dict[str, str | None]] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)


def _read_option(token: str, raw: str, rest: list[tuple[str, str]], found: _Tokens) -> None:
    name, has_value, value = token.partition("=")
    raw_value = raw.partition("=")[2]
    if name not in OPTIONS:
        raise GrammarError(f"unknown option {token!r}{_suggest(name, OPTIONS)}")
    if not has_value:
        if not rest:
            raise GrammarError(f"{name} needs a value, e.g. {name} NAME")
        value, raw_value = rest.pop(0)
    if name in ("--users", "--devices"):
        value = _python_source(value, raw_value)
    canonical = "--out" if name == "-o" else name
    if canonical in found.options:
        raise GrammarError(f"{name} given twice")
    found.options[canonical] = value


def _read_tokens(tokens: list[tuple[str, str]], owner: Mapping[str, Section], *, cell: bool) -> _Tokens:
    found = _Tokens()
    seen: set[str] = set()
    rest = list(tokens)
    while rest:
        token, raw = rest.pop(0)
        if token.startswith("-"):
            _read_option(token, raw, rest, found)
            continue
        key, has_value, value = token.partition("=")
        if key in seen:
            raise GrammarError(f"{key!r} given twice; list several ids with commas: {key}=a,b")
        seen.add(key)
        if key in IDENTITY_KEYS:
            if cell:
                raise GrammarError(f"{token!r}: in %%ampprofile, put one id per line in the cell body")
            if not has_value or not value.strip():
                raise GrammarError(f"{key}= needs an id, e.g. {key}=12345")
            if UNEXPANDED.fullmatch(value.strip()):
                # IPython leaves $name / {name} as typed when the name is not defined: never send that as an id.
                raise GrammarError(f"{token}: no such variable in the namespace")
            found.identity[key] = value.strip()
        elif key in owner:
            found.per_section.setdefault(owner[key].name, {})[key] = value if has_value else None
        else:
            raise GrammarError(f"unknown keyword {key!r}{_suggest(key, (*IDENTITY_KEYS, *owner, *OPTIONS))}")
    return found


def _section_fields(
    sections: Mapping[str, Section], per_section: Mapping[str, Mapping[str, str | None]]
) -> tuple[tuple[Section, ...], dict[str, Any]]:
    chosen = []
    fields: dict[str, Any] = {}
    for name, section in sections.items():
        if name not in per_section:
            continue
        if section.keywords[0] not in per_section[name]:
            first = next(iter(per_section[name]))
            raise GrammarError(f"{first} needs {section.keywords[0]}=… too")
        try:
            section_fields = section.query_fields(per_section[name])
        except SectionUsageError as error:
            raise GrammarError(str(error)) from None
        extra = section_fields.pop("extra_params", ())
        fields["extra_params"] = (*fields.get("extra_params", ()), *extra)
        fields.update(section_fields)
        chosen.append(section)
    if not chosen:
        what = ", ".join(section.keywords[0] for section in sections.values())
        raise GrammarError(f"nothing to fetch: add a section ({what})")
    return tuple(chosen), fields


def parse_line(line: str, *, cell: bool = False) -> Invocation:
    """Parse a ``%ampprofile`` line (or a ``%%ampprofile`` header when ``cell``) without sending anything."""
    sections = available_sections()
    owner = {kw: section for section in sections.values() for kw in section.keywords}
    pairs = _split_raw(line)
    found = _read_tokens(pairs, owner, cell=cell)
    chosen, fields = _section_fields(sections, found.per_section)
    out = found.options.get("--out")
    if out is not None and (not out.isidentifier() or keyword.iskeyword(out)):
        raise GrammarError(f"-o {out!r}: not a valid Python variable name")
    users_expr, devices_expr = found.options.get("--users"), found.options.get("--devices")
    if cell and (users_expr or devices_expr):
        raise GrammarError("--users/--devices take ids from a variable; in %%ampprofile put ids in the cell body")
    if found.identity and (users_expr or devices_expr):
        raise GrammarError("give either user=/device= or --users/--devices, not both")
    if not cell and not found.identity and not (users_expr or devices_expr):
        raise GrammarError("who to look up? add user=ID, device=ID, or --users VARIABLE")
    identity = found.identity
    invocation = Invocation(
        sections=chosen,
        fields=fields,
        identity=Identity(identity.get("user"), identity.get("device")) if identity else None,
        users_expr=users_expr,
        devices_expr=devices_expr,
        out=out,
        tokens=tuple(token for token, _raw in pairs),
    )
    # Validate now, before anything is sent: the identity if given, else the section fields alone.
    invocation.query(invocation.identity or Identity(user_id="x"))
    return invocation


def parse_body(body: str) -> list[Identity]:
    """Read a ``%%ampprofile`` body: one ``user=ID``, ``device=ID`` (or both) or bare user id per line.

    Blank lines and ``#`` comments are skipped.
    """
    identities = []
    for number, raw in enumerate(body.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            identities.append(Identity(user_id=line))
            continue
        found: dict[str, str] = {}
        for token in _split(line):
            key, has_value, value = token.partition("=")
            if key not in IDENTITY_KEYS or not has_value:
                raise GrammarError(f"line {number}: {token!r} is not user=ID, device=ID or a bare user id")
            if not value.strip():
                raise GrammarError(f"line {number}: {key}= needs an id")
            if key in found:
                raise GrammarError(f"line {number}: {key}= given twice")
            found[key] = value.strip()
        identities.append(Identity(found.get("user"), found.get("device")))
    if not identities:
        raise GrammarError("the cell body lists no ids: put one user id (or user=ID / device=ID) per line")
    return identities


def _as_id(name: str, index: int, value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise GrammarError(f"{name}[{index}] is missing (None/NaN): drop or fill missing ids first")
    if isinstance(value, float) and value.is_integer():
        # A numeric id column that pandas made float (because of NaNs elsewhere) still means the integer.
        return str(int(value))
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).strip()
        if text:
            return text
    raise GrammarError(f"{name}[{index}] = {value!r} is not a usable id")


def parse_ids(name: str, values: object) -> list[str]:
    """Turn a namespace value (list, tuple, Series, Index, array, set, …) into ids, refusing anything ambiguous."""
    if isinstance(values, str | bytes):
        raise GrammarError(f"{name} is a string; --users/--devices want a list of ids, e.g. ['a', 'b']")
    if hasattr(values, "columns"):
        raise GrammarError(f"{name} is a DataFrame; pass one column, e.g. {name}['user_id']")
    if isinstance(values, Mapping):
        raise GrammarError(f"{name} is a mapping; pass a list of ids (e.g. list({name}))")
    if not isinstance(values, Iterable):
        raise GrammarError(f"{name} is a {type(values).__name__}, not a list of ids")
    ids = [_as_id(name, index, value) for index, value in enumerate(values)]
    if not ids:
        raise GrammarError(f"{name} is empty: nothing to look up")
    return ids


def zip_identities(users: Sequence[str] | None, devices: Sequence[str] | None) -> list[Identity]:
    """Pair ``--users`` and ``--devices`` ids position by position (they must be the same length)."""
    if users is not None and devices is not None:
        if len(users) != len(devices):
            raise GrammarError(f"--users has {len(users)} ids but --devices has {len(devices)}; they pair up")
        return [Identity(user, device) for user, device in zip(users, devices, strict=True)]
    if users is not None:
        return [Identity(user_id=user) for user in users]
    return [Identity(device_id=device) for device in devices or ()]

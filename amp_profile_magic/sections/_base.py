"""What a section plugin is: its keywords and their validation, its request, its slice of a response, its frame.

A section declares everything the core needs about it, so the core (grammar, query, planning, client, models,
form, magics) names none:

- ``keywords`` and ``usage`` (help lines), and :meth:`Section.request`, the only validator of its tokens;
- ``request_type``, a frozen dataclass whose fields are the section's keyword arguments of
  ``ProfileClient.lookup(...)`` and whose construction validates them (a request equal to ``request_type()`` is
  "not asked");
- :meth:`Section.params`, the query parameters its request adds, and ``reads``, the ``userData`` fields its slice
  is read from (two sections reading a common field never share a request);
- :meth:`Section.read`, its slice of a response as ``attributes`` of the profile (:meth:`Section.read_many`, for
  many responses, may do it faster), and :meth:`Section.frame`, rows;
- :meth:`Section.controls`, its form controls.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from amp_profile_magic._exceptions import InvalidQuery
from amp_profile_magic._models import declare_attributes

if TYPE_CHECKING:
    import pandas as pd

    from amp_profile_magic._models import Profile, Reader

__all__ = [
    "Control",
    "Params",
    "Section",
    "SectionUsageError",
    "clean_id",
    "clean_ids",
    "identity_columns",
    "split_ids",
]

#: A request's query parameters, as ordered pairs.
Params = tuple[tuple[str, str], ...]

#: Parameters that hold one id: a comma in them is part of the id, not a separator.
SINGLE_ID_PARAMETERS = ("user_id", "device_id")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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
    """A part of a profile that ``%ampprofile`` and ``ProfileClient.lookup`` can ask for (see the module's doc).

    Register one under the entry-point group ``amp_profile_magic.sections`` (or with
    :func:`amp_profile_magic.sections.register`).
    """

    #: The result key and the section's name in help, panels and the form.
    name: ClassVar[str]
    #: The grammar keywords this section owns; the first one switches the section on.
    keywords: ClassVar[tuple[str, ...]]
    #: Help lines (``keyword=…   what it does``), shown by ``%ampprofile?``, ``--sections`` and the README.
    usage: ClassVar[tuple[str, ...]]
    #: The ``userData`` fields this section's slice is read from.
    reads: ClassVar[tuple[str, ...]] = ()
    #: The profile attributes :meth:`read` fills; None on a profile whose lookup did not ask for this section.
    attributes: ClassVar[tuple[str, ...]] = ()
    #: A frozen dataclass: its fields are this section's keyword arguments of ``ProfileClient.lookup``, its
    #: construction validates them (raising :class:`~amp_profile_magic.InvalidQuery`), and its default is "not asked".
    request_type: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare_attributes(cls.attributes)

    @property
    def arguments(self) -> tuple[str, ...]:
        """The keyword arguments of ``ProfileClient.lookup(...)`` this section takes: its request's fields."""
        return tuple(field.name for field in dataclasses.fields(self.request_type))

    def asked(self, request: Any) -> bool:
        """Whether ``request`` asks for anything: it differs from the default request."""
        return bool(request != self.request_type())

    @abstractmethod
    def request(self, tokens: Mapping[str, str | None]) -> Any:
        """This section's request for its tokens (keyword → value, ``None`` for a bare keyword).

        Raise :class:`SectionUsageError` naming the token when a value is unusable (the request type's own
        validation raises :class:`~amp_profile_magic.InvalidQuery`).
        """

    @abstractmethod
    def params(self, request: Any) -> Params:
        """The query parameters ``request`` adds to the request that carries this section."""

    @abstractmethod
    def read(self, data: Mapping[str, Any], request: Any, reader: Reader) -> dict[str, Any]:
        """This section's slice of one response's ``userData``, validated with ``reader``: attribute → value.

        A new dict each call: the profile keeps it as its own.
        """

    def read_many(self, datas: Sequence[Mapping[str, Any]], request: Any, reader: Reader) -> list[dict[str, Any]]:
        """:meth:`read` for many responses at once (a cached re-run's), raising what it raises for the first bad one.

        Override it only to read faster: it must equal ``[self.read(data, request, reader) for data in datas]``.
        """
        return [self.read(data, request, reader) for data in datas]

    @abstractmethod
    def frame(self, profiles: Sequence[Profile]) -> pd.DataFrame:
        """Build this section's DataFrame from successful profiles; ``user_id``/``device_id`` are always columns."""

    def controls(self) -> tuple[Control, ...]:
        """The form controls for this section; none by default, so a section without them is magic-only."""
        return ()

    def __repr__(self) -> str:
        return f"<section {self.name}>"


def clean_id(parameter: str, value: object) -> str:
    """The id exactly as given (never stripped or re-read), or :class:`InvalidQuery` saying why it cannot be sent."""
    if isinstance(value, bool) or not isinstance(value, str | numbers.Integral):
        raise InvalidQuery(parameter, f"expected a string id, got {type(value).__name__}")
    try:
        text = str(value) if isinstance(value, str) else str(int(value))
    except ValueError:  # past Python's limit on printing integers (4,300 digits): no id is that long
        raise InvalidQuery(parameter, "an integer id too long to print") from None
    if not text.strip():
        raise InvalidQuery(parameter, f"{'blank' if text else 'empty'} id")
    if "," in text and parameter not in SINGLE_ID_PARAMETERS:
        raise InvalidQuery(parameter, f"{text!r} contains a comma, which the API uses to separate ids")
    if LONE_SURROGATE.search(text):
        # A lone surrogate (e.g. from a mis-decoded file) has no UTF-8 form, so it cannot go into a URL.
        raise InvalidQuery(parameter, f"{text!r} is not valid Unicode text (it holds a lone surrogate)")
    return text


def all_clean_ids(values: Sequence[object]) -> bool:
    """Whether :func:`clean_id` returns every one of ``values`` unchanged as a ``user_id`` or ``device_id``.

    Built-in functions mapped over the ids and one scan of them joined, instead of a Python call per id: a
    100,000-user batch is checked in milliseconds. False only means "check them one by one", which names the first
    bad id.
    """
    if not values:
        return True
    if set(map(type, values)) != {str}:
        return False
    texts: Sequence[str] = values  # type: ignore[assignment]  # every one a str, checked above
    if "" in texts or any(map(str.isspace, texts)):
        return False
    return LONE_SURROGATE.search("".join(texts)) is None


def clean_ids(parameter: str, values: Iterable[object] | None) -> tuple[str, ...]:
    """A list of ids (or a comma-separated string) as a tuple of clean ids, duplicates dropped."""
    if values is None:
        return ()
    if isinstance(values, str):
        # A comma-separated string is list syntax ("a, b"): the spaces after its commas are not part of the ids.
        values = [part.strip() for part in values.split(",")]
    elif isinstance(values, bytes) or not isinstance(values, Iterable):
        kind = type(values).__name__
        raise InvalidQuery(parameter, f"expected a list of ids or a comma-separated string, not {kind}")
    cleaned = tuple(clean_id(parameter, value) for value in values)
    # The API answers each id once; asking twice would only duplicate rows.
    return tuple(dict.fromkeys(cleaned))


def check_flag(name: str, value: object) -> None:
    """Refuse a flag that is not a real boolean: a string like "false" is truthy."""
    if not isinstance(value, bool):
        raise InvalidQuery(name, f"expected True or False, got {type(value).__name__}")


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

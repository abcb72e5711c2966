"""What one lookup asks for (an identity and each section's validated request), the requests that sends, and the
profile its responses make.

A query is planned from what its sections declare, and names none of them. Sections share a request unless they
read a common ``userData`` field: the API answers such a request with one merged value that cannot be split back,
so the later of two such sections (in the installed sections' order) goes in a request of its own. A section that
may be split off that way is planned last even when it is not, so the other sections' parameters keep their
order whether or not it is asked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice, repeat
from operator import attrgetter, is_, itemgetter
from typing import TYPE_CHECKING, Any

from ._exceptions import InvalidQuery, MalformedResponse, SectionFailed
from ._models import Profile, Reader
from .sections import Section, available_sections
from .sections._base import Params, all_clean_ids, clean_id
from .sections._registry import section_is_builtin

if TYPE_CHECKING:
    from ._secret import Secret

__all__ = ["ProfileQuery", "profile_from_responses", "profiles_from_bodies", "profiles_from_responses"]

#: Each section's requests by their requests, planned once: a batch's queries differ only in their identity.
_PLANS: dict[tuple[tuple[Section, Any], ...], tuple[tuple[Params, tuple[int, ...]], ...]] = {}
#: The installed sections (``available_sections()``) the plans were made for.
_planned_for: object = None


def _plan(asked: tuple[tuple[Section, Any], ...]) -> tuple[tuple[Params, tuple[int, ...]], ...]:
    """Per request: the section parameters it carries, and the indexes (into ``asked``) of the sections it answers."""
    global _planned_for
    installed = available_sections()
    if _planned_for is not installed or len(_PLANS) > 256:  # other sections since; or many lines planned
        _PLANS.clear()
        _planned_for = installed
    plan = _PLANS.get(asked)
    if plan is not None:
        return plan
    # A section reading a field that an earlier installed section reads too is planned after every other one.
    earlier: dict[Section, set[str]] = {}
    seen: set[str] = set()
    for section in installed.values():
        earlier[section] = set(seen)
        seen.update(section.reads)
    later = {index for index, (section, _) in enumerate(asked) if earlier.get(section, seen) & set(section.reads)}
    order = [index for index in range(len(asked)) if index not in later] + sorted(later)
    groups: list[tuple[set[str], list[int]]] = []
    for index in order:
        reads = set(asked[index][0].reads)
        group = next((group for group in groups if not group[0] & reads), None)
        if group is None:
            group = (set(), [])
            groups.append(group)
        group[0].update(reads)
        group[1].append(index)
    plan = tuple(
        (tuple(pair for index in members for pair in _params(*asked[index])), tuple(members)) for _, members in groups
    ) or (((), ()),)
    _PLANS[asked] = plan
    return plan


def _params(section: Section, request: Any) -> Params:
    """``section.params(request)``, checked: a plugin's error or odd pairs fail as SectionFailed, naming it."""
    failure: SectionFailed | None = None
    try:
        pairs = tuple(section.params(request))
        if all(type(pair) is tuple and len(pair) == 2 and type(pair[0]) is type(pair[1]) is str for pair in pairs):
            return pairs
        failure = SectionFailed.of(section, "params", TypeError())
    except Exception as error:  # a plugin's bug: named in one line, without its message or frames
        failure = SectionFailed.of(section, "params", error)
    raise failure


class ProfileQuery:
    """One user's (or device's) lookup: who, and each asked section's validated request. Hashable and immutable.

    ``ProfileQuery(user_id="12345", rec_ids=["a"], props=True)`` routes each keyword to the section that declares
    it (its request type's field) and validates it there; :class:`InvalidQuery` names a bad parameter and nothing
    is sent. ``requests=`` passes requests already built (``{section: request}``, as the grammar does). A keyword
    of a section reads back as an attribute (``query.rec_ids``), its default when the section was not asked.
    """

    __slots__ = ("_hash", "_plan", "_sections", "device_id", "user_id")

    user_id: str | None
    device_id: str | None
    _sections: tuple[tuple[Section, Any], ...]
    _plan: tuple[tuple[Params, tuple[int, ...]], ...]
    _hash: int

    def __init__(
        self,
        *,
        user_id: object = None,
        device_id: object = None,
        requests: Mapping[Section, Any] | Iterable[tuple[Section, Any]] = (),
        **arguments: Any,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "user_id", None if user_id is None else clean_id("user_id", user_id))
        set_(self, "device_id", None if device_id is None else clean_id("device_id", device_id))
        if self.user_id is None and self.device_id is None:
            raise InvalidQuery("user_id", "give a user_id or a device_id (or both)")
        given = dict(requests.items() if isinstance(requests, Mapping) else requests)
        known = available_sections().values()
        if arguments:
            for section in known:
                mine = {name: arguments.pop(name) for name in section.arguments if name in arguments}
                if mine:
                    given[section] = section.request_type(**mine)
            if arguments:
                raise TypeError(f"ProfileQuery got unexpected keyword argument {next(iter(arguments))!r}")
        # In the sections' order whichever way they were given, so equal lookups are equal queries.
        ordered = [section for section in known if section in given]
        ordered += [section for section in given if section not in ordered]
        asked = tuple((section, given[section]) for section in ordered if section.asked(given[section]))
        set_(self, "_sections", asked)
        set_(self, "_plan", _plan(asked))
        set_(self, "_hash", hash((self.user_id, self.device_id, hash(asked))))

    @classmethod
    def each(
        cls,
        identities: Iterable[tuple[object, object]],
        *,
        requests: Mapping[Section, Any] | Iterable[tuple[Section, Any]] = (),
    ) -> list[ProfileQuery]:
        """One query per ``(user_id, device_id)``, all asking ``requests``: what a batch of one cell builds.

        Equal to ``ProfileQuery(user_id=..., device_id=..., requests=requests)`` for each identity, and raises what
        that raises for the first bad one; but the sections are ordered, checked and planned once instead of per
        user, which was most of the time a cached 100,000-user re-run took.
        """
        pairs = identities if isinstance(identities, list) else list(identities)
        if not pairs:
            return []
        first = cls(user_id=pairs[0][0], device_id=pairs[0][1], requests=requests)
        asked, plan, asked_hash = first._sections, first._plan, hash(first._sections)
        users, devices = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
        # The common batch, every id a clean string in one column and None in the other, is checked in one scan
        # per column; any other is checked id by id, which names the first bad one.
        fast = (devices.count(None) == len(devices) and all_clean_ids(users)) or (
            users.count(None) == len(users) and all_clean_ids(devices)
        )
        rest = len(pairs) - 1
        if fast:
            users, devices = users[1:], devices[1:]
        else:
            # In order, user then device of each identity, as one ProfileQuery(...) after another would check them.
            checked = list(map(_checked_identity, islice(users, 1, None), islice(devices, 1, None)))
            users, devices = [pair[0] for pair in checked], [pair[1] for pair in checked]
        # Each slot filled by its descriptor mapped from C over the whole batch, not five calls per query.
        queries = list(map(object.__new__, repeat(cls, rest)))
        slots = vars(ProfileQuery)
        for name, values in (
            ("user_id", users),
            ("device_id", devices),
            ("_sections", repeat(asked, rest)),
            ("_plan", repeat(plan, rest)),
            ("_hash", map(hash, zip(users, devices, repeat(asked_hash)))),
        ):
            deque(map(slots[name].__set__, queries, values), maxlen=0)
        queries.insert(0, first)
        return queries

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ProfileQuery is immutable: cannot set {name!r}")

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_"):
            for section in available_sections().values():
                if name in section.arguments:
                    request = self.request(section)
                    return getattr(request if request is not None else section.request_type(), name)
        raise AttributeError(f"'ProfileQuery' object has no attribute {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProfileQuery):
            return NotImplemented
        return (self.user_id, self.device_id, self._sections) == (other.user_id, other.device_id, other._sections)

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.user_id, self.device_id, self._sections))

    def __repr__(self) -> str:
        # Also for a query whose construction failed half-way (a traceback shown with its locals).
        get = object.__getattribute__
        try:
            user_id, device_id, sections = get(self, "user_id"), get(self, "device_id"), get(self, "_sections")
        except AttributeError:
            return "<ProfileQuery, invalid>"
        asked = "".join(f", {section.name}={request!r}" for section, request in sections)
        return f"ProfileQuery(user_id={user_id!r}, device_id={device_id!r}{asked})"

    @property
    def sections(self) -> tuple[Section, ...]:
        """The sections this query asks for."""
        return tuple(section for section, _ in self._sections)

    def request(self, section: Section) -> Any:
        """``section``'s validated request in this query, or None when it is not asked."""
        return next((request for asked, request in self._sections if asked is section), None)

    @property
    def requests(self) -> tuple[Params, ...]:
        """The query strings (as ordered pairs) this lookup sends, in order (see the module's doc)."""
        identity: Params = ()
        if self.user_id is not None:
            identity += (("user_id", self.user_id),)
        if self.device_id is not None:
            identity += (("device_id", self.device_id),)
        return tuple(identity + params for params, _ in self._plan)

    def describe(self) -> str:
        """Name the looked-up identity the way error messages and failure tables do."""
        parts = []
        if self.user_id is not None:
            parts.append(f"user {self.user_id}")
        if self.device_id is not None:
            parts.append(f"device {self.device_id}")
        return ", ".join(parts)


#: The reader for answers read without a key to mask (the local store's, already redacted): it holds no state.
_PLAIN = Reader(None)


def _checked_identity(user_id: object, device_id: object) -> tuple[str | None, str | None]:
    user = None if user_id is None else clean_id("user_id", user_id)
    device = None if device_id is None else clean_id("device_id", device_id)
    if user is None and device is None:
        raise InvalidQuery("user_id", "give a user_id or a device_id (or both)")
    return user, device


def _rebuild(user_id: str | None, device_id: str | None, sections: tuple[tuple[Section, Any], ...]) -> ProfileQuery:
    # Unpickled (or deep-copied), the sections are copies: queries compare and read their sections by identity,
    # so each is taken back to the installed section of its name (a copy was never equal to its original).
    installed = available_sections()
    return ProfileQuery(
        user_id=user_id,
        device_id=device_id,
        requests=[(installed.get(section.name, section), request) for section, request in sections],
    )


def profile_from_responses(query: ProfileQuery, payloads: Sequence[object], *, secret: Secret | None = None) -> Profile:
    """Build a :class:`Profile` from the JSON bodies of ``query.requests``, in the same order.

    Each asked section reads its slice from the body of the request that carried it. Raises
    :class:`MalformedResponse`, whose ``field`` names the offending value, when a body does not have the
    documented shape; ``secret`` is masked in its message.
    """
    reader = Reader(secret) if secret is not None else _PLAIN
    plan, asked = query._plan, query._sections
    if len(payloads) != len(plan):
        raise ValueError(f"{len(payloads)} responses for {len(plan)} requests")
    # One request (most lookups) makes a one-tuple: no list per profile.
    datas = (reader.user_data(payloads[0]),) if len(payloads) == 1 else [reader.user_data(p) for p in payloads]
    main = datas[0]
    # The response's ids win; the query's fill in the ones it leaves out (null, absent or empty).
    user_id = reader.optional_identifier(main.get("user_id"), "user_id") or query.user_id
    device_id = reader.optional_identifier(main.get("device_id"), "device_id") or query.device_id
    slices: dict[str, Any] = {}
    for (_, members), data in zip(plan, datas, strict=True):
        for index in members:
            section, request = asked[index]
            slices.update(_read(section, data, request, reader))
    return Profile._of(user_id, device_id, main, slices)


def _read(section: Section, data: Mapping[str, Any], request: Any, reader: Reader) -> dict[str, Any]:
    """``section.read``: a plugin's error beyond an unreadable shape fails its user as SectionFailed, naming it."""
    failure: SectionFailed | None = None
    try:
        slice_ = section.read(data, request, reader)
        if type(slice_) is dict:
            return slice_
        failure = SectionFailed.of(section, "read", TypeError())
    except MalformedResponse:
        raise
    except _UNREADABLE as error:
        if section_is_builtin(section):
            raise  # an answer of a shape the validation did not foresee: malformed (see the client's _validated)
        failure = SectionFailed.of(section, "read", error)
    except Exception as error:  # a plugin's bug: named in one line, without its message or frames
        failure = SectionFailed.of(section, "read", error)
    raise failure


def profiles_from_responses(
    queries: Sequence[ProfileQuery], payloads: Sequence[Sequence[object]]
) -> list[Profile | None]:
    """:func:`profile_from_responses` for many queries (``payloads[i]`` answers ``queries[i]``), None where it raises.

    A cached re-run's 100,000 stored answers: queries that ask the same sections in one request each (a cell's)
    are read a section at a time over all their bodies (:meth:`Section.read_many`), so per user there is only the
    profile to make. Any body that does not read cleanly that way sends its group back to one query at a time,
    which fails only the users whose bodies are wrong.
    """
    profiles: list[Profile | None] = []
    start = 0
    while start < len(queries):
        first = queries[start]
        end = start + 1
        while end < len(queries) and queries[end]._sections is first._sections:
            end += 1
        group, bodies = queries[start:end], payloads[start:end]
        built = None
        if len(first._plan) == 1 and set(map(len, bodies)) == {1}:
            built = _read_group(group, list(map(itemgetter(0), bodies)))
        profiles.extend(built if built is not None else map(_one_or_none, group, bodies))
        start = end
    return profiles


def profiles_from_bodies(queries: Sequence[ProfileQuery], bodies: Sequence[object]) -> Sequence[Profile | None]:
    """:func:`profiles_from_responses` for queries of one request each: ``bodies[i]`` answers ``queries[i]``."""
    if queries and len(queries[0]._plan) == 1:
        sections = queries[0]._sections
        if all(map(is_, map(_sections_of, queries), repeat(sections))):  # one cell's queries
            built = _read_group(queries, bodies)
            return built if built is not None else list(map(_one_or_none, queries, zip(bodies)))
    return profiles_from_responses(queries, list(zip(bodies)))


_sections_of = attrgetter("_sections")
_user_of, _device_of = attrgetter("user_id"), attrgetter("device_id")
_TEXT_OR_NONE = frozenset({str, type(None)})
#: ``dict.get`` as a plain two-argument callable for map(), raising TypeError for anything but a dict.
_get: Callable[[Any, str], Any] = dict.get


def _filled(ids: list[Any], queries: Sequence[ProfileQuery], own: attrgetter[Any]) -> list[Any]:
    """``ids[i] or own(queries[i])`` for each user, in C for the common cases: every id given, or none."""
    if all(ids):
        return ids
    if ids.count(None) == len(ids):
        return list(map(own, queries))
    return [given or own(query) for given, query in zip(ids, queries, strict=True)]


#: What reading a body into a profile can raise for a body of an unexpected shape: that user is read again (or
#: fetched again), never the batch failed.
_UNREADABLE = (MalformedResponse, ArithmeticError, LookupError, RecursionError, TypeError, ValueError)


def _one_or_none(query: ProfileQuery, payloads: Sequence[object]) -> Profile | None:
    try:
        return profile_from_responses(query, payloads)
    except (*_UNREADABLE, SectionFailed):
        return None


def _read_group(queries: Sequence[ProfileQuery], bodies: Sequence[object]) -> list[Profile] | None:
    """The profiles of queries sharing one single-request plan (``bodies[i]`` answers ``queries[i]``), read in
    bulk; None when a body needs reading one by one.

    Each check is one pass in C (map, set, all) over all the users: a Python loop making the same checks user by
    user was a tenth of a cached 100,000-user re-run.
    """
    if len(bodies) != len(queries):
        return None
    try:
        # dict.get unbound raises TypeError for anything but a dict, so each map checks what it reads as well: a
        # body, then its userData, that is not an object.
        datas: list[Any] = list(map(_get, bodies, repeat("userData")))
        users: list[Any] = list(map(_get, datas, repeat("user_id")))
        devices: list[Any] = list(map(_get, datas, repeat("device_id")))
    except TypeError:
        return None
    # Ids that are text or absent read as they are; an integer id (turned into text) goes the careful way.
    if not set(map(type, users)) <= _TEXT_OR_NONE or not set(map(type, devices)) <= _TEXT_OR_NONE:
        return None
    # The response's ids win; the query's fill in the ones it leaves out (null, absent or empty).
    users = _filled(users, queries, _user_of)
    devices = _filled(devices, queries, _device_of)
    try:
        columns = [section.read_many(datas, request, _PLAIN) for section, request in queries[0]._sections]
        if len(columns) == 1:
            slices = columns[0]
        else:
            slices = [
                {key: value for part in parts for key, value in part.items()} for parts in zip(*columns, strict=True)
            ]
        # Inside the try too: a plugin's read_many of the wrong length, or not giving dicts, is read one by one.
        return Profile._many(users, devices, datas, slices)
    except Exception:  # read one by one, which fails only the users whose bodies (or whose plugin) fail
        return None

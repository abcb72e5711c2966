"""What one lookup asks for (an identity and each section's validated request), the requests that sends, and the
profile its responses make.

A query is planned from what its sections declare, and names none of them. Sections share a request unless they
read a common ``userData`` field: the API answers such a request with one merged value that cannot be split back,
so the later of two such sections (in the installed sections' order) goes in a request of its own. A section that
may be split off that way is planned last even when it is not, so the other sections' parameters keep their
order whether or not it is asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from ._exceptions import InvalidQuery
from ._models import Profile, Reader
from .sections import Section, available_sections
from .sections._base import Params, all_clean_ids, clean_id

if TYPE_CHECKING:
    from ._secret import Secret

__all__ = ["ProfileQuery", "profile_from_responses"]

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
        (tuple(pair for index in members for pair in asked[index][0].params(asked[index][1])), tuple(members))
        for _, members in groups
    ) or (((), ()),)
    _PLANS[asked] = plan
    return plan


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
        new, set_ = object.__new__, object.__setattr__
        queries = [first]
        for user_id, device_id in islice(zip(users, devices, strict=True), 1, None):
            if fast:
                user, device = user_id, device_id
            else:
                user = None if user_id is None else clean_id("user_id", user_id)
                device = None if device_id is None else clean_id("device_id", device_id)
                if user is None and device is None:
                    raise InvalidQuery("user_id", "give a user_id or a device_id (or both)")
            query = new(cls)
            set_(query, "user_id", user)
            set_(query, "device_id", device)
            set_(query, "_sections", asked)
            set_(query, "_plan", plan)
            set_(query, "_hash", hash((user, device, asked_hash)))
            queries.append(query)
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


def _rebuild(user_id: str | None, device_id: str | None, sections: tuple[tuple[Section, Any], ...]) -> ProfileQuery:
    return ProfileQuery(user_id=user_id, device_id=device_id, requests=sections)


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
            slices.update(section.read(data, request, reader))
    return Profile._of(user_id, device_id, main, slices)

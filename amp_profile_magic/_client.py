"""The configurable client for Amplitude's User Profile API."""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import queue
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import chain, repeat
from operator import add, attrgetter, is_, is_not, itemgetter
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, NoReturn, cast
from urllib.parse import urlencode, urlsplit

from traitlets import Bool, Enum, TraitError, Unicode, default, observe, validate
from traitlets.config import Configurable

from . import _exceptions as exc
from ._batch import BatchResult, Outcome, PacingMeter, describe_retries
from ._gcpause import paused, resumed
from ._models import Profile
from ._pacing import MIN_REQUESTS_PER_MINUTE, Cancelled, Pacer, sleep
from ._proxy import Proxy, is_loopback
from ._query import ProfileQuery, profile_from_responses, profiles_from_bodies, profiles_from_responses
from ._secret import Secret, SecretTrait, SecretURLTrait, redact
from ._traits import Float, Int

if TYPE_CHECKING:
    from pathlib import Path

    import httpx
    import tenacity

    from ._budget import Budget, Grant
    from ._cassette import Recorder
    from ._store import ProfileStore, StoredAnswer, StoredRow

__all__ = ["DEFAULT_ENDPOINT", "CachePolicy", "ProfileClient", "RequestPlan"]

log = logging.getLogger("amp_profile_magic")

DEFAULT_ENDPOINT = "https://profile-api.amplitude.com"
API_PATH = "/v1/userprofile"
UNKNOWN_USER_TEXT = "User id and device id not seen before"
THROTTLED_TEXT = "Number of requests per minute exceeds"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CASSETTE_MODES = ("off", "record", "replay")
#: How a lookup uses the local store: answer from it when fresh ("use"), ignore what it holds but keep what comes
#: back ("refresh"), or answer only from it and send nothing ("only").
CachePolicy = Literal["use", "refresh", "only"]
#: Recommendations are recomputed about daily, so an answer fetched within a day is at most one refresh behind: the
#: same staleness as asking the API just before its refresh. A day also covers resuming a batch the next morning.
DEFAULT_MAX_AGE = 24 * 3600.0
#: About 500,000 typical profiles (~1 KB each): ten 50,000-user batches, far under a home directory's quota.
DEFAULT_STORE_MAX_BYTES = 512 * 1024 * 1024
#: Expected durations past this point the dry run suggests Amplitude's bulk routes instead.
BULK_ADVICE_SECONDS = 3600.0


#: The longest timeout, backoff or Retry-After wait a setting may ask for, in seconds.
MAX_SECONDS = 7 * 86_400


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        # parsedate_to_datetime returns a naive datetime for "-0000", which RFC 5322 defines as UTC.
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _default_rate_limiter() -> str:
    """The machine's default budget: an SQLite file of its own in the user's cache directory."""
    import platformdirs

    return "sqlite:///" + str(platformdirs.user_cache_path("amp_profile_magic") / "rate-budget.sqlite").lstrip("/")


def _check_rate_limiter(setting: str) -> None:
    """Raise ``ValueError`` (naming the scheme, never the password) unless ``setting`` is a rate_limiter value."""
    if setting == "kernel":
        return
    if "\x00" in setting:  # a file name cannot hold it: every lookup would raise "embedded null byte"
        raise ValueError("it holds a NUL character (\\x00)")
    try:
        parts = urlsplit(setting)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise ValueError(f"not a URL ({error})") from None
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path or parts.path.endswith("/"):
            raise ValueError("write sqlite:///ABSOLUTE/PATH/TO/FILE (three slashes, then the file's absolute path)")
        return
    if parts.scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise ValueError(f"{parts.scheme}:// needs a host: {parts.scheme}://HOST:PORT/DB")
        return
    # Only the scheme is named: the rest of a mistyped URL ('//:pw@host', 'redis//:pw@host') may be a password.
    scheme = f"{parts.scheme}://" if parts.scheme else "a value without a scheme"
    raise ValueError(f"{scheme} is not kernel, sqlite:///PATH or redis://HOST:PORT/DB")


def _not_fetched(query: ProfileQuery) -> exc.NotFetched:
    return exc.NotFetched(f"Not fetched: the batch was interrupted before {query.describe()}.")


def _queries_of(queries: Iterable[ProfileQuery], method: str) -> list[ProfileQuery]:
    """``queries`` as a list, or a TypeError naming the first item that is not a ProfileQuery (an id, say)."""
    listed = list(queries)
    if not all(map(isinstance, listed, repeat(ProfileQuery))):
        odd = next(item for item in listed if not isinstance(item, ProfileQuery))
        small = (isinstance(odd, str) and len(odd) <= 64) or (isinstance(odd, int) and abs(odd) < 10**64)
        hint = f"; for an id: ProfileQuery(user_id={odd!r}, props=True)" if small else ""
        raise TypeError(f"{method}() takes ProfileQuery objects, not {type(odd).__name__}{hint}")
    return listed


def _distinct(queries: list[ProfileQuery]) -> list[ProfileQuery]:
    """``queries`` without repeats, each first one kept, in order.

    Distinct hashes mean distinct queries: for a batch without repeats (the usual one) a set of the hashes each query
    keeps, read in C, spares a Python ``__hash__`` call per query.
    """
    if len(set(map(_hash_of, queries))) == len(queries):
        return queries
    return list(dict.fromkeys(queries))


_hash_of = attrgetter("_hash")


def _not_stored(query: ProfileQuery) -> exc.NotStored:
    return exc.NotStored(
        f"Not in the local store, or older than max_age: {query.describe()} (store-only lookup; nothing was "
        "sent). Run it without --store-only to fetch it."
    )


def _unknown_user(status: int | None) -> exc.UnknownUser:
    return exc.UnknownUser(
        f"HTTP {status} from the Profile API: {UNKNOWN_USER_TEXT}.", status=status, api_message=UNKNOWN_USER_TEXT
    )


class _Answer(NamedTuple):
    """One successful response: its parsed JSON, and its body as received (what the local store keeps)."""

    payload: Any
    text: str


class _BatchStats:
    """Attempts, retries and throttled answers counted across a batch's threads, for the summary line."""

    #: Retries are normal (a 5xx, a dropped connection) and are only counted; past this share of the attempts,
    #: after enough of them to mean something, something is really wrong and the user is warned, once per batch.
    ALARM_SHARE = 0.5
    ALARM_MIN_ATTEMPTS = 20

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts = 0
        self.retries = 0
        self.throttled = 0
        self._alarmed = False

    def attempted(self) -> None:
        with self._lock:
            self.attempts += 1

    def retried(self, error: BaseException | None) -> bool:
        """Count a retry; True the first time retries pass ``ALARM_SHARE`` of the batch's attempts."""
        with self._lock:
            self.retries += 1
            if isinstance(error, exc.Throttled):
                self.throttled += 1
            alarm = (
                not self._alarmed
                and self.attempts >= self.ALARM_MIN_ATTEMPTS
                and self.retries > self.attempts * self.ALARM_SHARE
            )
            self._alarmed = self._alarmed or alarm
            return alarm

    def describe(self) -> str:
        """``186 retries (4 throttled)``, or "" when nothing was retried."""
        return describe_retries(self.retries, self.throttled)


class _StoreView:
    """The local store as one batch sees it: one project, one endpoint, one freshness rule."""

    def __init__(
        self,
        store: ProfileStore,
        *,
        project: str,
        endpoint: str,
        max_age: float,
        policy: str,
        sent_with: tuple[Secret, str],
    ) -> None:
        self.store = store
        self.project = project
        self.endpoint = endpoint
        self.max_age = max_age
        self.policy = policy
        #: The client's (key, endpoint) settings the project and endpoint above were derived from.
        self.sent_with = sent_with

    def lookup(self, keys: Iterable[Sequence[str]]) -> dict[str, StoredRow]:
        if self.policy == "refresh":
            return {}
        flat = list(chain.from_iterable(keys))
        return self.store.rows(project=self.project, endpoint=self.endpoint, params=flat, max_age=self.max_age)

    def put(self, params: tuple[tuple[str, str], ...], *, kind: str, status: int, body: str) -> None:
        from ._store import params_key

        self.store.put(
            project=self.project, endpoint=self.endpoint, params=params_key(params), kind=kind, status=status, body=body
        )


#: The named tuple's own constructor, positional: it skips Outcome's keyword-taking __new__, once per stored user.
_new_outcome = tuple.__new__
#: A stored answer's fields by position (see StoredAnswer), for taking a re-run's answers apart in C.
_kind_of, _body_of, _fetched_at_of = itemgetter(1), itemgetter(3), itemgetter(4)


def _from_store(
    queries: Sequence[ProfileQuery], keys: Sequence[Sequence[str]], answers: Mapping[str, StoredRow]
) -> list[Outcome | None]:
    """The outcome the stored answers give each query (``keys[i]``: one per request of ``queries[i]``), or None
    where one is missing or can no longer be read (a damaged or outdated entry is fetched again, never failed)."""
    from ._store import load_bodies, stored_answer

    rows = list(map(answers.get, chain.from_iterable(keys)))
    values: list[Any] | None = None
    # A re-run cell: one stored profile per query, all there. Checked and taken apart in C, column by column.
    every = cast("list[StoredRow]", rows)
    if len(rows) == len(queries) and None not in rows and set(map(_kind_of, every)) == {"ok"}:
        values = load_bodies(list(map(_body_of, every)))
        profiles = profiles_from_bodies(queries, values)
        if all(map(is_not, profiles, repeat(None))):  # `None in` would call Profile.__eq__ for each
            times = map(_fetched_at_of, every)
            return list(map(_new_outcome, repeat(Outcome), zip(queries, profiles, repeat(None), times)))
    stored = list(map(stored_answer, rows))
    del rows, every
    if values is None:
        # Every body parsed in one call (see load_bodies); a missing or unknown-user answer parses a placeholder.
        texts = [answer.body if answer is not None and answer.kind == "ok" else "null" for answer in stored]
        values = load_bodies(texts)
    outcomes: list[Outcome | None] = [None] * len(queries)
    readable: list[int] = []
    readable_payloads: list[Sequence[Any]] = []
    stored_at: list[float] = []
    position = 0
    for index, query_keys in enumerate(keys):
        count = len(query_keys)
        found = stored[position : position + count]
        payloads = values[position : position + count]
        position += count
        refused = _refusal(found)
        if refused is not None:
            outcomes[index] = Outcome(queries[index], error=_unknown_user(refused.status), stored_at=refused.fetched_at)
            continue
        if None in found:
            continue
        readable.append(index)
        readable_payloads.append(payloads)
        stored_at.append(min(answer.fetched_at for answer in found))  # type: ignore[union-attr]
    profiles = profiles_from_responses([queries[index] for index in readable], readable_payloads)
    for index, profile, when in zip(readable, profiles, stored_at, strict=True):
        if profile is not None:
            outcomes[index] = _new_outcome(Outcome, (queries[index], profile, None, when))
    return outcomes


def _refusal(found: Sequence[StoredAnswer | None]) -> StoredAnswer | None:
    """The stored "unknown user" among one query's answers, which answers the whole query, or None.

    After it the query's other requests (comps after props) were never sent, so they are missing: waiting for them
    would send the refused one again.
    """
    return next((answer for answer in found if answer is not None and answer.kind == "unknown_user"), None)


_user_of, _device_of, _plan_of = attrgetter("user_id"), attrgetter("device_id"), attrgetter("_plan")


def _request_keys(queries: Iterable[ProfileQuery]) -> list[tuple[str, ...]]:
    """Each query's store keys (``params_key`` of each of its requests), in the queries' order.

    A cell's queries differ only in their ids, so each plan's keys are printed once with placeholder ids, as
    format strings the real ids' reprs are filled into: sorting and printing every query's pairs was a fifth of a
    cached 100,000-user re-run.
    """
    from ._store import params_key

    queries = queries if isinstance(queries, list) else list(queries)
    if queries:
        # One cell's batch: one plan, one request, only user ids (or only device ids). Filled in from C.
        first = queries[0]
        users = list(map(_user_of, queries))
        devices = list(map(_device_of, queries))
        single = len(first._plan) == 1 and all(map(is_, map(_plan_of, queries), repeat(first._plan)))
        template = _key_templates(first) if single else None
        if template is not None and devices.count(None) == len(devices) and None not in users:
            return list(zip(_filled_in(template[0], users)))
        if template is not None and users.count(None) == len(users) and None not in devices:
            return list(zip(_filled_in(template[0], devices)))
    templates: dict[tuple[int, bool, bool], tuple[str, ...] | None] = {}
    keys: list[tuple[str, ...]] = []
    append = keys.append
    for query in queries:
        user, device = query.user_id, query.device_id
        shape = (id(query._plan), user is None, device is None)
        if shape not in templates:
            templates[shape] = _key_templates(query)
        template = templates[shape]
        if template is None:
            append(tuple(params_key(params) for params in query.requests))
        elif len(template) == 1:
            append((template[0].format(repr(user), repr(device)),))
        else:
            ids = (repr(user), repr(device))
            append(tuple(key.format(*ids) for key in template))
    return keys


def _filled_in(template: str, ids: list[str]) -> list[str]:
    """A one-slot key template (see :func:`_key_templates`) with each id's repr in its slot.

    The text around the slot is joined to each repr in C: ``str.format`` parses the template again for every id,
    which took twice as long.
    """
    mark = _placeholder()
    prefix, _, suffix = template.format(mark, mark).partition(mark)
    return list(map(add, map(add, repeat(prefix), map(repr, ids)), repeat(suffix)))


def _placeholder() -> str:
    """A random stand-in for an id: it never occurs in the rest of a key, so splitting on it finds exactly its slot."""
    import secrets

    return f"\x00{secrets.token_hex(8)}\x00"


def _key_templates(query: ProfileQuery) -> tuple[str, ...] | None:
    """``query``'s keys as format strings (``{0}``: the user id's repr, ``{1}``: the device id's), or None when its
    pairs could sort differently for other ids (a parameter name given twice)."""
    from ._store import params_key

    marks = [_placeholder() if query.user_id is not None else None]
    marks.append(_placeholder() if query.device_id is not None else None)
    identity = tuple((name, mark) for name, mark in zip(("user_id", "device_id"), marks, strict=True) if mark)
    templates: list[str] = []
    for params in query.requests:
        pairs = identity + params[len(identity) :]
        if len({name for name, _ in pairs}) != len(pairs):
            return None
        # Braces of the key's own text are doubled, so only the two slots are format fields.
        template = params_key(pairs).replace("{", "{{").replace("}", "}}")
        for slot, mark in enumerate(marks):
            if mark is not None:
                if template.count(repr(mark)) != 1:
                    return None
                template = template.replace(repr(mark), f"{{{slot}}}")
        templates.append(template)
    return tuple(templates)


class RequestPlan(NamedTuple):
    """What a batch would send (``ProfileClient.plan``), for ``%ampprofile --dry-run``."""

    users: int
    lookups: int
    requests: int
    stored: int
    to_send: int
    requests_per_minute: float
    first_url: str | None
    store: str
    #: Lookups a store-only run would fail as not stored (0 unless ``cache="only"``).
    not_stored: int = 0

    @property
    def seconds(self) -> float:
        """Expected duration at the configured rate (the pacer sends one request every 60/rate seconds)."""
        return self.to_send * 60.0 / self.requests_per_minute

    def describe(self) -> str:
        """The dry run's report, a few lines."""
        from ._store import format_age

        lines = [
            f"Dry run, nothing sent. {_count(self.users, 'user')} → {_count(self.lookups, 'lookup')}, "
            f"{_count(self.requests, 'request')}.",
            f"Local store ({self.store}): {_count(self.stored, 'request')} already answered; {self.to_send:,} to send.",
        ]
        if self.not_stored:
            lines.append(
                f"Store-only: {self.not_stored:,} lookups are not in the local store (or are older than max_age) and "
                "would fail as not_stored."
            )
        if self.to_send:
            seconds = self.seconds
            took = f"{seconds:.0f} s" if seconds < 120 else format_age(seconds)
            lines.append(f"Expected time at {self.requests_per_minute:,.0f} requests/minute: about {took}.")
        if self.first_url is not None:
            lines.append("First request (add the key yourself):")
            lines.append(f"  curl -H \"Authorization: Api-Key $AMPLITUDE_SECRET_KEY\" '{self.first_url}'")
        if self.to_send and self.seconds > BULK_ADVICE_SECONDS:
            lines.append(
                "That is over an hour: for this many users, Amplitude's bulk routes are faster: download the cohort "
                "with the Dashboard REST API, or use a warehouse export (Snowflake, BigQuery, S3)."
            )
        return "\n".join(lines)


_CREDENTIALS_IN_ENDPOINT = (
    "ProfileClient.endpoint holds a user name or password (user:…@host), which %config listings, errors and logs "
    "would show; the API needs none (the secret key goes in ProfileClient.api_key): remove it"
)


def _has_credentials(url: str) -> bool:
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:  # unparsable: the endpoint check says so, in its own words
        return False


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ProfileClient(Configurable):
    """Look up user profiles in Amplitude's User Profile API.

    Every request is paced against a budget that every kernel of this user on this machine shares (see
    ``rate_limiter``), retried with backoff on transient failures, and mapped to the exception tree of
    :class:`amp_profile_magic.ProfileError`. Settings come from ``%config``, ``ipython_config.py``
    (``c.ProfileClient.timeout = 5``) and the environment (``AMPLITUDE_SECRET_KEY``, ``AMPLITUDE_PROFILE_URL``); a
    client made in a notebook takes the kernel's settings, and keyword arguments win over them::

        In [1]: from amp_profile_magic import ProfileClient
        In [2]: client = ProfileClient()
        In [3]: client.lookup(user_id="12345", rec_ids=["testRecId"], props=True)
    """

    endpoint = Unicode(
        help="Base URL of the User Profile API; the client calls <endpoint>/v1/userprofile. "
        "Defaults to $AMPLITUDE_PROFILE_URL, else https://profile-api.amplitude.com. "
        "Plain http:// is refused unless the host is loopback (the emulator)."
    ).tag(config=True)

    api_key = SecretTrait(
        env="AMPLITUDE_SECRET_KEY",
        help="The project's secret key (not its API key). Defaults to $AMPLITUDE_SECRET_KEY. Never displayed.",
    ).tag(config=True)

    timeout = Float(
        10.0,
        help="Seconds one HTTP request may take, from connecting to the answer's last byte, before it counts as "
        "timed out (and is retried). A lookup ends within timeout × (max_retries + 1) plus backoff; pacing and "
        "throttle holds come on top.",
    ).tag(config=True)

    max_retries = Int(
        # Five retries keep a batch above 99.5% success, with margin, even when ~30% of attempts fail
        # transiently (0.29**6 ≈ 0.06% of users); with four, a 1,000-user batch misses that about 2% of the time.
        5,
        min=0,
        help="Retries after the first attempt for 5xx, throttling, timeouts and connection failures "
        "(2 means at most 3 requests). Other failures are never retried.",
    ).tag(config=True)

    backoff_initial = Float(
        0.5,
        help="Upper bound, in seconds, of the first retry's random (full-jitter) backoff; doubles per retry.",
    ).tag(config=True)

    backoff_max = Float(30.0, help="Longest backoff between two attempts, in seconds.").tag(config=True)

    max_retry_after = Float(
        120.0,
        help="Longest Retry-After the client honours, in seconds; a longer one fails the request. While a "
        "Retry-After runs, every request counted against the same budget waits (Ctrl-C ends the wait).",
    ).tag(config=True)

    requests_per_minute = Float(
        600.0,
        help="Most requests per rolling minute, spread evenly, counted against the budget rate_limiter names "
        "(by default every kernel of this user on this machine). The API's limit (600) is per organisation: "
        "set the same value everywhere that shares a budget, and lower it for traffic that shares none.",
    ).tag(config=True)

    rate_limiter = SecretURLTrait(
        env="AMPLITUDE_PROFILE_RATE_LIMITER",
        default=_default_rate_limiter,
        check=_check_rate_limiter,
        help="Where requests_per_minute is counted: 'kernel' (this kernel alone), 'sqlite:///PATH' (every kernel "
        "and job on this machine using that file; not on NFS) or 'redis://HOST:PORT/DB' (many machines). "
        "Defaults to $AMPLITUDE_PROFILE_RATE_LIMITER, else an SQLite file in the user's cache directory. "
        "A password in the URL is never displayed.",
    ).tag(config=True)

    adaptive_pacing = Bool(
        True,
        help="When throttled despite pacing (others are using the organisation's budget), lower the rate by 30% "
        "and recover it gradually, up to requests_per_minute. False paces at requests_per_minute always.",
    ).tag(config=True)

    max_concurrency = Int(8, min=1, help="Most requests a batch keeps in flight at once.").tag(config=True)

    region = Enum(
        ["us", "eu"],
        default_value="us",
        help="The project's data region. The User Profile API is not available in the EU region.",
    ).tag(config=True)

    cassette = Unicode(
        help="The cassette file that cassette_mode records to or replays from (JSON, one response a line). "
        "Defaults to $AMPLITUDE_PROFILE_CASSETTE."
    ).tag(config=True)

    cassette_mode = Enum(
        list(CASSETTE_MODES),
        default_value="off",
        help="'record' saves every API response (never the key) to ProfileClient.cassette; 'replay' answers from "
        "it with no network and no key; 'off' talks to the API. Defaults to $AMPLITUDE_PROFILE_CASSETTE_MODE.",
    ).tag(config=True)

    store = Unicode(
        help="Directory of the local profile store, which keeps every answer so re-runs and resumed batches send "
        "only what is missing; 'off' disables it. Defaults to $AMPLITUDE_PROFILE_STORE, else the platform's cache "
        "directory ($XDG_CACHE_HOME/amp_profile_magic on Linux). It holds personal data: %ampprofile_store clear "
        "empties it."
    ).tag(config=True)

    max_age = Float(
        DEFAULT_MAX_AGE,
        help="Seconds a stored answer is reused; older ones are fetched again. One day by default: recommendations "
        "are recomputed about daily. 0 reuses nothing (what comes back is still stored).",
    ).tag(config=True)

    store_max_bytes = Int(
        DEFAULT_STORE_MAX_BYTES,
        min=0,
        help="Size cap of the local store in bytes; past it the oldest answers are evicted first.",
    ).tag(config=True)

    def __init__(self, *, transport: httpx.BaseTransport | None = None, pacer: Pacer | None = None, **kwargs: Any):
        # Set before traitlets applies kwargs/config: assigning `endpoint` there already fires the observer.
        self._transport = transport
        self._pacer = pacer  # an explicit pacer overrides rate_limiter (tests, embedding)
        self._pacer_budget: Budget | None = None
        self._meter = PacingMeter()
        self._stats = _BatchStats()  # the running (or last) batch's, for its progress bar
        self._http: httpx.Client | None = None
        self._proxy: Proxy | None = None
        self._recorder: Recorder | None = None
        self._http_lock = threading.Lock()
        self._cassette_mode_problem: str | None = None
        # The store's directory, resolved once per setting: a relative path means where the kernel was when it was
        # first used, and info and clear must act on that store even after a %cd.
        self._store_directory: Path | None = None
        self._store_resolved = False
        if "parent" not in kwargs and "config" not in kwargs:
            shell = _running_shell()
            if shell is not None:
                # Made in a notebook: the kernel's settings (%config, ipython_config.py), as the magics' client has
                # them; a bare ProfileClient().clear_store() cleared the default store, not the one %config moved.
                kwargs["config"] = shell.config
        super().__init__(**kwargs)

    @validate("timeout", "backoff_initial", "backoff_max", "max_retry_after", "requests_per_minute")
    def _positive_and_finite(self, proposal: Mapping[str, Any]) -> float:
        # NaN passes traitlets' min= checks (every comparison with it is false), and then a NaN rate busy-spins the
        # pacer and a NaN backoff waits forever; infinity waits forever too.
        value = float(proposal["value"])
        name = proposal["trait"].name
        if not math.isfinite(value) or value <= 0:
            unit = "requests a minute" if name == "requests_per_minute" else "seconds"
            raise TraitError(
                f"ProfileClient.{name} must be a positive, finite number of {unit}, not {proposal['value']!r}."
            )
        if name != "requests_per_minute" and value > MAX_SECONDS:
            # Past what sockets and sleeps take (a time_t): 1e10 was a raw OverflowError mid-request.
            raise TraitError(f"ProfileClient.{name} must be at most {MAX_SECONDS:,} seconds (a week), not {value!r}.")
        if name == "requests_per_minute" and value < MIN_REQUESTS_PER_MINUTE:
            raise TraitError(
                f"ProfileClient.requests_per_minute must be at least {MIN_REQUESTS_PER_MINUTE} (one request per 100 "
                f"minutes), not {proposal['value']!r}."
            )
        return value

    @validate("max_age")
    def _age_finite(self, proposal: Mapping[str, Any]) -> float:
        # NaN passes min=0 and would make every stored answer stale (no comparison with NaN is true), silently.
        value = float(proposal["value"])
        if not math.isfinite(value) or value < 0:
            raise TraitError(
                f"ProfileClient.max_age must be a finite number of seconds, 0 or more, not {proposal['value']!r}."
            )
        return value

    @default("endpoint")
    def _default_endpoint(self) -> str:
        return os.getenv("AMPLITUDE_PROFILE_URL", "").strip() or DEFAULT_ENDPOINT

    @validate("endpoint")
    def _endpoint_stripped(self, proposal: Mapping[str, Any]) -> str:
        # A pasted URL's trailing newline was reported as an unreadable proxy setting; a leading space as a
        # network failure.
        value = str(proposal["value"]).strip()
        if _has_credentials(value):
            raise TraitError(_CREDENTIALS_IN_ENDPOINT)
        return value

    @validate("store", "cassette")
    def _no_nul(self, proposal: Mapping[str, Any]) -> str:
        # A path with NUL passed the setting and then failed every lookup with a raw "embedded null byte".
        value = str(proposal["value"])
        if "\x00" in value:
            raise TraitError(f"ProfileClient.{proposal['trait'].name} holds a NUL character (\\x00): no path can")
        return value

    @default("store")
    def _default_store(self) -> str:
        return os.getenv("AMPLITUDE_PROFILE_STORE", "")

    @observe("store", "store_max_bytes")
    def _store_setting_changed(self, change: Mapping[str, Any]) -> None:
        self._store_resolved = False

    @default("cassette")
    def _default_cassette(self) -> str:
        return os.getenv("AMPLITUDE_PROFILE_CASSETTE", "")

    @default("cassette_mode")
    def _default_cassette_mode(self) -> str:
        mode = os.getenv("AMPLITUDE_PROFILE_CASSETTE_MODE", "").strip().lower() or "off"
        if mode not in CASSETTE_MODES:
            # A misspelt "record" must not silently talk to the API without recording: every lookup and plan fails
            # with this until the variable is fixed or a mode is set. Not raised here: %config ProfileClient
            # reads every trait to list it, and showed a traceback.
            self._cassette_mode_problem = (
                f"AMPLITUDE_PROFILE_CASSETTE_MODE={mode!r} is not one of {', '.join(CASSETTE_MODES)}."
            )
            return "off"
        return mode

    @validate("cassette_mode")
    def _cassette_mode_set(self, proposal: Mapping[str, Any]) -> str:
        # A validator, not an observer: setting "off" over the "off" a misspelt variable gave changes nothing.
        self._cassette_mode_problem = None
        return str(proposal["value"])

    def _check_cassette_mode(self) -> None:
        """Raise :class:`CassetteError` while $AMPLITUDE_PROFILE_CASSETTE_MODE is misspelt and no mode was set."""
        self.cassette_mode  # noqa: B018 - reading it reads the variable, the first time
        if self._cassette_mode_problem is not None:
            raise exc.CassetteError(self._cassette_mode_problem)

    @observe("endpoint", "timeout", "max_concurrency", "cassette", "cassette_mode")
    def _connection_settings_changed(self, change: Mapping[str, Any]) -> None:
        self.close()

    def __repr__(self) -> str:
        key = "set" if self.api_key else "unset"
        return f"<ProfileClient endpoint={self.endpoint!r} key={key}>"

    # -- public API ---------------------------------------------------------------------------------------------

    def lookup(self, query: ProfileQuery | None = None, /, *, cache: CachePolicy = "use", **parameters: Any) -> Profile:
        """Look up one user or device; ``parameters`` are :class:`ProfileQuery` fields when no query is given.

        A fresh answer in the local store is returned without sending anything (``cache="refresh"`` fetches it
        again, ``cache="only"`` never sends). Raises a :class:`ProfileError` subclass on failure, after retrying
        the transient ones.
        """
        if query is None:
            query = ProfileQuery(**parameters)
        elif parameters:
            raise TypeError("pass a ProfileQuery or keyword parameters, not both")
        self._check_settings()
        self._announce_hold()
        view = self._store_view(cache)
        outcome = None
        if view is not None and cache != "refresh":
            keys = _request_keys([query])
            outcome = _from_store([query], keys, view.lookup(keys))[0]
        if outcome is None and cache == "only":
            outcome = Outcome(query, error=_not_stored(query))
        if outcome is None:
            stats = _BatchStats()
            with resumed():
                try:
                    profile = self._lookup(query, cancel=None, view=view, stats=stats)
                finally:
                    if view is not None:
                        view.store.flush()  # one answer: no reason to keep it from other kernels until a batch
            if stats.retries:
                # Each retry was logged at DEBUG only: one line says the answer was not first time lucky.
                log.info("Looked up %s after %s.", query.describe(), stats.describe())
            return profile
        if outcome.error is not None:
            raise outcome.error
        assert outcome.profile is not None
        return outcome.profile

    def lookup_many(
        self,
        queries: Iterable[ProfileQuery],
        *,
        on_outcome: Callable[[Outcome], None] | None = None,
        on_wait: Callable[[float], None] | None = None,
        cache: CachePolicy = "use",
        stop: threading.Event | None = None,
    ) -> BatchResult:
        """Look up many users concurrently (up to ``max_concurrency`` in flight, paced) and account for each.

        Returns a :class:`BatchResult` with one outcome per query, in input order. Duplicate queries are sent
        once. Users with a fresh answer in the local store are answered from it and nothing is sent for them
        (``cache``: see :meth:`lookup`); every answer that arrives is stored at once, so an interrupted batch
        resumes where it stopped. A failing user never stops the batch. On ``KeyboardInterrupt`` the finished
        outcomes are kept, the rest are marked :class:`NotFetched`, and the client stays usable. ``on_outcome`` is
        called in the calling thread as each unique query finishes (for progress bars); ``on_wait`` is called there
        too with the seconds left of a kernel-wide throttle hold (``Retry-After``) whenever they change, and with 0
        when it ends. Setting ``stop`` (from another thread) ends the batch as Ctrl-C does.
        """
        with paused():
            ordered = _queries_of(queries, "lookup_many")
            unique = _distinct(ordered)
        finished: dict[ProfileQuery, Outcome] = {}
        answered: tuple[Outcome, ...] | None = None
        cancel = threading.Event()
        interrupted = False
        self._meter.start()
        self._stats = stats = _BatchStats()
        if unique:
            self._check_settings()
            self._announce_hold()
            view = self._store_view(cache)
            pending = []
            with paused():  # a few acyclic objects per user (see _gcpause), and no network wait
                keys = _request_keys(unique) if view is not None else []
                answers = view.lookup(keys) if view is not None else {}
                stored = _from_store(unique, keys, answers) if answers else [None] * len(unique)
                del answers  # a 100,000-user re-run holds every stored body here: let it go before the frames
                if on_outcome is None and None not in stored and len(unique) == len(ordered):
                    answered = tuple(stored)  # type: ignore[arg-type]  # a re-run cell: the store answered it all
                else:
                    for query, found in zip(unique, stored, strict=True):
                        outcome = (
                            Outcome(query, error=_not_stored(query)) if found is None and cache == "only" else found
                        )
                        if outcome is None:
                            pending.append(query)
                            continue
                        finished[query] = outcome
                        if on_outcome is not None:
                            on_outcome(outcome)
                del stored
            if pending:
                with resumed():  # the network part of a paused call (%ampprofile's) collects cycles as usual
                    interrupted = self._run_pool(
                        pending,
                        finished=finished,
                        cancel=cancel,
                        view=view,
                        stats=stats,
                        on_outcome=on_outcome,
                        on_wait=on_wait,
                        stop=stop,
                    )
            if view is not None:
                view.store.evict()  # folds the batch's journaled answers in first: other kernels see them now
        with paused():
            if answered is not None:
                outcomes = answered
            elif len(finished) == len(unique):
                outcomes = tuple(map(finished.__getitem__, ordered))
            else:
                outcomes = tuple(finished.get(query) or Outcome(query, error=_not_fetched(query)) for query in ordered)
        return BatchResult(
            outcomes=outcomes,
            unique_queries=len(unique),
            interrupted=interrupted,
            retries=stats.retries,
            throttled=stats.throttled,
            pacing=self._meter.summary(),
        )

    def pacing_note(self) -> str:
        """``paced down to 240/min after 3 throttles`` while (or after) a batch ran slower than configured; else ""."""
        return self._meter.summary().describe()

    def progress_note(self) -> str:
        """The running batch's retries and pacing, for its progress bar: ``12 retries (2 throttled) · paced …``."""
        return " · ".join(part for part in (self._stats.describe(), self.pacing_note()) if part)

    def plan(self, queries: Iterable[ProfileQuery], *, cache: CachePolicy = "use") -> RequestPlan:
        """What :meth:`lookup_many` would send for ``queries``, after what the local store holds; sends nothing."""
        from ._store import stored_answer

        ordered = _queries_of(queries, "plan")
        self._check_cassette_mode()
        unique = _distinct(ordered)
        requests = [params for query in unique for params in query.requests]
        view = self._store_view(cache)  # even for no queries: the plan still says where the store is
        keys = _request_keys(unique)
        answers = view.lookup(keys) if view is not None else {}
        wanted: list[tuple[tuple[str, str], ...]] = []
        missing = 0
        for query, query_keys in zip(unique, keys, strict=True):
            found = [stored_answer(answers.get(key)) for key in query_keys]
            if _refusal(found) is not None:
                continue  # answered: the API called this user unknown, and nothing more is sent for it
            unanswered = [params for params, answer in zip(query.requests, found, strict=True) if answer is None]
            wanted += unanswered
            missing += bool(unanswered)
        to_send = [] if cache == "only" else wanted
        first = None
        if to_send:
            first = f"{self.endpoint.rstrip('/')}{API_PATH}?{urlencode(to_send[0])}"
        if view is None:
            where = "off" if self.cassette_mode == "off" else f"not used while the cassette is in {self.cassette_mode}"
        else:
            where = str(view.store.path)
        return RequestPlan(
            users=len(ordered),
            lookups=len(unique),
            requests=len(requests),
            stored=len(requests) - len(wanted),
            to_send=len(to_send),
            requests_per_minute=self.requests_per_minute,
            first_url=first,
            store=where,
            not_stored=missing if cache == "only" else 0,
        )

    def profile_store(self) -> ProfileStore | None:
        """The local store this client reads and writes, or None when it is off or unusable."""
        from ._store import shared_store

        directory = self._resolved_store_directory()
        if directory is None:
            return None
        # Asked of the process's registry each time, not kept: a store another client cleared (closed and opened
        # again) is the new one here too.
        store = shared_store(directory, max_bytes=self.store_max_bytes)
        return store if store.disabled is None else None

    def store_info(self) -> str:
        """Where the local store is, its size, its answers and their oldest and newest fetch times."""
        from ._store import store_info

        directory = self._resolved_store_directory()
        if directory is None:
            return "Local profile store: off (ProfileClient.store = 'off')."
        return store_info(directory).describe()

    def clear_store(self, *, older_than: float | None = None) -> str:
        """Delete every stored answer, or those fetched more than ``older_than`` seconds ago; say what was done."""
        from ._store import clear_store

        if older_than is not None:
            try:
                seconds = math.nan if isinstance(older_than, bool) else float(older_than)
            except (OverflowError, TypeError, ValueError):
                seconds = math.nan
            if not 0 <= seconds < math.inf:
                shown = repr(older_than) if len(repr(older_than)) < 40 else f"{repr(older_than)[:37]}..."
                raise ValueError(f"older_than={shown}: give seconds, zero or more and finite (or None for all)")
            older_than = seconds
        directory = self._resolved_store_directory()
        if directory is None:
            return "Local profile store: off (ProfileClient.store = 'off'); nothing to clear."
        return clear_store(directory, older_than=older_than)

    def _resolved_store_directory(self) -> Path | None:
        if not self._store_resolved:
            from ._store import store_directory

            self._store_directory = store_directory(self.store)
            self._store_resolved = True
        return self._store_directory

    def _announce_hold(self) -> None:
        # A hold left by an earlier cell would otherwise look like a hang (a batch's progress bar also shows it).
        held = self._budget().hold_remaining()
        if held >= 1 and self.cassette_mode != "replay":
            log.warning("Waiting %.0fs on the API's throttle hold (Retry-After) before sending; Ctrl-C stops.", held)

    def close(self) -> None:
        """Close pooled connections; the next request opens new ones."""
        with self._http_lock:
            http, self._http = self._http, None
            recorder, self._recorder = self._recorder, None
        if http is not None:
            http.close()
        if recorder is not None:
            recorder.flush()

    # -- one lookup ---------------------------------------------------------------------------------------------

    def _run_pool(
        self,
        pending: list[ProfileQuery],
        *,
        finished: dict[ProfileQuery, Outcome],
        cancel: threading.Event,
        view: _StoreView | None,
        stats: _BatchStats,
        on_outcome: Callable[[Outcome], None] | None,
        on_wait: Callable[[float], None] | None,
        stop: threading.Event | None = None,
    ) -> bool:
        """Look ``pending`` up on a thread pool into ``finished``; return whether the batch was interrupted."""
        interrupted = False
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(pending)), thread_name_prefix="amp-profile")
        # Finished futures arrive on a queue: concurrent.futures.wait() re-registers a waiter on every pending
        # future per call, which made a batch quadratic in its size (12,000 users ran at a fifth of 1,000's rate).
        completed: queue.SimpleQueue[Future[Outcome]] = queue.SimpleQueue()
        target = len(finished) + len(pending)
        try:
            for query in pending:
                pool.submit(self._outcome, query, cancel, view, stats).add_done_callback(completed.put)
            shown_hold = 0
            while len(finished) < target:
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt  # a stop from another thread (the form's) ends the batch like Ctrl-C
                if on_wait is not None:
                    hold = math.ceil(self._budget().hold_remaining())
                    if hold != shown_hold:
                        shown_hold = hold
                        on_wait(float(hold))
                try:
                    # A timed get returns to the interpreter regularly, so Ctrl-C is seen within 0.2 s.
                    future = completed.get(timeout=0.2)
                except queue.Empty:
                    continue
                outcome = future.result()
                finished[outcome.query] = outcome
                if on_outcome is not None:
                    on_outcome(outcome)
        except KeyboardInterrupt:
            interrupted = True
            cancel.set()
            # INFO: the summary line (and the magic's error) already say it, in the cell, where the user looks.
            log.info("Batch interrupted: %d of %d lookups finished.", len(finished), target)
        finally:
            # In-flight requests see the cancel event at their next socket wait (a quarter second at most) and
            # close their connections; nothing waits for them here.
            pool.shutdown(wait=not interrupted, cancel_futures=True)
        return interrupted

    def _store_view(self, policy: CachePolicy) -> _StoreView | None:
        if policy not in ("use", "refresh", "only"):
            raise ValueError(f"cache={policy!r} is not one of use, refresh, only")
        if self.cassette_mode != "off":
            # A cassette is the notebook's whole truth: replay must reproduce what was recorded, failures included,
            # and recording must capture every response, so neither is answered from (or mixed into) the store.
            return None
        store = self.profile_store()
        if store is None:
            return None
        return _StoreView(
            store,
            project=store.fingerprint(self.api_key.reveal()),
            endpoint=f"{self.endpoint.rstrip('/')}{API_PATH}",
            max_age=self.max_age,
            policy=policy,
            sent_with=self._sending_with(),
        )

    def _sending_with(self) -> tuple[Secret, str]:
        """The settings that decide whose answers a request gets: the key (the object, so any new one differs)
        and the endpoint."""
        return (self.api_key, self.endpoint)

    def _outcome(
        self, query: ProfileQuery, cancel: threading.Event, view: _StoreView | None, stats: _BatchStats
    ) -> Outcome:
        try:
            return Outcome(query, profile=self._lookup(query, cancel, view=view, stats=stats))
        except exc.ProfileError as error:
            # A batch keeps its failures as long as its result lives: their frames would keep each response too.
            return Outcome(query, error=error.with_traceback(None))
        except Cancelled:
            return Outcome(query, error=_not_fetched(query))

    def _lookup(
        self, query: ProfileQuery, cancel: threading.Event | None, *, view: _StoreView | None, stats: _BatchStats
    ) -> Profile:
        self._check_settings()
        # A props + comps query whose first request was stored before an interrupt sends only the second.
        stored = view.lookup(_request_keys([query])) if view is not None and len(query.requests) > 1 else {}
        payloads = [self._stored_or_sent(params, cancel, view, stats, stored) for params in query.requests]
        profile = _validated(query, payloads, self.api_key)
        # The raw bodies must not be a local of a frame the failure's traceback holds (%xmode Verbose prints them).
        del payloads
        if isinstance(profile, exc.MalformedResponse):
            raise profile
        return profile

    def _stored_or_sent(
        self,
        params: tuple[tuple[str, str], ...],
        cancel: threading.Event | None,
        view: _StoreView | None,
        stats: _BatchStats,
        stored: Mapping[str, StoredRow],
    ) -> Any:
        """One request's JSON: from ``stored``, else sent (with retries) and written to the store as it arrives."""
        if stored:
            from ._store import load_body, params_key, stored_answer

            answer = stored_answer(stored.get(params_key(params)))
            if answer is not None and answer.kind == "ok":
                try:
                    return load_body(answer.body)
                except ValueError:
                    pass
        before = self._sending_with()
        try:
            answer_ = self._request_with_retries(params, cancel, stats)
        except exc.UnknownUser as error:
            # Permanent for this user: stored too, so a repeated cell costs nothing. Transient failures never are.
            if view is not None and self._keeps(view, before):
                view.put(params, kind="unknown_user", status=error.status or 0, body=error.api_message or "")
            raise
        if view is not None and self._keeps(view, before):
            # Its text is redacted already (see _redacted): a proxy that echoes the key must not put it on disk.
            view.put(params, kind="ok", status=200, body=answer_.text)
        return answer_.payload

    def _keeps(self, view: _StoreView, before: tuple[Secret, str]) -> bool:
        """Whether an answer goes to ``view``: not when the key or endpoint changed during the batch (a %config in
        another cell while the form's batch runs), which would file one project's answers under another's."""
        now = self._sending_with()
        return before[0] is now[0] is view.sent_with[0] and before[1] == now[1] == view.sent_with[1]

    def _check_settings(self) -> None:
        self._check_cassette_mode()
        if self.region == "eu":
            raise exc.UnsupportedRegion("The User Profile API is not available in Amplitude's EU data region.")
        if _has_credentials(self.endpoint):  # before any message quotes the URL: it would show the password
            raise exc.ConfigurationError(_CREDENTIALS_IN_ENDPOINT + " (from $AMPLITUDE_PROFILE_URL?)")
        try:
            parts = urlsplit(self.endpoint)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as error:
            raise exc.ConfigurationError(f"ProfileClient.endpoint {self.endpoint!r} is not a URL ({error}).") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise exc.InsecureEndpoint(f"ProfileClient.endpoint {self.endpoint!r} is not an http(s) URL.")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise exc.InsecureEndpoint(f"Refusing to send the secret key over plain HTTP to {parts.hostname}.")
        if not self.api_key and self.cassette_mode != "replay":
            raise exc.MissingKey("No secret key is configured.")
        if self._pacer is None:
            # A value from %config was checked when set; one from the environment is checked here, on use.
            problem = _RATE_LIMITER.problem(self.rate_limiter)
            if problem is not None:
                raise exc.ConfigurationError(
                    f"ProfileClient.rate_limiter (from $AMPLITUDE_PROFILE_RATE_LIMITER) is not usable: {problem}. "
                    "Fix the variable, or set %config ProfileClient.rate_limiter = 'kernel'."
                )
        # No local variable for the key here: tracebacks shown with locals (%xmode Verbose) would print it.
        if not _header_safe(self.api_key.reveal()):
            # httpx would fail mid-send with the whole header (key included) in its message, or a raw UnicodeError.
            raise exc.ConfigurationError(
                "ProfileClient.api_key contains a line break, tab or non-ASCII character, which cannot be sent in an "
                "HTTP header: set the key again without it."
            )

    def _request_with_retries(
        self, params: tuple[tuple[str, str], ...], cancel: threading.Event | None, stats: _BatchStats
    ) -> _Answer:
        import tenacity

        budget = self._budget()
        grant: list[Grant | None] = [None]  # the latest attempt's, for the throttle it may meet
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._backoff,
            retry=tenacity.retry_if_exception(lambda error: isinstance(error, exc.ProfileError) and error.retryable),
            sleep=lambda seconds: sleep(seconds, cancel),
            before_sleep=lambda state: self._before_retry(state, stats, budget, grant[0]),
            reraise=True,
        )
        # Open the connection pool before taking a pacing slot: building it after would delay this send and bunch it
        # with the next slots' sends, over the rate.
        self._client()
        for attempt in retrying:
            with attempt:
                stats.attempted()
                if self.cassette_mode != "replay":  # a replay sends nothing, so it spends none of the API's budget
                    grant[0] = granted = budget.acquire(self.requests_per_minute, cancel, self.adaptive_pacing)
                    self._meter.paced(granted.rate, granted.ceiling, granted.fallback)
                try:
                    return self._send(params, cancel)
                except exc.Throttled:
                    self._meter.throttle()
                    raise
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _budget(self) -> Budget:
        """Where this request's pacing is counted: the explicit pacer, else the budget rate_limiter names."""
        from ._budget import KernelBudget, open_budget

        if self._pacer is not None:
            if self._pacer_budget is None:
                self._pacer_budget = KernelBudget(self._pacer)
            return self._pacer_budget
        # Both passed wrapped: a revealed key or password in a local would print in a traceback with locals.
        return open_budget(self.rate_limiter, endpoint=self.endpoint, key=self.api_key)

    def _backoff(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, exc.Throttled) and error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                # Waiting longer than the user allows is no better than failing now, and failing says why.
                raise exc.Throttled(
                    f"{error.message} The API asked to wait {error.retry_after:g}s, longer than "
                    f"ProfileClient.max_retry_after ({self.max_retry_after:g}s): try again later or raise it.",
                    status=error.status,
                    api_message=error.api_message,
                    retry_after=error.retry_after,
                ) from None
            return error.retry_after
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (state.attempt_number - 1))
        return random.uniform(0, ceiling)

    def _before_retry(
        self, state: tenacity.RetryCallState, stats: _BatchStats, budget: Budget, grant: Grant | None
    ) -> None:
        error = state.outcome.exception() if state.outcome else None
        seconds = state.next_action.sleep if state.next_action else 0.0
        alarm = stats.retried(error)
        if isinstance(error, exc.Throttled):
            # Throttling is organisation-wide: hold every request counted against this budget, not just this one.
            budget.throttled(seconds, grant, self.adaptive_pacing)
        # Retries are normal and counted in the summary line: a WARNING each would bury it (thousands in a long
        # batch, saved with the notebook). Only a batch where most attempts fail is worth one warning.
        log.debug("Retrying in %.2fs after attempt %d: %s", seconds, state.attempt_number, error)
        # Not in a replay: the recording's failures come back on purpose, and which retry is counted when depends
        # on the threads' order, so the warning (and its counts) came and went between runs of the same notebook.
        if alarm and self.cassette_mode != "replay":
            log.warning(
                "Most requests are failing: %d of %d attempts so far needed a retry (latest: %s). The batch goes on "
                "retrying; Ctrl-C stops it and keeps what finished.",
                stats.retries,
                stats.attempts,
                error,
            )

    def _client(self) -> httpx.Client:
        import httpx

        from ._cassette import CassetteTransport, cassette
        from ._deadline import install
        from ._logfilter import install as install_log_filter

        install_log_filter(self.api_key)
        with self._http_lock:
            if self._http is None:
                limit = max(self.max_concurrency, 1)
                limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
                # Replay answers from a transport (no network); record hooks onto the responses of the usual one.
                tape = cassette(path=self.cassette, mode=self.cassette_mode)
                transport = tape if isinstance(tape, CassetteTransport) else self._transport
                self._recorder = None if tape is None or isinstance(tape, CassetteTransport) else tape
                network = transport is None
                if network and is_loopback(urlsplit(self.endpoint).hostname or ""):
                    # Policy, not httpx's choice: the emulator (or a tunnel) on this machine never goes through a
                    # proxy, which could not reach it and would see the key in plain text.
                    transport = httpx.HTTPTransport(limits=limits)
                self._http = self._open(transport, limits)
                self._proxy = None
                if network:
                    pool = install(self._http, httpx.URL(self.endpoint))
                    self._proxy = Proxy.of(pool, urlsplit(self.endpoint).scheme)
                if self.cassette_mode != "replay":
                    # The budget's connection too (its library, file or server): a first send then waits for neither.
                    self._budget().open()
            return self._http

    def _open(self, transport: httpx.BaseTransport | None, limits: httpx.Limits) -> httpx.Client:
        """An httpx client for the endpoint; without ``transport``, httpx builds it and the proxies the environment
        names (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY), which it reads only when given no transport."""
        import httpx

        from ._body import ACCEPT_ENCODING

        try:
            return httpx.Client(
                base_url=self.endpoint.rstrip("/"),
                timeout=self.timeout,
                transport=transport,
                event_hooks={"response": [self._recorder] if self._recorder is not None else []},
                follow_redirects=False,
                limits=limits,
                # For the proxy variables. All else trust_env turns on already was: transports read SSL_CERT_FILE,
                # SSL_CERT_DIR (and, in httpx 0.27, SSLKEYLOGFILE) by default, and httpx 0.27+ reads .netrc only
                # through an explicit NetRCAuth (auth= is ours anyway).
                trust_env=True,
                headers={"User-Agent": "amp_profile_magic", "Accept-Encoding": ACCEPT_ENCODING},
                # Through auth, not a headers dict per call: that dict would be a local in every httpx frame
                # of a chained traceback, and tracebacks with locals (%xmode Verbose) would print the key.
                auth=self._authorize,
            )
        except ImportError:  # a socks5:// proxy without httpx's socks extra
            failure = "names a SOCKS proxy, which needs httpx's socks extra (pip install 'httpx[socks]')"
        except ValueError:  # its message quotes the proxy's URL, user name included
            failure = "names a proxy whose URL is not http://, https://, socks5:// or socks5h://"
        except httpx.InvalidURL as error:  # quotes a host or port, never a user or password
            failure = f"cannot be read ({_mask(str(error), self.api_key)})"
        # Raised outside the except blocks: httpx's frames (chained) hold the proxy URL and its credentials.
        raise exc.ConfigurationError(
            f"A proxy setting in the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY or NO_PROXY) {failure}: fix or "
            "unset it."
        )

    def _authorize(self, request: httpx.Request) -> httpx.Request:
        request.headers["Authorization"] = f"Api-Key {self.api_key.reveal()}"
        return request

    def _send(self, params: tuple[tuple[str, str], ...], cancel: threading.Event | None = None) -> _Answer:
        """Send one request; return its JSON body, parsed and as received. The one place foreign errors become ours.

        The request gets ``timeout`` seconds in all, and its body at most MAX_BODY_BYTES. Every error leaves without
        a cause or context: httpx's and httpcore's frames hold the request and its key.
        """
        import httpx

        from ._body import BadEncoding, TooLarge
        from ._deadline import Expired

        http = self._client()
        started = time.monotonic()
        failure: exc.ProfileError | None = None
        interrupted = False
        try:
            response = self._fetch(http, params, deadline=started + self.timeout, cancel=cancel)
        except KeyboardInterrupt:
            interrupted = True
        except (
            exc.ProfileError,
            httpx.HTTPError,
            httpx.InvalidURL,
            httpx.StreamError,
            Expired,
            TooLarge,
            BadEncoding,
        ) as error:
            failure = _bare(error) if isinstance(error, exc.ProfileError) else self._translate(error, params)
        except RuntimeError:
            if not http.is_closed:
                raise
            # close(), or a connection setting changed, while this request was on its way: retried, on a new pool.
            failure = exc.ConnectionFailed(
                "The connection pool was closed during the request (close(), or a setting "
                "changed); the request is sent again."
            )
        if interrupted:
            # Ctrl-C mid-request: a fresh KeyboardInterrupt, so the one raised deep in httpcore (whose frames hold
            # the request) is not what IPython shows.
            raise KeyboardInterrupt
        if failure is not None:
            if cancel is not None and cancel.is_set():
                raise Cancelled  # the batch was interrupted: this user is not fetched, not failed
            raise failure
        log.debug("GET %s -> %d in %.3fs", response.url, response.status_code, time.monotonic() - started)
        try:
            return _redacted(_readable(_Answer(_payload(response, self.api_key), response.text)), self.api_key)
        except exc.ProfileError as error:
            failure = _bare(error)
        raise failure

    def _fetch(
        self,
        http: httpx.Client,
        params: tuple[tuple[str, str], ...],
        *,
        deadline: float,
        cancel: threading.Event | None,
    ) -> httpx.Response:
        from ._body import read_body, settled
        from ._deadline import deadline_scope

        request = http.build_request("GET", API_PATH, params=params, timeout=self.timeout)
        with deadline_scope(deadline, cancel):
            streamed = http.send(request, stream=True)
            try:
                body = read_body(streamed)
            finally:
                # Unread, the connection is dropped rather than pooled: its pool slot is free at once either way.
                streamed.close()
        return settled(streamed, body)

    def _translate(self, error: Exception, params: tuple[tuple[str, str], ...]) -> exc.ProfileError:
        """The package's exception for a foreign one raised while sending (httpx's, or the body reader's)."""
        import httpx

        from ._body import MAX_BODY_BYTES, BadEncoding, TooLarge
        from ._deadline import Expired

        where = f"HTTP answer from {self.endpoint}"
        detail = _mask(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__, self.api_key)
        if isinstance(error, (Expired, httpx.TimeoutException)):
            return exc.RequestTimeout(f"No answer from {self.endpoint} within {self.timeout:g}s.")
        if isinstance(error, TooLarge):
            return exc.ResponseTooLarge(
                f"The {where} is over {MAX_BODY_BYTES:,} bytes (at least {error.size:,}); it was not read further."
            )
        if isinstance(error, (BadEncoding, httpx.DecodingError)):
            return exc.MalformedResponse(f"The {where} cannot be decoded: {_mask(str(error), self.api_key)}.")
        if isinstance(error, httpx.InvalidURL):
            name, value = max(params, key=lambda pair: len(pair[1]), default=("query", ""))
            return exc.InvalidQuery(name, f"too long to send in a URL ({len(value):,} characters): {error}")
        if isinstance(error, httpx.ProxyError) or (self._proxy is not None and isinstance(error, httpx.ConnectError)):
            # Unnamed only if httpx changed so that its choice cannot be read (see _deadline.install).
            proxy = self._proxy.describe() if self._proxy is not None else "the environment's proxy"
            return exc.ProxyFailed(
                f"Could not reach {self.endpoint} through {proxy}: {detail}.", status=_proxy_status(error)
            )
        if isinstance(error, httpx.TransportError):
            return exc.ConnectionFailed(f"Could not reach {self.endpoint}: {detail or 'connection dropped'}.")
        return exc.UnexpectedResponse(f"The request to {self.endpoint} failed: {detail}.")


#: The trait itself (a class attribute read through the class is the descriptor), for checking a default on use.
_RATE_LIMITER = cast(SecretURLTrait, ProfileClient.__dict__["rate_limiter"])


def _bare(error: exc.ProfileError) -> exc.ProfileError:
    """``error`` without the cause and context that would carry foreign frames (and the key in their locals)."""
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error


def _mask(text: str, secret: Secret) -> str:
    from ._logfilter import mask

    return mask(redact(text, secret.reveal()))


def _proxy_status(error: Exception) -> int | None:
    # httpcore reports a refused CONNECT as "407 Proxy Authentication Required".
    head = str(error).split(" ", 1)[0]
    return int(head) if head.isdigit() and len(head) == 3 else None


def _running_shell() -> Any:
    """The running IPython shell, or None (IPython is not imported for it: outside one it is usually not loaded)."""
    ipython = sys.modules.get("IPython")
    return None if ipython is None else ipython.get_ipython()


def _validated(query: ProfileQuery, payloads: list[Any], secret: Secret) -> Profile | exc.MalformedResponse:
    """The profile, or the failure to read it, returned without a traceback: its frames hold the raw bodies."""
    try:
        return profile_from_responses(query, payloads, secret=secret)
    except exc.MalformedResponse as error:
        error.__context__ = None  # whatever was being handled when it was raised may quote the body too
        return error.with_traceback(None)
    except (ArithmeticError, LookupError, RecursionError, TypeError, ValueError) as error:
        # A shape the validation did not foresee still fails only this user, with a clear kind. The original is
        # not chained: its frames hold the raw response.
        problem = type(error).__name__
    return exc.MalformedResponse(
        f"The API's response for {query.describe()} could not be read ({problem}).", status=200
    )


def _payload(response: httpx.Response, secret: Secret | None = None) -> Any:
    """The JSON body of a 200 answer; any other answer raises the :class:`ProfileError` it stands for.

    Failures are told apart by the status, the top-level ``error`` of a JSON body, or the text of a non-JSON body.
    Never by text inside ``userData``: a profile whose property holds an error phrase is data.
    """
    status = response.status_code
    where = f"HTTP {status} from the Profile API"
    if status == 200:
        payload = _json_body(response, where, secret)
        error = payload.get("error") if isinstance(payload, dict) and "userData" not in payload else None
        if error is None:
            return payload
        # A 200 that is the API's {"error": ...} and no profile: classified like a failure status.
        message = redact(error, secret.reveal() if secret else "") if isinstance(error, str) else ""
        _raise_failure(response, where, message, message or f"an 'error' that is {type(error).__name__}", secret)
    # A proxy or a wrong endpoint may echo the request's headers in its body: mask the key before quoting it.
    # The key is revealed only inside redact: a str local here would show in tracebacks with locals.
    text = redact(response.text, secret.reveal() if secret else "")
    # Redacted again once decoded: a body may spell the key in \u escapes, which only json.loads turns back into it.
    message = redact(_error_text(text), secret.reveal() if secret else "")
    _raise_failure(response, where, message, _decoded_quote(text.strip(), secret), secret)


def _decoded_quote(text: str, secret: Secret | None) -> str:
    """A JSON body as quoted in a message: with ``\\u`` escapes, decoded and redacted again (they may spell the key)."""
    if "\\u" not in text:
        return text
    try:
        decoded = json.dumps(json.loads(text), ensure_ascii=False)
        decoded.encode("utf-8")  # a lone surrogate decoded is not text a kernel can send
    except (ValueError, RecursionError):  # not JSON, or decoding to a lone surrogate (a UnicodeEncodeError)
        return text
    return redact(decoded, secret.reveal() if secret else "")


def _raise_failure(response: httpx.Response, where: str, message: str, shown: str, secret: Secret | None) -> NoReturn:
    """Raise the error an answer stands for; ``message`` is what its body says (classified), ``shown`` the quote."""
    status = response.status_code
    if UNKNOWN_USER_TEXT in message:
        raise _unknown_user(status)
    if status == 429 or THROTTLED_TEXT in message:
        retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
        raise exc.Throttled(
            f"{where}: {_snippet(message) or 'too many requests'}.",
            status=status,
            api_message=message or None,
            retry_after=retry_after,
        )
    if status in REDIRECT_STATUSES:
        location = redact(response.headers.get("Location") or "", secret.reveal() if secret else "") or None
        raise exc.PlainHttpRedirect(
            f"{where}: redirected to {location or 'another URL'} (not followed, so the key is not resent).",
            status=status,
            location=location,
        )
    if status == 401:
        if "Missing Api-Key" in message:
            raise exc.MissingAuthHeader(f"{where}: {_snippet(shown)}.", status=status, api_message=shown)
        raise exc.InvalidKey(f"{where}: {_snippet(shown) or 'unauthorised'}.", status=status, api_message=shown or None)
    if status == 404:
        raise exc.EndpointNotFound(f"{where}: nothing at {response.url.copy_with(query=None)}.", status=status)
    if status >= 500:
        raise exc.ServerUnavailable(
            f"{where}: {_snippet(shown) or 'server error'}.", status=status, api_message=shown or None
        )
    quoted = message or shown
    raise exc.UnexpectedResponse(
        f"{where}: {_snippet(quoted) or 'no message'}.", status=status, api_message=quoted or None
    )


def _json_body(response: httpx.Response, where: str, secret: Secret | None) -> Any:
    """Parse a 200's body; a body that is not JSON, or nested past what the parser can recurse, is malformed."""
    try:
        payload = json.loads(response.content)
        if _SURROGATE.search(response.content) is None or not _has_lone_surrogate(payload):
            return payload
        # Valid JSON, but not text: a kernel cannot send it to the notebook (jupyter_client fails encoding the
        # output as UTF-8, with a raw traceback that took the whole batch with it).
        problem = "a string in it holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"
    except RecursionError:
        problem = "it is nested too deeply to read"
    except json.JSONDecodeError:
        # The body's start says more than the parser's position (an HTML error page, a truncated profile).
        problem = repr(_snippet(redact(response.text, secret.reveal() if secret else ""), 80))
    except ValueError as error:
        # The digit limit's and the decoder's messages name a size or a byte, never the body's text.
        problem = f"{type(error).__name__}: {error}"
    # Raised here, outside the except blocks: the parser's frames (which hold the raw, unredacted body in their
    # locals) must not ride along as the exception's context.
    raise exc.MalformedResponse(f"{where} is not JSON: {problem}.", status=response.status_code)


#: A surrogate escaped (\\ud800-\\udfff) or encoded as UTF-8 (which json.loads decodes with surrogatepass).
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _has_lone_surrogate(payload: Any) -> bool:
    """Whether a string in ``payload`` holds half a surrogate pair (an escaped emoji's pair is one character)."""
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (ValueError, RecursionError):
        return False
    return False


def _readable(answer: _Answer) -> _Answer:
    """``answer`` with a text the store can read back as it was parsed on arrival.

    The body was parsed from its bytes, where json.loads reads a byte-order mark and UTF-16; the store reads text,
    where it refuses both, so such an answer was stored, never reused, and fetched again by every re-run.
    """
    if answer.text[:1] == "{":
        return answer
    try:
        return _Answer(answer.payload, json.dumps(answer.payload, ensure_ascii=False))
    except (ValueError, RecursionError):
        return answer


def _redacted(answer: _Answer, secret: Secret) -> _Answer:
    """``answer`` without the key in its parsed strings and its text, for one a server or proxy echoed it into.

    Its text is redacted as it is, but a body may spell the key in \\u escapes, which only parsing turns back into
    the key: such a body (or one holding the key) is redacted once decoded and stored as the redacted JSON.
    """
    if not secret or ("\\u" not in answer.text and secret.reveal() not in answer.text):
        return answer
    try:
        decoded = json.dumps(answer.payload, ensure_ascii=False)
    except (ValueError, RecursionError):
        decoded = ""
    clean = redact(decoded, secret.reveal())
    if clean == decoded:  # the decoded strings hold no key: only the text as received may (plainly)
        return _Answer(answer.payload, redact(answer.text, secret.reveal()))
    try:
        return _Answer(json.loads(clean), clean)
    except ValueError:  # the key spanned JSON's own syntax, so masking it broke the text: refuse the answer
        pass
    raise exc.MalformedResponse("The API's response echoes the secret key where it cannot be masked.", status=200)


def _error_text(text: str) -> str:
    """What a failure body says: the top-level ``error`` of a JSON object, or the whole body when it is not JSON.

    A JSON object or list without a string ``error`` says nothing: text inside it is data, not an error message.
    """
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return text.strip()
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    if isinstance(body, dict | list):
        return ""
    return text.strip()

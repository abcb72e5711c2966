"""The local profile store: every answer the API gave, kept on disk so a re-run or a resumed batch costs nothing.

One SQLite file (stdlib ``sqlite3``, WAL mode) in the user's cache directory, fed through a journal in shared memory
(see ``_journal``: an answer is safe from a killed kernel the moment it arrives, without a statement per answer).
Each row is one request's answer, keyed by the endpoint, the request's exact query (sorted pairs) and a fingerprint
of the project, with the body as received and its fetch time. The fingerprint is an HMAC of the secret key under a
random salt kept in the file, so the file tells projects apart without holding, or letting anyone test guesses of,
the key.

Everything that can go wrong with a file (locked, full, damaged, read-only, on a network filesystem) turns the store
off for the rest of the process with one warning: a batch never fails because of its cache.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from orjson import loads as _fast_loads

from ._journal import BIG, Journal, Record, encode, make_record, orphans
from ._wal import switch_to_wal

__all__ = [
    "DB_NAME",
    "NETWORK_FILESYSTEMS",
    "ProfileStore",
    "StoreInfo",
    "StoreUnavailable",
    "StoredAnswer",
    "StoredRow",
    "clear_store",
    "default_directory",
    "filesystem_type",
    "forget_all",
    "forget_store",
    "format_age",
    "load_bodies",
    "load_body",
    "params_key",
    "parse_age",
    "remove_files",
    "shared_store",
    "store_directory",
    "store_info",
    "stored_answer",
]

log = logging.getLogger("amp_profile_magic")

DB_NAME = "profiles.sqlite3"
#: Filesystems where SQLite's locks (and WAL's shared memory) are not reliable across processes or hosts.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "afs", "9p", "fuse.sshfs", "sshfs", "lustre", "gpfs"}
)
#: Filesystems that overwrite a preallocated block in place: a journal page written there never needs new space, so
#: a full disk cannot fail the write (with a SIGBUS, as a mapped file's writes fail). Copy-on-write ones (btrfs,
#: ZFS) allocate on every overwrite; there, and wherever the type is unknown, answers go straight to SQLite.
JOURNAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "tmpfs", "overlay"})
#: Kinds of answer a row can hold: a profile, or the API's permanent "unknown user".
KINDS = ("ok", "unknown_user")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    project TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    params TEXT NOT NULL,
    kind TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    fetched_at REAL NOT NULL,
    PRIMARY KEY (project, endpoint, params)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS answers_by_age ON answers (fetched_at);
"""
#: Where Linux lists mounted filesystems (a module setting so tests can describe a network mount).
MOUNTS = Path("/proc/mounts")
#: Seconds a write waits for another process's lock before the store is given up for this process.
BUSY_TIMEOUT = 5.0
_WHERE = "project = ? AND endpoint = ? AND fetched_at >= ? AND params"
_LOOKUP_CHUNK = 500  # SQLite's default limit on bound variables is 32,766; stay well under with room for the rest
#: From this many keys, get_many counts the project's answers and walks them all when most are wanted.
_SCAN_FROM = 1_000
_EVICT_EVERY = 2_000  # writes between two size checks
#: Journaled answers folded into SQLite at once: few statements per batch, and other processes see a running
#: batch's answers at most this many behind.
_FOLD_EVERY = 256
#: Rows per folding statement: 7 bound values each, under the 999 variables of SQLite builds before 3.32.
_FOLD_CHUNK = 128
_UPSERT = (
    "INSERT INTO answers (project, endpoint, params, kind, status, body, fetched_at) VALUES {rows} "
    # The newer answer wins, whichever process folds last: a dead kernel's journal is folded in late.
    "ON CONFLICT (project, endpoint, params) DO UPDATE SET kind = excluded.kind, status = excluded.status, "
    "body = excluded.body, fetched_at = excluded.fetched_at WHERE excluded.fetched_at >= answers.fetched_at"
)
_params_of = itemgetter(0)
#: The meta row holding the latest clear's cutoff: answers fetched before it are not folded in afterwards.
_CLEARED = "cleared_before"


#: Digits enough for an integer past 64 bits (every integer of 18 digits or fewer fits orjson's int64/uint64).
_LONG_DIGITS = re.compile("[0-9]{19}")


def load_body(text: str) -> Any:
    """A stored body's JSON value, as ``json.loads`` reads it.

    orjson parses it about four times faster. What orjson refuses (NaN, infinities, lone surrogates, nesting past
    1,024 levels) goes to ``json.loads``, and so does a body with 19 digits in a row: orjson reads an integer past
    64 bits as a float, where ``json.loads`` keeps it exact. Every body reads exactly as the standard library reads it.
    """
    if _LONG_DIGITS.search(text) is None:
        try:
            return _fast_loads(text)
        except ValueError:  # orjson.JSONDecodeError is one
            pass
    return json.loads(text)


#: Bytes → 1 for an ASCII digit, 0 for anything else (UTF-8 never puts a digit byte inside another character).
_DIGIT_BYTES = bytes(1 if 0x30 <= byte <= 0x39 else 0 for byte in range(256))
_LONG_RUN = b"\x01" * 19


def load_bodies(texts: Sequence[str]) -> list[Any]:
    """Each body's JSON value as :func:`load_body` reads it, or None for one that does not parse at all.

    For a cached re-run's 100,000 bodies: one scan of them all for long digit runs (a byte translation, where the
    regex per body took longer than parsing) and orjson mapped over them from C. A body orjson refuses, and every
    body when a long digit run is anywhere, goes the way :func:`load_body` goes, one by one.
    """
    try:
        careful = _LONG_RUN in "\n".join(texts).encode("utf-8").translate(_DIGIT_BYTES)
    except UnicodeEncodeError:  # a lone surrogate: orjson refuses it, json.loads reads it
        careful = True
    if careful:
        return [_load_or_none(text) for text in texts]
    values: list[Any] = []
    remaining = iter(texts)
    while len(values) < len(texts):
        try:
            # extend keeps what the map made before a refusal, and the refused body has been taken from
            # ``remaining``: it is read the careful way and the map resumes after it.
            values.extend(map(_fast_loads, remaining))
        except ValueError:  # orjson.JSONDecodeError is one
            values.append(_load_or_none(texts[len(values)]))
    return values


def _load_or_none(text: str) -> Any:
    try:
        return load_body(text)
    except (ValueError, RecursionError):
        return None


class StoredAnswer(NamedTuple):
    """One stored answer: ``kind`` is ``"ok"`` (``body`` is the JSON as received) or ``"unknown_user"``.

    Its fields are a :data:`StoredRow`'s, in the same order.
    """

    params: str
    kind: str
    status: int
    body: str
    fetched_at: float


#: A stored answer as SQLite returns it, ``(params, kind, status, body, fetched_at)``: what :meth:`ProfileStore.rows`
#: gives, for a re-run's 100,000 answers, because making a :class:`StoredAnswer` of each row took longer than the
#: SELECT itself.
StoredRow = tuple[str, str, int, str, float]


def stored_answer(row: StoredRow | None) -> StoredAnswer | None:
    """``row`` with its fields named, or None for no row."""
    return None if row is None else StoredAnswer._make(row)


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """What ``%ampprofile_store`` shows: where the store is, how big, how many answers, their fetch times."""

    path: Path
    size: int
    entries: int
    oldest: float | None
    newest: float | None
    projects: int
    disabled: str | None = None

    @classmethod
    def empty(cls, path: Path, *, disabled: str | None = None) -> StoreInfo:
        """A store with nothing in it (none yet, or one that is off)."""
        return cls(path=path, size=0, entries=0, oldest=None, newest=None, projects=0, disabled=disabled)

    def describe(self, now: float | None = None) -> str:
        """A few lines for people."""
        now = time.time() if now is None else now
        lines = [f"Local profile store: {self.path}"]
        if self.disabled:
            lines.append(f"  not usable, so off: {self.disabled}. {_advice(self.disabled)}".rstrip())
            return "\n".join(lines)
        answers = f"{self.entries:,} answer{'' if self.entries == 1 else 's'}"
        projects = f"{self.projects} project{'' if self.projects == 1 else 's'}"
        lines.append(f"  size: {_bytes(self.size)} on disk; {answers} from {projects}")
        if self.oldest is not None and self.newest is not None:
            lines.append(
                f"  fetched: oldest {format_age(now - self.oldest)} ago ({_when(self.oldest)}), newest "
                f"{format_age(now - self.newest)} ago ({_when(self.newest)})"
            )
        return "\n".join(lines)


def params_key(params: Iterable[tuple[str, str]]) -> str:
    """The exact query, pairs sorted: what a request is stored under (the cassette matches on the same pairs).

    The ``repr`` of the sorted pairs rather than a URL query string: as exact and unambiguous (Python escapes
    quotes and control characters the same way in every version), and C-fast, where urlencode (or json.dumps) was a
    large share of a cached 100,000-user re-run.
    """
    return repr(tuple(sorted(params)))


def default_directory() -> Path:
    """The platform's cache directory for this package (``$XDG_CACHE_HOME/amp_profile_magic`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("amp_profile_magic", appauthor=False))


def store_directory(setting: str) -> Path | None:
    """The directory a ``ProfileClient.store`` setting names: ``""`` the default, ``"off"`` none, else a path."""
    text = setting.strip()
    if text.lower() == "off":
        return None
    if not text:
        return default_directory()
    return Path(text).expanduser().resolve()


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` (Linux: from /proc/mounts), or None where it cannot be told."""
    try:
        mounts = MOUNTS.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, kind = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def _make_private_directory(directory: Path) -> None:
    """Create ``directory`` and any missing parent owner-only (0700); existing ones are left as they are."""
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another kernel made it first
            candidate.mkdir(mode=0o700)
            os.chmod(candidate, 0o700)  # mkdir's mode passes through the umask; say exactly what is meant


def _uncreatable(directory: Path) -> str | None:
    """Why no store could be created in ``directory`` (a file in the way, a directory not writable), or None."""
    parent = _existing_parent(directory)
    if not parent.is_dir():
        return f"{parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    try:
        # What access() cannot tell (root passes it everywhere; /proc and read-only mounts refuse anyway): a
        # directory made and removed at once, where the store's would go.
        os.rmdir(tempfile.mkdtemp(prefix=".amp-profile-probe-", dir=parent))
    except OSError as error:
        return f"{directory} cannot be created in {parent} ({_describe(error)})"
    return None


def _existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


class StoreUnavailable(Exception):
    """The store cannot be used (why is in the message); the caller continues without it."""


class ProfileStore:
    """One SQLite store file, shared by threads of this process and by other processes.

    Every method degrades instead of raising: after the first failure the store is off (:attr:`disabled` says
    why), one warning has been logged, lookups miss and writes are dropped.
    """

    def __init__(
        self, directory: Path, *, max_bytes: int, busy_timeout: float | None = None, warn: bool = True
    ) -> None:
        self.directory = directory
        self.path = directory / DB_NAME
        self.max_bytes = max_bytes
        self.disabled: str | None = None
        self._busy_timeout = BUSY_TIMEOUT if busy_timeout is None else busy_timeout
        self._warn = warn
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._salt: bytes | None = None
        self._writes = 0
        self._journal: Journal | None = None
        self._journal_refused = True  # until _open finds the directory on a filesystem that suits one
        try:
            self._open()
        except (StoreUnavailable, sqlite3.Error, OSError) as error:
            self._disable(error)

    def __repr__(self) -> str:
        state = f"off: {self.disabled}" if self.disabled else "on"
        return f"<ProfileStore {self.path} ({state})>"

    # -- opening --------------------------------------------------------------------------------------------------

    def _open(self) -> None:
        kind = filesystem_type(_existing_parent(self.directory))
        self._journal_refused = kind not in JOURNAL_FILESYSTEMS
        if kind is not None and (kind in NETWORK_FILESYSTEMS or kind.startswith(("nfs", "fuse.sshfs"))):
            raise StoreUnavailable(
                f"it is on a network filesystem ({kind}), where SQLite's locking is unsafe; point it at a local "
                "disk with AMPLITUDE_PROFILE_STORE=/tmp/$USER-amp-profile (or %config ProfileClient.store)"
            )
        _make_private_directory(self.directory)
        # Create the file owner-only before SQLite opens it: SQLite gives its -wal and -shm files the same mode.
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(descriptor)
        db = sqlite3.connect(self.path, timeout=self._busy_timeout, check_same_thread=False, isolation_level=None)
        try:
            mode = switch_to_wal(db, self._busy_timeout)
            if str(mode).lower() != "wal":
                raise StoreUnavailable(f"SQLite could not switch it to WAL mode (got {mode!r})")
            # NORMAL in WAL mode: a power cut may lose the last answers, never corrupt the file; each one is cheap.
            db.execute("PRAGMA synchronous=NORMAL")
            # Personal data: deleted answers are overwritten in the file, not just unlinked from the b-tree.
            db.execute("PRAGMA secure_delete=ON")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('salt', ?)", (os.urandom(32),))
            row = db.execute("SELECT value FROM meta WHERE name = 'salt'").fetchone()
        except BaseException:
            db.close()
            raise
        self._salt = bytes(row[0])
        self._db = db
        self._recover(db)

    def _disable(self, error: BaseException) -> None:
        if self.disabled is not None:
            return
        reason = str(error) if isinstance(error, StoreUnavailable) else _describe(error)
        self.disabled = reason
        db, self._db = self._db, None
        journal, self._journal = self._journal, None
        if journal is not None:
            # Its answers stay on disk, unlocked: whoever next opens a working store folds them in.
            with contextlib.suppress(OSError):
                journal.abandon()
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        if self._warn:
            log.warning(
                "The local profile store %s is not usable (%s); continuing without it: nothing is resumed or cached. "
                "%s",
                self.path,
                reason,
                _advice(reason),
            )

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection | None]:
        """The connection under the lock, or None when off; any SQLite or OS error turns the store off."""
        with self._lock:
            if self._db is None:
                yield None
                return
            try:
                yield self._db
            except (sqlite3.Error, OSError) as error:
                self._disable(error)

    # -- the project fingerprint ----------------------------------------------------------------------------------

    def fingerprint(self, secret: str) -> str:
        """The project's id in this store: an HMAC of its key under this store's random salt (the key is not kept)."""
        salt = self._salt or b""
        return hmac.new(salt, secret.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    # -- answers --------------------------------------------------------------------------------------------------

    def get_many(
        self, *, project: str, endpoint: str, params: Sequence[str], max_age: float, now: float | None = None
    ) -> dict[str, StoredAnswer]:
        """The stored answers no older than ``max_age`` seconds for these query keys (missing ones left out)."""
        found = self.rows(project=project, endpoint=endpoint, params=params, max_age=max_age, now=now)
        return {key: StoredAnswer._make(row) for key, row in found.items()}

    def rows(
        self, *, project: str, endpoint: str, params: Sequence[str], max_age: float, now: float | None = None
    ) -> dict[str, StoredRow]:
        """:meth:`get_many`'s answers as SQLite returns them (see :data:`StoredRow`), for a batch's many keys.

        When most of the project's answers are wanted (a re-run cell), the walk returns the few others of the project
        along with them: callers look answers up by key, and sorting them out cost more than carrying them.
        """
        found: dict[str, StoredRow] = {}
        oldest = (time.time() if now is None else now) - max_age
        wanted = params if isinstance(params, list) else list(params)
        with self._using() as db:
            if db is None:
                return found
            self._fold(db)
            self._recover(db)
            # A batch's keys repeat only where two of its queries share a request (props, and props with comps, for
            # one user): the choice below counts them as given, and only the lookups in chunks drop repeats.
            if len(wanted) >= _SCAN_FROM:
                scope = (project, endpoint)
                # Every answer's count first: SQLite counts a whole table from its smallest index, several times
                # faster than the project's own count, which is needed only when other projects' answers are many.
                (count,) = db.execute("SELECT count(*) FROM answers").fetchone()
                if len(wanted) * 2 < count:
                    (count,) = db.execute(
                        "SELECT count(*) FROM answers WHERE project = ? AND endpoint = ?", scope
                    ).fetchone()
                if len(wanted) * 2 >= count:
                    # Most of the project's answers are wanted (a re-run cell): one walk along the primary key
                    # beats thousands of chunked IN lookups into it. At most as many others come along.
                    rows = db.execute(
                        "SELECT params, kind, status, body, fetched_at FROM answers "
                        "WHERE project = ? AND endpoint = ? AND fetched_at >= ?",
                        (*scope, oldest),
                    ).fetchall()
                    # The dict built in C, from the rows as they are.
                    return dict(zip(map(_params_of, rows), rows, strict=True))
            unique = list(dict.fromkeys(wanted))
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                # Only "?" placeholders are formatted in; every value is bound.
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT params, kind, status, body, fetched_at FROM answers WHERE {_WHERE} IN ({marks})"  # noqa: S608
                rows = db.execute(sql, (project, endpoint, oldest, *chunk)).fetchall()
                found.update(zip(map(_params_of, rows), rows, strict=True))
        return found

    def get(self, *, project: str, endpoint: str, params: str, max_age: float) -> StoredAnswer | None:
        """The stored answer for one query key, if there is one no older than ``max_age`` seconds."""
        return self.get_many(project=project, endpoint=endpoint, params=[params], max_age=max_age).get(params)

    def put(
        self,
        *,
        project: str,
        endpoint: str,
        params: str,
        kind: str,
        status: int,
        body: str,
        fetched_at: float | None = None,
    ) -> None:
        """Keep one answer (replacing an older one for the same key), safe from a killed process once this returns.

        It reaches SQLite, and other processes, with the next fold: after :data:`_FOLD_EVERY` answers, on any read
        or :meth:`flush` in this process, at :meth:`close` or exit, or when a later process finds it orphaned.
        """
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        when = time.time() if fetched_at is None else fetched_at
        record = make_record((project, endpoint, params, kind, status, body, when))
        try:
            encoded = encode(record)
        except UnicodeEncodeError:
            # A lone surrogate (from a \ud800 escape in an error body, say): SQLite cannot take it either. Not
            # stored means fetched again next time, which is all a cache may cost.
            log.debug("An answer with text that is not valid Unicode was not stored.")
            return
        with self._using() as db:
            if db is None:
                return
            journal = self._open_journal()
            if journal is None or len(encoded) > BIG:
                self._fold(db)  # the journal's older answers first, so the newer one is the one kept
                self._insert(db, [record])
                return
            if not journal.append(encoded):
                self._fold(db)
                journal.append(encoded)
            if journal.count >= _FOLD_EVERY:
                self._fold(db)

    def flush(self) -> None:
        """Fold the journaled answers into SQLite now, where other processes see them (a batch's end calls this)."""
        with self._using() as db:
            if db is not None:
                self._fold(db)

    def _open_journal(self) -> Journal | None:
        if self._journal is None and not self._journal_refused:
            try:
                self._journal = Journal.create(self.directory)
            except OSError as error:
                log.debug("No journal for the store in %s (%s): answers go straight to SQLite.", self.directory, error)
            if self._journal is None:
                self._journal_refused = True
            else:
                _JOURNALED.add(self)
        return self._journal

    def _fold(self, db: sqlite3.Connection) -> None:
        journal = self._journal
        if journal is not None and journal.count:
            self._insert(db, journal.records())
            journal.reset()

    def _insert(self, db: sqlite3.Connection, records: Sequence[Record]) -> None:
        row = db.execute("SELECT value FROM meta WHERE name = ?", (_CLEARED,)).fetchone()
        if row is not None:
            # A clear in another process went before this fold: what was fetched before it stays cleared (a live
            # kernel's journal, or a dead one's, would otherwise bring cleared answers back).
            records = [record for record in records if record[6] >= row[0]]
        for start in range(0, len(records), _FOLD_CHUNK):
            chunk = records[start : start + _FOLD_CHUNK]
            rows = ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            db.execute(_UPSERT.format(rows=rows), [value for record in chunk for value in record])
        before, self._writes = self._writes, self._writes + len(records)
        if before // _EVICT_EVERY != self._writes // _EVICT_EVERY:
            self._evict(db)

    def _recover(self, db: sqlite3.Connection) -> None:
        """Fold in the journals of processes that died before folding theirs (a killed kernel's last answers)."""
        for path, records in orphans(self.directory):
            if records:
                self._insert(db, records)
                log.debug(
                    "Folded %d answers from %s, left by a process that ended without folding.",
                    len(records),
                    path,
                )

    # -- management -----------------------------------------------------------------------------------------------

    def info(self) -> StoreInfo:
        """Where the store is, its size on disk, its answers and their oldest and newest fetch times."""
        entries, oldest, newest, projects = 0, None, None, 0
        with self._using() as db:
            if db is not None:
                self._fold(db)
                entries, oldest, newest, projects = db.execute(
                    "SELECT COUNT(*), MIN(fetched_at), MAX(fetched_at), COUNT(DISTINCT project) FROM answers"
                ).fetchone()
        return StoreInfo(
            path=self.path,
            size=_files_size(self.path),
            entries=entries,
            oldest=oldest,
            newest=newest,
            projects=projects,
            disabled=self.disabled,
        )

    def clear(self, *, older_than: float | None = None) -> int:
        """Delete every answer, or those fetched more than ``older_than`` seconds ago; return how many.

        Also those other processes fetched before the clear and have not folded in yet (a running batch's last
        answers, a killed kernel's journal): they are dropped when they fold, so cleared data never comes back.
        """
        with self._using() as db:
            if db is None:
                return 0
            self._fold(db)
            cutoff = time.time() - (older_than or 0.0)
            if older_than is None:
                deleted = db.execute("DELETE FROM answers").rowcount
            else:
                deleted = db.execute("DELETE FROM answers WHERE fetched_at < ?", (cutoff,)).rowcount
            # Answers other kernels fetched before now but have not folded in yet are cleared when they fold.
            db.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                (_CLEARED, cutoff),
            )
            self._compact(db)
            return int(deleted)

    def evict(self) -> int:
        """Delete the oldest answers until the live data fits :attr:`max_bytes`; return how many went."""
        with self._using() as db:
            if db is None:
                return 0
            self._fold(db)
            return self._evict(db)

    def _evict(self, db: sqlite3.Connection) -> int:
        used = _live_bytes(db)
        if used <= self.max_bytes:
            return 0
        # Down to 90% of the cap, so a full store does not evict on every later check.
        goal = int(self.max_bytes * 0.9)
        deleted = 0
        while used > goal:
            count = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
            if not count:
                break
            batch = max(1, int(count * (1 - goal / used)) + 1)
            deleted += db.execute(
                "DELETE FROM answers WHERE (project, endpoint, params) IN "
                "(SELECT project, endpoint, params FROM answers ORDER BY fetched_at LIMIT ?)",
                (batch,),
            ).rowcount
            used = _live_bytes(db)
        # No VACUUM here: the freed pages are reused by the next answers, and the file stays near the cap.
        return deleted

    def _compact(self, db: sqlite3.Connection) -> None:
        # Deleted pages are only reused, never returned: VACUUM gives the disk back (and rewrites freed bytes).
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Fold the journal in and close the connection (the store file stays; the journal goes)."""
        with self._using() as db:
            if db is not None:
                self._fold(db)
        with self._lock:
            db, self._db = self._db, None
            journal, self._journal = self._journal, None
        _JOURNALED.discard(self)
        if journal is not None:
            with contextlib.suppress(OSError):
                journal.close()
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()


#: Stores with a journal: folded in and closed at exit, so a kernel that ends normally leaves no journal behind.
_JOURNALED: set[ProfileStore] = set()  # strong: a store dropped without close() is still folded in at exit


@atexit.register
def _fold_at_exit() -> None:
    for store in list(_JOURNALED):
        store.close()


def _leave_journals_to_the_parent() -> None:
    # A forked child shares its parent's mapping and lock: its answers would overwrite the parent's records.
    for store in list(_JOURNALED):
        journal, store._journal = store._journal, None
        if journal is not None:
            with contextlib.suppress(OSError):
                journal.abandon()  # this process's view only: the parent keeps its lock and records


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_leave_journals_to_the_parent)

# One store per directory for the life of the process: one connection shared by every client and thread, and
# one warning when it fails, however many batches follow.
_STORES: dict[Path, ProfileStore] = {}
_STORES_LOCK = threading.Lock()


def shared_store(directory: Path, *, max_bytes: int) -> ProfileStore:
    """The process's store in ``directory`` (opened on first use; its size cap follows the latest setting)."""
    with _STORES_LOCK:
        store = _STORES.get(directory)
        if store is None:
            store = _STORES[directory] = ProfileStore(directory, max_bytes=max_bytes)
        store.max_bytes = max_bytes
        return store


def forget_store(directory: Path) -> None:
    """Close and forget the process's store in ``directory``: the next use opens it again (and may warn again)."""
    with _STORES_LOCK:
        store = _STORES.pop(directory, None)
    if store is not None:
        store.close()


def forget_all() -> None:
    """Close and forget every store this process opened (tests start each case afresh)."""
    with _STORES_LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
    for store in stores:
        store.close()


def store_info(directory: Path) -> StoreInfo:
    """What the store in ``directory`` holds, without creating it when there is none.

    A store this process turned off says why; so does one that could not be created where it is set.
    """
    with _STORES_LOCK:
        live = _STORES.get(directory)
    if live is not None:
        live.flush()  # counted below through a connection of its own, which sees only what is folded in
    off = live.disabled if live is not None else None
    exists = (directory / DB_NAME).exists()
    if off is None and not exists:
        off = _uncreatable(directory)
    if off is not None or not exists:
        return StoreInfo.empty(directory / DB_NAME, disabled=off)
    store = ProfileStore(directory, max_bytes=2**62, warn=False)
    try:
        return store.info()
    finally:
        store.close()


def clear_store(directory: Path, *, older_than: float | None = None) -> str:
    """Delete the stored answers (all, or those older than ``older_than`` seconds); say what was done.

    A store SQLite cannot open (damaged, say) is deleted outright when clearing everything.
    """
    path = directory / DB_NAME
    if not path.exists():
        return f"Nothing to clear: there is no local profile store at {path}."
    forget_store(directory)
    store = ProfileStore(directory, max_bytes=2**62, warn=False)
    try:
        if store.disabled is None:
            deleted = store.clear(older_than=older_than)
        elif older_than is None:
            store.close()
            try:
                removed = remove_files(directory)
            except OSError as error:  # not a file SQLite could open, nor one to unlink: a directory in the way
                raise StoreUnavailable(f"cannot clear {path} ({_describe(error)}): move it away by hand") from None
            return f"Removed the unusable local profile store ({store.disabled}): {', '.join(map(str, removed))}."
        else:
            raise StoreUnavailable(f"cannot clear part of {path}: {store.disabled}; clear all of it instead")
        if store.disabled is not None:
            raise StoreUnavailable(f"cannot clear {path}: {store.disabled}")
    finally:
        store.close()
    # Under a minute the age is given in seconds: format_age's "0 min" read as "everything".
    age = None if older_than is None else f"{older_than:g} s" if older_than < 60 else format_age(older_than)
    which = "" if age is None else f" fetched more than {age} ago"
    return f"Deleted {deleted:,} stored answer{'' if deleted == 1 else 's'}{which} from {path}."


def remove_files(directory: Path) -> list[Path]:
    """Delete the store's files outright (for a damaged store that SQLite cannot open); return what went."""
    removed = []
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = directory / f"{DB_NAME}{suffix}"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    # Dead processes' journals hold answers for the removed file (its salt gone, they could never be read again);
    # a running kernel's journal is its own to fold into the new file.
    removed += [path for path, _records in orphans(directory)]
    return removed


def _live_bytes(db: sqlite3.Connection) -> int:
    pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    return int(pages) * int(db.execute("PRAGMA page_size").fetchone()[0])


def _files_size(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += (path.parent / f"{path.name}{suffix}").stat().st_size
    return total


def _advice(reason: str) -> str:
    """What to do about a store that went off, by why it did."""
    if "locked" in reason:
        # Clearing would reopen it, but by deleting every answer: waiting for the other process is the usual fix.
        return (
            "Another process held it locked; it stays off in this kernel until the kernel restarts. Move it with "
            "AMPLITUDE_PROFILE_STORE to keep kernels apart."
        )
    if reason.startswith("damaged"):
        return "Clear it with `amp-profile-magic store clear` (or %ampprofile_store clear)."
    if "AMPLITUDE_PROFILE_STORE" in reason:  # the reason says where to move it already
        return ""
    return "Move it with AMPLITUDE_PROFILE_STORE (or %config ProfileClient.store) to a local directory you can write."


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError):
        return f"{error.strerror or error}"
    text = str(error) or type(error).__name__
    if "not a database" in text or "malformed" in text:
        return f"damaged: {text}"
    return text


def _bytes(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0))


def parse_age(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"`` or plain seconds → seconds; ValueError names what was wrong."""
    value = text.strip().lower()
    multiplier = 1.0
    for suffix, seconds in _UNITS:
        if value.endswith(suffix):
            value, multiplier = value[: -len(suffix)], seconds
            break
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{text!r} is not an age: use a number with d, h, m or s, e.g. 7d or 12h") from None
    if math.isnan(number):
        raise ValueError(f"{text!r} is not an age: use a number with d, h, m or s, e.g. 7d or 12h")
    if number < 0:
        raise ValueError(f"{text!r} is not an age: it must be zero or more")
    if not math.isfinite(number * multiplier):  # inf, or 1e400d
        raise ValueError(f"{text!r} is not an age: it must be a finite number")
    return number * multiplier


def format_age(seconds: float) -> str:
    """``"35 min"``, ``"3 h"``, ``"2 days"``: how old an answer is, to the unit people think in."""
    seconds = max(0.0, seconds)
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"

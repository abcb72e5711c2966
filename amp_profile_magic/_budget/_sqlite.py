"""The shared budget in an SQLite file: every kernel and job on one machine that uses the same file.

The spacing of sends is pyrate-limiter's ``SQLiteBucket``, one table per scope: a log of sends checked against
``Rate(1, interval)`` (no send by anyone in the last interval), taken under the library's file lock (filelock),
which makes the check-and-insert of every process on the machine one at a time. The clock is read inside that lock,
so a send's time is never older than one already logged. Beside it, in the same file and under the same lock, the
``holds`` table keeps what the library has no notion of (:class:`._window.HoldState`): the throttle hold and the
adaptive rate. Wall-clock time (``time.time``) is the clock, shared by every process of the machine and meaningful
across reboots, unlike ``time.monotonic``. The file and its lock file are private (0600 in a 0700 directory),
because scopes are named by a fingerprint of the secret key. SQLite's locks (and flock) are not reliable on network
filesystems (NFS, SMB), so a file on one is refused and the client paces in the kernel, with a warning that names
Redis or a local path.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from amp_profile_magic._wal import switch_to_wal

from ._window import MAX_AHEAD, BackendDown, HoldState, interval_ms

log = logging.getLogger("amp_profile_magic")

if TYPE_CHECKING:
    from filelock import FileLock
    from pyrate_limiter import SQLiteBucket

__all__ = ["NETWORK_FILESYSTEMS", "SqliteWindow", "filesystem_type"]

T = TypeVar("T")

#: Seconds a step waits for another process (the file lock, or SQLite's own lock) before the backend counts as
#: locked. A step holds the lock for well under a millisecond, so only a stuck or foreign lock waits this long.
BUSY_TIMEOUT = 2.0
#: Seconds between polls for the file lock while another process holds it (filelock's default is 50 ms, half an
#: interval at 600/min; a step holds the lock for a fraction of a millisecond).
LOCK_POLL = 0.001
#: Sends older than this are deleted from the log, every LEAK_EVERY seconds: the check only looks one interval back
#: (at most 20 minutes, at 1/min paced down to the floor), and the log must not grow with every batch.
KEEP_SECONDS = 1200.0
LEAK_EVERY = 10.0

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "ncpfs"}
)

_HOLDS = """
CREATE TABLE IF NOT EXISTS holds (
    scope TEXT PRIMARY KEY,
    held_until REAL NOT NULL,
    cut_factor REAL NOT NULL,
    cut_at REAL NOT NULL,
    cuts INTEGER NOT NULL
)
"""
# Constant statements: only the scope (a fingerprint) and the numbers are bound as parameters.
_SELECT = "SELECT held_until, cut_factor, cut_at, cuts FROM holds WHERE scope = ?"
_UPSERT = "INSERT OR REPLACE INTO holds (scope, held_until, cut_factor, cut_at, cuts) VALUES (?, ?, ?, ?, ?)"


class SqliteWindow:
    """Per-scope pacing in one SQLite file (pyrate-limiter's bucket plus our hold), shared by processes."""

    def __init__(self, path: Path, *, description: str) -> None:
        self.description = description
        self._path = path
        self._lock = threading.Lock()  # one connection per process; its threads take turns
        self._connection: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the file the connection has open
        self._file_lock: FileLock | None = None
        self._buckets: dict[tuple[str, int], SQLiteBucket] = {}
        self._tables: set[str] = set()
        self._leaked_at = 0.0
        self._failures = 0
        self._last_failure = BackendDown("", reason="")

    def try_send(self, scope: str, requests_per_minute: float, adaptive: bool) -> tuple[float, float, float]:
        """See :meth:`._window.SharedWindow.try_send`."""
        from pyrate_limiter import RateItem

        def step(connection: sqlite3.Connection, now_ms: int) -> tuple[float, float, float]:
            now = now_ms / 1000
            hold = _read(connection, scope, now)
            rate = hold.rate(now, requests_per_minute, adaptive)
            if hold.held_until > now:
                return hold.held_until - now, rate, now
            bucket = self._bucket(connection, scope, interval_ms(rate))
            item = RateItem(scope, now_ms)
            if not bucket.put(item):
                wait_ms = int(bucket.waiting(item))  # type: ignore[arg-type]  # a sync bucket answers an int
                if wait_ms <= MAX_AHEAD * 1000:
                    # The wait counts from now_ms, which is rounded down and already in the past: aim at the time.
                    return max((now_ms + wait_ms) / 1000 - time.time(), 0.001), rate, now
                # A logged send more than MAX_AHEAD ahead: the clock jumped back. Forget the log, do not wait for it.
                bucket.flush()
                if not bucket.put(item):
                    return 0.001, rate, now
            if now - self._leaked_at > LEAK_EVERY:
                self._leaked_at = now
                bucket.leak(now_ms - int(KEEP_SECONDS * 1000))
            return 0.0, rate, now

        return self._step(step)

    def throttle(self, scope: str, hold: float, sent_at: float | None, adaptive: bool) -> None:
        """See :meth:`._window.SharedWindow.throttle`."""

        def step(connection: sqlite3.Connection, now_ms: int) -> None:
            state = _read(connection, scope, now_ms / 1000)
            state.throttle(now_ms / 1000, hold, sent_at, adaptive)
            connection.execute(_UPSERT, (scope, state.held_until, state.cut_factor, state.cut_at, state.cuts))
            connection.commit()

        self._step(step)

    def hold_remaining(self, scope: str) -> float:
        """See :meth:`._window.SharedWindow.hold_remaining`."""
        now = time.time()
        return max(0.0, self.hold_state(scope).held_until - now)

    def open(self) -> None:
        """See :meth:`._window.SharedWindow.open`."""
        import pyrate_limiter  # noqa: F401 - imported now rather than on the first send

        self._step(lambda connection, now_ms: None)

    def hold_state(self, scope: str) -> HoldState:
        """The scope's stored hold and adaptive rate (for tests and diagnostics)."""
        return self._step(lambda connection, now_ms: _read(connection, scope, now_ms / 1000))

    def close(self) -> None:
        """Close the connection; the next step reopens it."""
        with self._lock:
            self._drop_connection()

    def _bucket(self, connection: sqlite3.Connection, scope: str, interval: int) -> SQLiteBucket:
        """The library's bucket for ``scope`` at one send per ``interval`` ms (one object per rate, one table)."""
        from pyrate_limiter import Rate, SQLiteBucket, SQLiteQueries

        bucket = self._buckets.get((scope, interval))
        if bucket is None:
            table = f"sends_{scope}"  # a hex fingerprint: safe inside the library's quoted table name
            if table not in self._tables:
                connection.execute(SQLiteQueries.CREATE_BUCKET_TABLE.format(table=table))
                connection.execute(
                    SQLiteQueries.CREATE_INDEX_ON_TIMESTAMP.format(index_name=f"idx_{table}", table_name=table)
                )
                connection.commit()
                self._tables.add(table)
            # Rate(1, n) admits a send when none is logged at or after now - n: the gap is n + 1 ms, hence n - 1.
            bucket = SQLiteBucket([Rate(1, max(1, interval - 1))], connection, table, lock=self._file_lock)
            self._buckets[scope, interval] = bucket
        return bucket

    def _step(self, apply: Callable[[sqlite3.Connection, int], T]) -> T:
        failures = self._failures
        with self._lock:
            if self._failures != failures:
                # The step before ours failed while we queued: fail at once, or eight threads would each wait out
                # the busy timeout in turn.
                raise self._last_failure
            try:
                connection = self._connect()
                assert self._file_lock is not None
                self._file_lock.acquire(timeout=BUSY_TIMEOUT, poll_interval=LOCK_POLL)
                try:
                    # The clock is read holding the lock: no send logged after ours can carry an earlier time.
                    return apply(connection, time.time_ns() // 1_000_000)
                except BaseException:
                    if connection.in_transaction:
                        connection.rollback()
                    raise
                finally:
                    self._file_lock.release()
            except (sqlite3.Error, OSError) as error:
                self._drop_connection()
                self._failures += 1
                self._last_failure = self._down(error)
                raise self._last_failure from None

    def _down(self, error: BaseException) -> BackendDown:
        from filelock import Timeout

        if isinstance(error, BackendDown):
            return error
        text = str(error)
        if isinstance(error, Timeout):
            reason, text = "budget file locked", f"locked by another process for over {BUSY_TIMEOUT:g} s"
        elif "locked" in text:
            reason = "budget file locked"
        elif "readonly" in text or getattr(error, "errno", None) in {errno.EACCES, errno.EPERM, errno.EROFS}:
            reason = "budget file read-only"
        else:
            reason = "budget file unusable"
        return BackendDown(f"the rate budget file {self._path} is unusable: {text}", reason=reason)

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            if self._file_id == _file_id(self._path):
                return self._connection
            # The file was deleted or replaced (a cache cleaner, `rm -rf ~/.cache`): this connection still has the
            # old one open, where no other kernel counts any more. Join the file the others now open.
            log.warning("The rate budget file %s was deleted or replaced; counting in the new one.", self._path)
            self._drop_connection()
        fstype = filesystem_type(self._path.parent)
        if fstype in NETWORK_FILESYSTEMS:
            raise BackendDown(
                f"the rate budget file {self._path} is on a network filesystem ({fstype}), where SQLite's locks are "
                "not reliable: set ProfileClient.rate_limiter (or $AMPLITUDE_PROFILE_RATE_LIMITER) to a redis:// URL, "
                "or to sqlite:/// and a path on a local disk",
                reason=f"budget file on {fstype}",
            )
        try:
            from filelock import FileLock
        except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
            raise BackendDown(
                "the shared rate budget needs filelock and pyrate-limiter: pip install amp_profile_magic",
                reason="pyrate-limiter missing",
            ) from None
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created private before SQLite opens it (SQLite would use the umask); its -wal and -shm files inherit it.
        os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
        connection = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT, check_same_thread=False)
        try:
            # WAL: a commit appends to the log instead of rewriting a journal file, and synchronous=NORMAL skips the
            # fsync per commit. A crash may lose the last few sends, which costs nothing here; it cannot corrupt.
            switch_to_wal(connection, BUSY_TIMEOUT)
            connection.execute("PRAGMA synchronous=NORMAL")
            # Fold the log back into the file every 64 pages: the state is small, the log need not grow to 4 MB.
            connection.execute("PRAGMA wal_autocheckpoint=64")
            connection.execute(_HOLDS)
            connection.commit()
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._file_id = _file_id(self._path)
        self._file_lock = FileLock(self._path.with_name(self._path.name + ".lock"), mode=0o600)
        return connection

    def _drop_connection(self) -> None:
        # After an error the next step starts from a fresh connection (the file may have been fixed meanwhile).
        connection, self._connection = self._connection, None
        self._buckets.clear()
        self._tables.clear()
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _read(connection: sqlite3.Connection, scope: str, now: float) -> HoldState:
    row = connection.execute(_SELECT, (scope,)).fetchone()
    state = HoldState(*row) if row else HoldState()
    state.forget_the_future(now)
    return state


def filesystem_type(directory: Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem ``directory`` is on (``"nfs4"``, ``"ext4"``…), from ``/proc/self/mounts``.

    None where that file does not exist (not Linux). ``mounts`` replaces the file's text (for tests).
    """
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    target = _existing_ancestor(directory)
    best: tuple[int, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # Spaces and the like in mount points are written as octal escapes (\040).
        point = fields[1].encode().decode("unicode_escape")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fields[2])
    return best[1] if best else None


def _existing_ancestor(directory: Path) -> str:
    """``directory`` with symlinks resolved as far as it exists (the budget may create the rest)."""
    path = directory.expanduser().absolute()
    missing: list[str] = []
    while not path.exists() and path != path.parent:
        missing.insert(0, path.name)
        path = path.parent
    return os.path.join(os.path.realpath(path), *missing)

"""The shared budget in an SQLite file: every kernel and job on one machine that uses the same file.

Each step is one ``BEGIN IMMEDIATE`` transaction (the file's write lock, taken by one process at a time, waiting
at most :data:`BUSY_TIMEOUT`): read the scope's row, apply the step (:class:`._gcra.ScopeState`), write it back.
Wall-clock time (``time.time``) is the clock, shared by every process of the machine and meaningful across
reboots, unlike ``time.monotonic``. The file is private (0600 in a 0700 directory), because scopes are named by a
fingerprint of the secret key. SQLite's locks are not reliable on network filesystems (NFS, SMB), so a file on one
is refused and the client paces in the kernel, with a warning that names Redis or a local path.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ._gcra import ScopeState
from ._window import BackendDown

__all__ = ["NETWORK_FILESYSTEMS", "SqliteWindow", "filesystem_type"]

T = TypeVar("T")

#: Seconds a step waits for another process's transaction before the backend counts as locked. A step holds the
#: lock for well under a millisecond, so only a stuck or foreign lock waits this long.
BUSY_TIMEOUT = 2.0

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "ncpfs"}
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget (
    scope TEXT PRIMARY KEY,
    next_slot REAL NOT NULL,
    last_send REAL NOT NULL,
    held_until REAL NOT NULL,
    cut_factor REAL NOT NULL,
    cut_at REAL NOT NULL,
    cuts INTEGER NOT NULL
)
"""
# Constant statements: only the scope (a fingerprint) and the numbers are bound as parameters.
_SELECT = "SELECT next_slot, last_send, held_until, cut_factor, cut_at, cuts FROM budget WHERE scope = ?"
_UPSERT = (
    "INSERT OR REPLACE INTO budget (scope, next_slot, last_send, held_until, cut_factor, cut_at, cuts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class SqliteWindow:
    """Per-scope pacing state in one SQLite file, updated atomically across processes."""

    def __init__(self, path: Path, *, description: str) -> None:
        self.description = description
        self._path = path
        self._lock = threading.Lock()  # one connection per process; its threads take turns
        self._connection: sqlite3.Connection | None = None
        self._failures = 0
        self._last_failure = ""

    def reserve(self, scope: str, requests_per_minute: float, adaptive: bool) -> tuple[float, float]:
        """See :meth:`._window.SharedWindow.reserve`."""
        return self._step(scope, lambda state, now: state.reserve(now, requests_per_minute, adaptive))

    def claim(self, scope: str, requests_per_minute: float, adaptive: bool) -> tuple[float, float]:
        """See :meth:`._window.SharedWindow.claim`."""
        return self._step(scope, lambda state, now: (state.claim(now, requests_per_minute, adaptive), now))

    def throttle(self, scope: str, hold: float, sent_at: float | None, adaptive: bool) -> None:
        """See :meth:`._window.SharedWindow.throttle`."""
        self._step(scope, lambda state, now: state.throttle(now, hold, sent_at, adaptive))

    def hold_remaining(self, scope: str) -> float:
        """See :meth:`._window.SharedWindow.hold_remaining`."""
        return self._step(scope, lambda state, now: max(0.0, state.held_until - now))

    def state(self, scope: str) -> ScopeState:
        """The scope's stored state (for tests and diagnostics)."""
        return self._step(scope, lambda state, now: ScopeState(*_values(state)))

    def close(self) -> None:
        """Close the connection; the next step reopens it."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _step(self, scope: str, apply: Callable[[ScopeState, float], T]) -> T:
        failures = self._failures
        with self._lock:
            if self._failures != failures:
                # The step before ours failed while we queued: fail at once, or eight threads would each wait out
                # the busy timeout in turn.
                raise BackendDown(self._last_failure)
            try:
                connection = self._connect()
                connection.execute("BEGIN IMMEDIATE")
                try:
                    row = connection.execute(_SELECT, (scope,)).fetchone()
                    state = ScopeState(*row) if row else ScopeState()
                    result = apply(state, time.time())
                    connection.execute(
                        _UPSERT,
                        (scope, *_values(state)),
                    )
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as error:
                self._drop_connection()
                self._failures += 1
                self._last_failure = f"the rate budget file {self._path} is unusable: {error}"
                raise BackendDown(self._last_failure) from None
            return result

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        fstype = filesystem_type(self._path.parent)
        if fstype in NETWORK_FILESYSTEMS:
            raise BackendDown(
                f"the rate budget file {self._path} is on a network filesystem ({fstype}), where SQLite's locks are "
                "not reliable: set ProfileClient.rate_limiter (or $AMPLITUDE_PROFILE_RATE_LIMITER) to a redis:// URL, "
                "or to sqlite:/// and a path on a local disk"
            )
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created private before SQLite opens it (SQLite would use the umask); its -wal and -shm files inherit it.
        os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
        connection = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            # WAL: a commit appends to the log instead of rewriting a journal file, and synchronous=NORMAL skips the
            # fsync per commit. A crash may lose the last few steps, which costs nothing here; it cannot corrupt.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            # Fold the log back into the file every 64 pages: the state is a few rows, the log need not grow to 4 MB.
            connection.execute("PRAGMA wal_autocheckpoint=64")
            connection.execute(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _drop_connection(self) -> None:
        # After an error the next step starts from a fresh connection (the file may have been fixed meanwhile).
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()


def _values(state: ScopeState) -> tuple[float, float, float, float, float, int]:
    return (state.next_slot, state.last_send, state.held_until, state.cut_factor, state.cut_at, state.cuts)


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

"""The store's write-ahead journal: each answer lands in shared memory the moment it arrives, SQLite takes them in bulk.

Why: a batch must lose no answer to a ``kill -9`` beyond the requests in flight, so every answer has to leave the
process before its thread sends again. One SQLite statement per answer does that, but each statement releases the
GIL a few times, and with eight busy request threads every release is a round of thread switches: that was most of
the store's +12% on a fetched batch (benchmark figure 7b). Copying the answer into a file mapped ``MAP_SHARED`` puts
it in the kernel's page cache without a system call or a GIL release, and a killed process's page cache survives
it. The store folds the journal into SQLite a few hundred answers at a time, in one statement per chunk.

One journal file per open store, named ``pending-<pid>-<random>.answers`` in the store directory, owner-only like
the rest. Its owner holds an exclusive ``flock`` on it for as long as it is open; a journal whose lock can be taken
belongs to a process that died, and whoever opens the store next folds it in and deletes it. Records are
``<length><crc32><UTF-8 JSON>``; the header is written after the body, so a record cut short by a kill reads as
the journal's end. Platforms without ``flock``, ``mmap`` or ``posix_fallocate``, filesystems that refuse to
preallocate, and those that allocate on overwrite (the store keeps a list) get no journal: the store then writes
each answer straight to SQLite, as it always could.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import mmap
import operator
import os
import secrets
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["JOURNAL_GLOB", "Journal", "Record", "encode", "make_record", "orphans"]

log = logging.getLogger("amp_profile_magic")

#: A journal's row: project, endpoint, params, kind, status, body, fetched_at (the store's columns, in order).
Record = tuple[str, str, str, str, int, str, float]

#: The journal files in a store directory, by name (:func:`orphans` also takes the ``.pending-*.tmp`` staging
#: names a kill can leave behind).
JOURNAL_GLOB = "pending-*.answers"
_SIZE = 4 << 20  # preallocated, so a full disk fails here with ENOSPC and never later as a SIGBUS on a page
_HEADER = struct.Struct("<II")
#: A record larger than this goes straight to SQLite: the journal is for the many small answers of a batch.
BIG = 1 << 20

try:
    import fcntl

    _fallocate = os.posix_fallocate
except (ImportError, AttributeError):  # Windows has no fcntl, macOS no posix_fallocate: answers go to SQLite
    fcntl = None  # type: ignore[assignment]


class Journal:
    """This process's journal for one store directory; the store serialises every call (it holds its lock)."""

    def __init__(self, *, path: Path, descriptor: int, memory: mmap.mmap) -> None:
        self.path = path
        self._descriptor = descriptor
        self._memory = memory
        self._end = 0
        #: Records appended since the last :meth:`reset`.
        self.count = 0

    @classmethod
    def create(cls, directory: Path) -> Journal | None:
        """A new, locked journal in ``directory``, or None where the platform or the filesystem cannot keep one."""
        if fcntl is None:
            return None
        stem = f"pending-{os.getpid()}-{secrets.token_hex(4)}"
        staging = directory / f".{stem}.tmp"
        descriptor = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            # Locked before it is given the name others look for, so nobody can take it for a dead process's.
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _fallocate(descriptor, 0, _SIZE)
            memory = mmap.mmap(descriptor, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            path = directory / f"{stem}.answers"
            os.rename(staging, path)
        except BaseException:
            os.close(descriptor)
            with contextlib.suppress(OSError):
                staging.unlink()
            raise
        return cls(path=path, descriptor=descriptor, memory=memory)

    def append(self, record: bytes) -> bool:
        """Keep one encoded record; False when it does not fit (fold, :meth:`reset`, and append again)."""
        start, end = self._end, self._end + _HEADER.size + len(record)
        if end > _SIZE:
            return False
        self._memory[start + _HEADER.size : end] = record
        self._memory[start : start + _HEADER.size] = _HEADER.pack(len(record), zlib.crc32(record))
        self._end = end
        self.count += 1
        return True

    def records(self) -> list[Record]:
        """The records held since the last :meth:`reset`, in the order they were appended."""
        return list(_read(self._memory, self._end))

    def reset(self) -> None:
        """Forget the records (once SQLite holds them): overwritten with zeros, as the store's deletes are."""
        if self._end:
            self._memory[: self._end] = bytes(self._end)
        self._end = 0
        self.count = 0

    def abandon(self) -> None:
        """Let go of the file as it is, records and all, for the next process that opens the store to fold in."""
        self._memory.close()
        os.close(self._descriptor)

    def close(self) -> None:
        """Wipe and delete the file and let go of it (call once its records are in SQLite)."""
        self.reset()
        with contextlib.suppress(OSError):
            # The zeros onto the disk before its blocks are freed: a deleted file's dirty pages are never written.
            self._memory.flush()
            self.path.unlink()
        self._memory.close()
        os.close(self._descriptor)


def encode(record: Record) -> bytes:
    """One record as the journal keeps it (raises ``UnicodeEncodeError`` for text SQLite would refuse too)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def orphans(directory: Path) -> Iterator[tuple[Path, list[Record]]]:
    """Each journal in ``directory`` whose process is gone, with its records; deleted after the caller's loop body.

    The journal stays locked while the caller folds its records in, so two processes never fold it twice. A file
    that cannot be taken (alive, gone, not ours, not a journal's size) is passed over, never an error.
    """
    if fcntl is None:
        return
    try:
        names = [entry.name for entry in os.scandir(directory)]
    except OSError:
        return
    for name in names:
        if not (name.startswith(("pending-", ".pending-")) and name.endswith((".answers", ".tmp"))):
            continue
        path = directory / name
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # gone already (folded by another process), or not ours to open
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                opened = os.fstat(descriptor)
                named = os.stat(path, follow_symlinks=False)
            except OSError:
                continue  # its process is alive, or it went while we waited
            # Its owner may have closed and deleted it between our open and our lock: then it is not this name's
            # file any more (and the lock was free because nobody needs it). Anything larger is not a journal.
            if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino) or not 0 <= opened.st_size <= _SIZE:
                continue
            data = os.pread(descriptor, opened.st_size, 0)
            yield path, list(_read(data, len(data)))
            # Folded: wipe the answers onto the disk before the blocks go back to the filesystem, then delete.
            used = len(data.rstrip(b"\0"))
            if used:
                os.pwrite(descriptor, bytes(used), 0)
                os.fsync(descriptor)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        except OSError as error:
            log.debug("Passed over the journal %s: %s", path, error)
        finally:
            os.close(descriptor)


def _read(data: Any, end: int) -> Iterator[Record]:
    """The whole records in ``data[:end]``: a torn or zeroed header marks the end, a record of the wrong shape is
    passed over (only this module writes these files, but a hand-edited one must not reach SQLite and turn it off).
    """
    offset = 0
    while offset + _HEADER.size <= end:
        length, checksum = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        if not length or start + length > end:
            return
        body = bytes(data[start : start + length])
        if zlib.crc32(body) != checksum:
            return
        offset = start + length
        try:
            record = make_record(json.loads(body))
        except (ValueError, TypeError, OverflowError, RecursionError):
            continue
        yield record


def make_record(values: Sequence[Any]) -> Record:
    """The store's row for these seven values (:data:`Record`'s order); ``TypeError`` or ``ValueError`` for one that
    SQLite, or the store reading it back, would refuse."""
    project, endpoint, params, kind, status, body, fetched_at = values
    for name, value in (("project", project), ("endpoint", endpoint), ("params", params), ("kind", kind)):
        if type(value) is not str:
            raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if type(body) is not str:
        raise TypeError(f"body must be str, not {type(body).__name__}")
    status = operator.index(status)
    if not -(2**63) <= status < 2**63:
        raise ValueError(f"status {status} does not fit SQLite's integers")
    when = float(fetched_at)
    if not math.isfinite(when):
        raise ValueError(f"fetched_at must be a finite time, not {when}")
    return (project, endpoint, params, kind, int(status), body, when)

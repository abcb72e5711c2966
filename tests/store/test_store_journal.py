"""The store's journal: answers survive a killed process, reach SQLite in bulk, and never outlive their welcome."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from amp_profile_magic import _journal, _store
from amp_profile_magic._journal import JOURNAL_GLOB
from amp_profile_magic._store import ProfileStore

from .conftest import store_files

BIG = 2**40

# A process that journals COUNT answers, says so, then waits to be killed (or, with "exit", returns normally; with
# "stdin", returns normally once a line arrives on its standard input).
_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from amp_profile_magic._store import ProfileStore
    directory, count, ending = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    store = ProfileStore(directory, max_bytes=2**40)
    for index in range(count):
        body = json.dumps({"userData": {"user_id": f"u{index}", "n": index}})
        store.put(project="p", endpoint="e", params=f"user_id=u{index}", kind="ok", status=200, body=body)
    print("journaled", flush=True)
    if ending == "wait":
        time.sleep(120)
    elif ending == "stdin":  # until told to end, then a normal exit (the journal folded in at exit)
        sys.stdin.readline()
    """
)


def _writer(directory: Path, count: int, ending: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory), str(count), ending],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def _run(code: str, directory: Path) -> None:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(directory)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _rows(directory: Path) -> dict[str, str]:
    db = sqlite3.connect(directory / _store.DB_NAME)
    try:
        return dict(db.execute("SELECT params, body FROM answers").fetchall())
    finally:
        db.close()


def _put(store: ProfileStore, key: str, body: str, fetched_at: float | None = None) -> None:
    store.put(project="p", endpoint="e", params=key, kind="ok", status=200, body=body, fetched_at=fetched_at)


def test_a_killed_writers_answers_are_folded_in_by_the_next_store(store_dir: Path) -> None:
    """Answers journaled by a process killed with SIGKILL (fewer than one fold) are all there for the next opener."""
    count = _store._FOLD_EVERY - 6  # none of them folded by the writer itself
    writer = _writer(store_dir, count, "wait")
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "journaled"
    assert len(list(store_dir.glob(JOURNAL_GLOB))) == 1
    assert _rows(store_dir) == {}, "the answers were to be in the journal only"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)

    store = ProfileStore(store_dir, max_bytes=BIG)
    found = store.get_many(project="p", endpoint="e", params=[f"user_id=u{i}" for i in range(count)], max_age=3600)
    store.close()
    assert len(found) == count
    assert json.loads(found["user_id=u7"].body) == {"userData": {"user_id": "u7", "n": 7}}
    assert list(store_dir.glob(JOURNAL_GLOB)) == [], "a folded journal is deleted"


def test_a_live_writers_journal_is_left_alone_until_it_exits(store_dir: Path) -> None:
    """Another process never takes a running process's journal; that process folds it in itself when it exits."""
    reader = ProfileStore(store_dir, max_bytes=BIG)
    writer = _writer(store_dir, 10, "wait")
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "journaled"
    keys = [f"user_id=u{i}" for i in range(10)]
    assert reader.get_many(project="p", endpoint="e", params=keys, max_age=3600) == {}
    assert len(list(store_dir.glob(JOURNAL_GLOB))) == 1, "the live journal stays where it is"
    writer.terminate()  # SIGTERM: Python's default handler ends the process without running atexit
    writer.wait(timeout=30)
    assert len(reader.get_many(project="p", endpoint="e", params=keys, max_age=3600)) == 10
    reader.close()

    exiting = _writer(store_dir, 10, "exit")
    assert exiting.communicate(timeout=60)[0].strip() == "journaled"
    assert exiting.returncode == 0
    assert list(store_dir.glob(JOURNAL_GLOB)) == [], "a process that exits normally folds its journal in"
    assert len(_rows(store_dir)) == 10


def test_a_torn_record_ends_the_journal_and_the_whole_ones_are_kept(store_dir: Path) -> None:
    """A record cut short (a kill mid-copy) or garbage after it costs only itself: the records before it are folded."""
    store = ProfileStore(store_dir, max_bytes=BIG)
    for index in range(5):
        _put(store, f"user_id=u{index}", f'{{"n": {index}}}')
    (journal,) = store_dir.glob(JOURNAL_GLOB)
    data = journal.read_bytes()
    torn = data.index(b"user_id=u4") + 4  # inside the fifth record
    store._journal.abandon()  # type: ignore[union-attr]  # as a killed process leaves it
    store._journal = None
    store._db.close()  # type: ignore[union-attr]
    store._db = None
    journal.write_bytes(data[:torn] + b"\xff" * 40)  # the fifth record torn, then noise

    again = ProfileStore(store_dir, max_bytes=BIG)
    found = again.get_many(project="p", endpoint="e", params=[f"user_id=u{i}" for i in range(5)], max_age=3600)
    again.close()
    assert sorted(found) == [f"user_id=u{i}" for i in range(4)]


def test_a_late_folded_older_answer_never_replaces_a_newer_one(store_dir: Path) -> None:
    """A dead process's journal folded in after a newer answer was stored leaves the newer answer in place."""
    writer = _writer(store_dir, 3, "wait")  # journals u0..u2 now
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "journaled"
    store = ProfileStore(store_dir, max_bytes=BIG)
    _put(store, "user_id=u1", '{"newer": true}')
    store.flush()
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    found = store.get_many(project="p", endpoint="e", params=["user_id=u0", "user_id=u1"], max_age=3600)
    store.close()
    assert json.loads(found["user_id=u1"].body) == {"newer": True}
    assert json.loads(found["user_id=u0"].body)["userData"]["n"] == 0


def test_without_a_journal_answers_go_straight_to_sqlite(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem that cannot preallocate the journal costs nothing but speed: each answer is written at once."""

    def refuse(descriptor: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(_journal, "_fallocate", refuse)
    store = ProfileStore(store_dir, max_bytes=BIG)
    _put(store, "user_id=a", '{"a": 1}')
    assert store.disabled is None
    assert _rows(store_dir) == {"user_id=a": '{"a": 1}'}, "written through, visible to other processes at once"
    assert [path.name for path in store_dir.iterdir() if "pending" in path.name] == [], "no half-made journal left"
    store.close()


def test_a_large_answer_goes_straight_to_sqlite_after_the_journal(store_dir: Path) -> None:
    """An answer over the journal's record limit is written directly, after the older journaled answers."""
    store = ProfileStore(store_dir, max_bytes=BIG)
    _put(store, "user_id=a", '{"small": 1}')
    large = json.dumps({"large": "x" * (_journal.BIG + 10)})
    _put(store, "user_id=a", large)  # same key: the later, large answer must be the one kept
    assert _rows(store_dir) == {"user_id=a": large}
    store.close()


def test_the_journal_is_private_wiped_after_folding_and_gone_after_close(store_dir: Path) -> None:
    """The journal is owner-only, holds the answers only until they are folded (then zeros), and close deletes it."""
    store = ProfileStore(store_dir, max_bytes=BIG)
    _put(store, "user_id=a", '{"secret-ish": "personal data"}')
    (journal,) = store_dir.glob(JOURNAL_GLOB)
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    assert b"personal data" in journal.read_bytes()
    store.flush()
    assert b"personal data" not in journal.read_bytes(), "folded answers are overwritten in the journal"
    store.close()
    assert not journal.exists()
    assert [path.name for path in store_files(store_dir) if "pending" in path.name] == []


def test_many_answers_are_folded_in_chunks_and_all_kept(store_dir: Path) -> None:
    """More answers than one fold (and more than the journal's size) all arrive in SQLite, in order, none twice."""
    store = ProfileStore(store_dir, max_bytes=BIG)
    body = "y" * 20_000  # 4 MiB of journal fills after about 200 of these
    for index in range(_store._FOLD_EVERY * 3 + 5):
        _put(store, f"user_id=u{index % 500}", json.dumps({"i": index, "pad": body}))
    store.flush()
    rows = _rows(store_dir)
    assert len(rows) == 500
    assert json.loads(rows["user_id=u10"])["i"] == 510, "the later of two answers for one key is kept"
    store.close()


_FORKER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from amp_profile_magic._store import ProfileStore
    store = ProfileStore(Path(sys.argv[1]), max_bytes=2**40)
    put = lambda key: store.put(project="p", endpoint="e", params=key, kind="ok", status=200, body="{}")
    put("user_id=parent-before")
    child = os.fork()
    if child == 0:
        put("user_id=child")
        os._exit(0)  # as multiprocessing's children end: no atexit, so the child's journal is left to recover
    os.waitpid(child, 0)
    put("user_id=parent-after")
    os._exit(0)
    """
)


def test_a_forked_child_journals_apart_from_its_parent(store_dir: Path) -> None:
    """A child forked with the store open keeps a journal of its own: neither process overwrites the other's answers."""
    _run(_FORKER, store_dir)
    assert len(list(store_dir.glob(JOURNAL_GLOB))) == 2
    store = ProfileStore(store_dir, max_bytes=BIG)
    keys = ["user_id=parent-before", "user_id=child", "user_id=parent-after"]
    assert sorted(store.get_many(project="p", endpoint="e", params=keys, max_age=3600)) == sorted(keys)
    store.close()


def test_records_sqlite_would_refuse_are_passed_over_not_fatal(store_dir: Path) -> None:
    """Whole records of the wrong shape (a hand-edited journal: wrong types, NaN, huge integers) are passed over,
    the records after them kept, and the store stays on."""
    store = ProfileStore(store_dir, max_bytes=BIG)
    _put(store, "user_id=good", "{}")
    (journal,) = store_dir.glob(JOURNAL_GLOB)
    store._journal.abandon()  # type: ignore[union-attr]  # as a killed process leaves it
    store._journal = None
    store.close()
    odd = [
        ["p", "e", "user_id=odd", "ok", 200, {"not": "text"}, 1.0],
        ["p", "e", "user_id=nan", "ok", 200, "{}", float("nan")],
        ["p", "e", "user_id=huge", "ok", 2**70, "{}", 1.0],
        ["p", "e", "user_id=short", "ok"],
        ["p", "e", "user_id=after", "ok", 200, "{}", 2.0],  # a good record after the odd ones is still kept
    ]
    with journal.open("r+b") as file:
        file.seek(journal.read_bytes().index(b"\0" * 16))
        for values in odd:
            record = json.dumps(values).encode()
            file.write(_journal._HEADER.pack(len(record), zlib.crc32(record)) + record)
    again = ProfileStore(store_dir, max_bytes=BIG)
    keys = ["user_id=good", *(values[2] for values in odd)]
    found = again.get_many(project="p", endpoint="e", params=keys, max_age=1e10)  # the records date from 1970
    assert again.disabled is None
    assert sorted(found) == ["user_id=after", "user_id=good"]
    again.close()


def test_store_info_counts_the_answers_this_process_still_journals(store_dir: Path) -> None:
    """``store info`` in the kernel counts the answers its own store has journaled but not yet folded in."""
    store = _store.shared_store(store_dir, max_bytes=BIG)
    _put(store, "user_id=a", "{}")
    try:
        assert _store.store_info(store_dir).entries == 1
    finally:
        _store.forget_store(store_dir)


@pytest.mark.parametrize("kind", ["btrfs", "zfs", None])
def test_no_journal_on_copy_on_write_or_unknown_filesystems(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch, kind: str | None
) -> None:
    """Where a full disk could fail a mapped page's write (btrfs, ZFS) or the filesystem is unknown, answers go
    straight to SQLite: a journal there could kill the kernel with SIGBUS instead of turning the store off."""
    mounts = store_dir.parent / "mounts"
    mounts.write_text(f"rootfs / ext4 rw 0 0\npool {store_dir.parent} {kind} rw 0 0\n" if kind else "")
    monkeypatch.setattr(_store, "MOUNTS", mounts)
    store = ProfileStore(store_dir, max_bytes=BIG)
    _put(store, "user_id=a", '{"a": 1}')
    assert store.disabled is None
    assert list(store_dir.glob(JOURNAL_GLOB)) == []
    assert _rows(store_dir) == {"user_id=a": '{"a": 1}'}
    store.close()


def test_put_refuses_values_the_store_could_not_keep_and_keeps_going(store_dir: Path) -> None:
    """A NaN time or a non-integer status is refused at put(), naming it; unencodable text is simply not stored."""
    store = ProfileStore(store_dir, max_bytes=BIG)
    with pytest.raises(ValueError, match="fetched_at must be a finite time"):
        _put(store, "user_id=nan", "{}", fetched_at=float("nan"))
    with pytest.raises(TypeError):
        store.put(project="p", endpoint="e", params="user_id=f", kind="ok", status=200.0, body="{}")  # type: ignore[arg-type]
    _put(store, "user_id=surrogate", '{"name": "\ud800"}')  # not valid Unicode: not stored, no error
    _put(store, "user_id=good", "{}")
    found = store.get_many(
        project="p", endpoint="e", params=["user_id=nan", "user_id=surrogate", "user_id=good"], max_age=3600
    )
    assert store.disabled is None
    assert sorted(found) == ["user_id=good"]
    store.close()


_OPENER = "import sys; from pathlib import Path; from amp_profile_magic._store import ProfileStore as S\n"
_OPENER += "S(Path(sys.argv[1]), max_bytes=2**40).close()"


def test_a_journal_deleted_by_its_owner_while_another_process_waits_for_it_is_passed_over(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a journal just before its owner folds and deletes it (the lock is then free) is not an error: the
    store stays on, and the answers are in SQLite, from the owner."""
    writer = _writer(store_dir, 10, "wait")
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "journaled"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    real = _journal.fcntl

    class FoldedMeanwhile:
        """``fcntl`` whose first ``flock`` waits for another process to fold the same journal in and delete it."""

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        @staticmethod
        def flock(descriptor: int, operation: int) -> None:
            monkeypatch.setattr(_journal, "fcntl", real)
            _run(_OPENER, store_dir)  # another process opens the store meanwhile: it folds the orphan in, deletes it
            real.flock(descriptor, operation)

    monkeypatch.setattr(_journal, "fcntl", FoldedMeanwhile())
    store = ProfileStore(store_dir, max_bytes=BIG)
    assert store.disabled is None
    assert (
        len(store.get_many(project="p", endpoint="e", params=[f"user_id=u{i}" for i in range(10)], max_age=3600)) == 10
    )
    store.close()


def test_a_file_too_large_for_a_journal_is_left_alone(store_dir: Path) -> None:
    """A file named like a journal but larger than one (sparse, 8 GiB) is neither read into memory nor deleted."""
    store_dir.mkdir(mode=0o700)
    odd = store_dir / "pending-1-00000000.answers"
    with odd.open("wb") as file:
        file.truncate(8 << 30)
    store = ProfileStore(store_dir, max_bytes=BIG)
    assert store.disabled is None
    assert store.get_many(project="p", endpoint="e", params=["user_id=a"], max_age=3600) == {}
    store.close()
    assert odd.exists()


_DROPPED = textwrap.dedent(
    """
    import gc, sys
    from pathlib import Path
    from amp_profile_magic._store import ProfileStore
    store = ProfileStore(Path(sys.argv[1]), max_bytes=2**40)
    for index in range(10):
        store.put(project="p", endpoint="e", params=f"user_id=u{index}", kind="ok", status=200, body="{}")
    del store
    gc.collect()
    """
)


def test_a_store_dropped_without_close_is_folded_in_at_exit(store_dir: Path) -> None:
    """A store nobody closed (dropped, collected) still folds its journal in when the process exits normally."""
    _run(_DROPPED, store_dir)
    assert list(store_dir.glob(JOURNAL_GLOB)) == []
    assert len(_rows(store_dir)) == 10


@pytest.mark.parametrize("ending", ["exit", "kill"])
def test_a_clear_also_clears_answers_another_process_has_not_folded_in_yet(store_dir: Path, ending: str) -> None:
    """Answers a live process journaled before a clear elsewhere do not come back when it folds them in, at its
    normal exit or from its journal after a kill; an answer fetched after the clear stays, and a clear of older
    answers keeps the journaled recent ones."""
    writer = _writer(store_dir, 10, "stdin")
    assert writer.stdout is not None
    assert writer.stdin is not None
    assert writer.stdout.readline().strip() == "journaled"
    store = ProfileStore(store_dir, max_bytes=BIG)
    keys = [f"user_id=u{i}" for i in range(10)]
    assert store.clear() == 0, "nothing was folded in yet: the clear itself finds nothing"
    _put(store, "user_id=after", '{"userData": {}}')
    store.flush()
    if ending == "exit":
        writer.stdin.write("end\n")
        writer.stdin.flush()
        assert writer.wait(timeout=30) == 0
    else:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    found = store.get_many(project="p", endpoint="e", params=[*keys, "user_id=after"], max_age=3600)
    assert set(found) == {"user_id=after"}, "cleared answers came back when their journal was folded in"

    recent = _writer(store_dir, 10, "stdin")
    assert recent.stdout is not None
    assert recent.stdin is not None
    assert recent.stdout.readline().strip() == "journaled"
    assert store.clear(older_than=3600) == 0
    recent.stdin.write("end\n")
    recent.stdin.flush()
    assert recent.wait(timeout=30) == 0
    found = store.get_many(project="p", endpoint="e", params=keys, max_age=3600)
    store.close()
    assert set(found) == set(keys), "a clear of older answers dropped recent ones"
    assert list(store_dir.glob(JOURNAL_GLOB)) == []

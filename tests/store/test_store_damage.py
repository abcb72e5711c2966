"""The store under concurrency and damage: two writers and a reader, then locked, full, corrupt, read-only, NFS."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from amp_profile_magic import ProfileQuery, _store
from amp_profile_magic.emulator import Emulator
from tests.magics.helpers import api_requests

IDS = [f"user-{index:05d}" for index in range(1, 31)]
WARNING = "is not usable"

_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from amp_profile_magic._store import ProfileStore
    directory, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    store = ProfileStore(directory, max_bytes=2**40)
    for round in range(3):
        for index in range(count):
            body = json.dumps({"userData": {"user_id": f"u{index}", "writer": name, "round": round}})
            store.put(project="p", endpoint="e", params=f"user_id=u{index}", kind="ok", status=200, body=body)
    print(json.dumps({"disabled": store.disabled}))
    """
)

_READER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from amp_profile_magic._store import ProfileStore
    directory, count = Path(sys.argv[1]), int(sys.argv[2])
    store = ProfileStore(directory, max_bytes=2**40)
    reads, seen, deadline = 0, set(), time.monotonic() + 60
    while time.monotonic() < deadline:
        found = store.get_many(project="p", endpoint="e", params=[f"user_id=u{i}" for i in range(count)], max_age=3600)
        for key, answer in found.items():
            data = json.loads(answer.body)["userData"]  # every read is a whole, valid answer
            assert key == f"user_id={data['user_id']}", (key, data)
            seen.add(data["writer"])
        reads += 1
        if len(found) == count and Path(sys.argv[3]).exists():
            break
    print(json.dumps({"reads": reads, "writers_seen": sorted(seen), "disabled": store.disabled}))
    """
)

_BATCH = textwrap.dedent(
    """
    import json, logging, os, sys
    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())
    logging.getLogger("amp_profile_magic").addHandler(Keep())
    if os.environ.get("LIMIT_FILE_SIZE"):
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
        limit = int(os.environ["LIMIT_FILE_SIZE"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from amp_profile_magic import ProfileClient, ProfileQuery
    client = ProfileClient(store=sys.argv[1], endpoint=sys.argv[2], api_key=sys.argv[3], requests_per_minute=600000)
    ids = sys.argv[4].split(",")
    if os.environ.get("RUN_AS_NOBODY"):
        # Warm every lazy import first: the interpreter's own files may not be readable by nobody.
        import platformdirs, sqlite3, tenacity, amp_profile_magic._store, amp_profile_magic._cassette
        warm = ProfileClient(store="off", endpoint=sys.argv[2], api_key=sys.argv[3])
        warm.lookup_many([ProfileQuery(user_id=ids[0], props=True)])
        warm.close()
        os.setgid(65534)
        os.setuid(65534)
    batch = client.lookup_many([ProfileQuery(user_id=user, props=True) for user in ids])
    print(json.dumps({
        "ok": len(batch.profiles), "failed": len(batch.failures),
        "warnings": [text for text in records if "is not usable" in text],
    }))
    """
)


def _python(*arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )


def _result(process: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def test_two_writers_and_a_reader_lose_and_corrupt_nothing(store_dir: Path) -> None:
    """Two processes write the same keys at once while a third reads: every read is whole, nothing is lost."""
    count = 300
    _store.ProfileStore(store_dir, max_bytes=2**40).close()  # both writers then race on rows, not on creating the file
    done = store_dir / "writers-done"
    reader = _python(_READER, str(store_dir), str(count), str(done))
    writers = [_python(_WRITER, str(store_dir), name, str(count)) for name in ("a", "b")]
    for writer in writers:
        assert _result(writer) == {"disabled": None}
    done.touch()
    seen = _result(reader)
    assert seen["disabled"] is None
    assert seen["reads"] > 1
    db = sqlite3.connect(store_dir / "profiles.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = db.execute("SELECT params, body FROM answers").fetchall()
    db.close()
    assert len(rows) == count
    for params, body in rows:
        data = json.loads(body)["userData"]
        assert params == f"user_id={data['user_id']}"
        assert data["round"] == 2  # each key's last write is one writer's final round, whole
        assert data["writer"] in ("a", "b")


def _batch_is_whole(client: Any, emulator: Emulator) -> None:
    batch = client.lookup_many([ProfileQuery(user_id=user, props=True) for user in IDS])
    assert len(batch.profiles) == len(IDS), batch.failures
    assert len(api_requests(emulator)) == len(IDS)


def _one_warning(caplog: pytest.LogCaptureFixture, *words: str) -> str:
    warnings = [record.getMessage() for record in caplog.records if WARNING in record.getMessage()]
    assert len(warnings) == 1, warnings
    for word in words:
        assert word in warnings[0]
    return warnings[0]


def test_corrupt_store_degrades_to_no_store_with_one_warning(
    make_client: Any, emulator: Emulator, store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store file that is not a database: one warning, the batch runs in full without it, twice over."""
    store_dir.mkdir()
    (store_dir / "profiles.sqlite3").write_bytes(b"this is not a database, it is junk" * 200)
    caplog.set_level(logging.WARNING, logger="amp_profile_magic")
    client = make_client()
    _batch_is_whole(client, emulator)
    client.lookup_many([ProfileQuery(user_id=user, props=True) for user in IDS])
    _one_warning(caplog, "damaged", "amp-profile-magic store clear")
    assert len(api_requests(emulator)) == 2 * len(IDS)
    shown = client.store_info()
    assert "not usable, so off: damaged" in shown, shown  # not "0 answers", as if it were an empty store
    orphan = store_dir / "pending-1-0dead000.answers"  # a dead kernel's journal, for the file about to go
    orphan.write_bytes(bytes(64))
    # Clearing removes a store SQLite cannot open, and its journals; the next lookup builds a fresh one.
    assert "Removed the unusable local profile store" in client.clear_store()
    assert not orphan.exists()
    client.lookup(user_id="12345", props=True)
    assert client.profile_store() is not None


def test_a_file_where_the_store_directory_should_be_is_reported_not_shown_empty(
    make_client: Any, emulator: Emulator, store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store set under a file: the store info says it cannot be used and why, before and after a batch."""
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    in_the_way = store_dir.parent / "a-file"
    in_the_way.write_text("not a directory")
    client = make_client(store=str(in_the_way / "store"))
    before = client.store_info()
    assert f"not usable, so off: {in_the_way} is a file, not a directory" in before, before
    caplog.set_level(logging.WARNING, logger="amp_profile_magic")
    _batch_is_whole(client, emulator)
    _one_warning(caplog, "Not a directory")
    after = client.store_info()
    assert "not usable, so off: Not a directory" in after, after
    assert "AMPLITUDE_PROFILE_STORE" in after


def test_locked_store_degrades_to_no_store_with_one_warning(
    make_client: Any,
    emulator: Emulator,
    store_dir: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process holding the write lock past the busy timeout: one warning, the batch runs in full."""
    monkeypatch.setattr(_store, "BUSY_TIMEOUT", 0.2)
    _store.ProfileStore(store_dir, max_bytes=2**40).close()
    holder = sqlite3.connect(store_dir / "profiles.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        caplog.set_level(logging.WARNING, logger="amp_profile_magic")
        _batch_is_whole(make_client(), emulator)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    warning = _one_warning(caplog, "locked", "until the kernel restarts")
    assert "store clear" not in warning  # clearing would reopen it only by deleting every answer


def test_store_on_a_network_filesystem_is_not_used(
    make_client: Any, emulator: Emulator, store_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    """A store directory on NFS is refused with one warning that says how to point it at a local disk."""
    mounts = store_dir.parent / "mounts"
    mounts.write_text(f"rootfs / ext4 rw 0 0\nserver:/home {store_dir.parent} nfs4 rw,relatime 0 0\n")
    monkeypatch.setattr(_store, "MOUNTS", mounts)
    caplog.set_level(logging.WARNING, logger="amp_profile_magic")
    _batch_is_whole(make_client(), emulator)
    _one_warning(caplog, "network filesystem (nfs4)", "AMPLITUDE_PROFILE_STORE")
    assert not store_dir.exists(), "nothing may be written to the network filesystem"


def test_full_disk_degrades_to_no_store_with_one_warning(emulator: Emulator, store_dir: Path) -> None:
    """Writes failing for lack of space (a file-size limit in a child process) give one warning and a whole batch."""
    _store.ProfileStore(store_dir, max_bytes=2**40).close()
    size = max(path.stat().st_size for path in store_dir.iterdir())
    process = _python(
        _BATCH,
        str(store_dir),
        emulator.url,
        emulator.api_key,
        ",".join(IDS * 1),
        env={"LIMIT_FILE_SIZE": str(size + 8192)},
    )
    result = _result(process)
    assert result["ok"] == len(IDS)
    assert result["failed"] == 0
    assert len(result["warnings"]) == 1, result["warnings"]
    assert "full" in result["warnings"][0] or "too large" in result["warnings"][0]


def test_read_only_store_degrades_to_no_store_with_one_warning(emulator: Emulator) -> None:
    """A store the user may read but not write gives one warning and a whole batch."""
    parent = Path(tempfile.mkdtemp(prefix="amp-readonly-"))
    try:
        os.chmod(parent, 0o755)  # noqa: S103  # the other user must reach the store to read it
        directory = parent / "store"
        _store.ProfileStore(directory, max_bytes=2**40).close()
        os.chmod(directory, 0o555)  # noqa: S103  # readable, not writable: the case under test
        for path in directory.iterdir():
            os.chmod(path, 0o444)
        env = {"RUN_AS_NOBODY": "1"} if os.geteuid() == 0 else {}  # root ignores file modes: drop to nobody
        process = _python(_BATCH, str(directory), emulator.url, emulator.api_key, ",".join(IDS), env=env)
        result = _result(process)
    finally:
        for path in (parent / "store", *(parent / "store").glob("*")):
            if path.exists():
                os.chmod(path, 0o700)
        subprocess.run(["rm", "-rf", str(parent)], check=True)
    assert result["ok"] == len(IDS)
    assert len(result["warnings"]) == 1, result["warnings"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no directory can be made")
def test_store_info_says_a_store_that_cannot_be_created_is_off(tmp_path: Path) -> None:
    """A store set where no directory can be made (even by root, whom access() never refuses) shows as not usable,
    not as an empty store; a creatable place still shows as empty, and the check leaves nothing behind."""
    described = _store.store_info(Path("/proc/amp-profile-no-such/dir")).describe()
    assert "not usable, so off: /proc/amp-profile-no-such/dir cannot be created in /proc" in described
    assert "0 answers" not in described
    fresh = _store.store_info(tmp_path / "new" / "store").describe()
    assert "0 answers" in fresh
    assert list(tmp_path.iterdir()) == []

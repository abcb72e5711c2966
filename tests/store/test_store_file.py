"""The store file on its own: answers in and out, freshness, fingerprints, permissions, eviction, management."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from amp_profile_magic import _store
from amp_profile_magic._journal import JOURNAL_GLOB
from amp_profile_magic._store import ProfileStore, clear_store, params_key, parse_age, store_directory, store_info
from tests.conftest import CANARY_KEY

from .conftest import store_files

BIG = 2**40


def _put(store: ProfileStore, key: str, *, project: str = "p", fetched_at: float | None = None, body: str = "") -> None:
    body = body or "{}"
    store.put(project=project, endpoint="e", params=key, kind="ok", status=200, body=body, fetched_at=fetched_at)


def test_answers_round_trip_and_respect_max_age(store_dir: Path) -> None:
    """A stored body comes back byte for byte while fresh, and is a miss once older than max_age."""
    store = ProfileStore(store_dir, max_bytes=BIG)
    now = time.time()
    _put(store, "user_id=a", body='{"userData": {"user_id": "a"}}', fetched_at=now - 10)
    _put(store, "user_id=b", fetched_at=now - 100)
    found = store.get_many(project="p", endpoint="e", params=["user_id=a", "user_id=b", "user_id=c"], max_age=50)
    assert set(found) == {"user_id=a"}
    assert found["user_id=a"].body == '{"userData": {"user_id": "a"}}'
    assert found["user_id=a"].fetched_at == pytest.approx(now - 10)
    assert store.get(project="other", endpoint="e", params="user_id=a", max_age=50) is None
    assert store.get(project="p", endpoint="other", params="user_id=a", max_age=50) is None


def test_params_key_is_the_exact_sorted_query() -> None:
    """Two orders of the same pairs share a key; a different value does not."""
    assert params_key([("user_id", "1"), ("get_amp_props", "true")]) == "(('get_amp_props', 'true'), ('user_id', '1'))"
    one_order = params_key([("get_amp_props", "true"), ("user_id", "1")])
    assert one_order == params_key([("user_id", "1"), ("get_amp_props", "true")])
    assert params_key([("user_id", "1")]) != params_key([("user_id", "1 ")])


def test_fingerprint_hides_the_key_and_is_stable_per_store(store_dir: Path, tmp_path: Path) -> None:
    """The project fingerprint is an HMAC under the store's salt: stable when reopened, different per key and store."""
    first = ProfileStore(store_dir, max_bytes=BIG)
    fingerprint = first.fingerprint(CANARY_KEY)
    first.close()
    again = ProfileStore(store_dir, max_bytes=BIG)
    assert again.fingerprint(CANARY_KEY) == fingerprint
    assert again.fingerprint(CANARY_KEY + "x") != fingerprint
    assert ProfileStore(tmp_path / "elsewhere", max_bytes=BIG).fingerprint(CANARY_KEY) != fingerprint
    assert CANARY_KEY not in fingerprint


def test_directory_and_every_file_are_owner_only(store_dir: Path) -> None:
    """Created directories are 0700 and the database, -wal, -shm and journal files 0600, whatever the umask."""
    previous = os.umask(0o022)
    try:
        nested = store_dir / "deeper"
        store = ProfileStore(nested, max_bytes=BIG)
        _put(store, "user_id=a")
    finally:
        os.umask(previous)
    files = store_files(nested)
    assert {path.name for path in files} >= {"profiles.sqlite3", "profiles.sqlite3-wal", "profiles.sqlite3-shm"}
    assert any(path.match(JOURNAL_GLOB) for path in files), files  # the answer is still journaled, not folded
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for directory in (nested, store_dir):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_default_directory_honours_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With no setting, the store is in $XDG_CACHE_HOME/amp_profile_magic; 'off' means none; a path is used as is."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store_directory("") == tmp_path / "xdg" / "amp_profile_magic"
    assert store_directory(" OFF ") is None
    assert store_directory(str(tmp_path / "mine")) == tmp_path / "mine"


def test_eviction_drops_the_oldest_answers_first(store_dir: Path) -> None:
    """Past the size cap, the oldest answers go first until the live data fits again."""
    store = ProfileStore(store_dir, max_bytes=BIG)
    body = json.dumps({"userData": {"padding": "x" * 2000}})
    start = time.time() - 10_000
    for index in range(400):
        _put(store, f"user_id={index:04d}", body=body, fetched_at=start + index)
    store.max_bytes = 200 * 1024
    deleted = store.evict()
    assert deleted > 0
    kept = store.get_many(project="p", endpoint="e", params=[f"user_id={i:04d}" for i in range(400)], max_age=BIG)
    assert kept, "eviction kept nothing"
    assert min(kept) == f"user_id={400 - len(kept):04d}", "something newer went before something older"
    assert _store._live_bytes(store._db) <= 200 * 1024  # type: ignore[arg-type]


def test_clear_all_or_older_than(store_dir: Path) -> None:
    """clear_store deletes what is older than an age, or everything, and says how many (an age under a minute in
    seconds); info shows what is left."""
    store = ProfileStore(store_dir, max_bytes=BIG)
    now = time.time()
    _put(store, "user_id=old", fetched_at=now - 8 * 86400)
    _put(store, "user_id=new", fetched_at=now - 60)
    store.close()
    assert "Deleted 1 stored answer fetched more than 7 days ago" in clear_store(store_dir, older_than=parse_age("7d"))
    info = store_info(store_dir)
    assert info.entries == 1
    assert info.oldest == pytest.approx(now - 60)
    assert "1 answer from 1 project" in info.describe()
    # Under a minute the age is said in seconds, not as "0 min".
    assert "Deleted 1 stored answer fetched more than 30 s ago" in clear_store(store_dir, older_than=30)
    assert "Deleted 0 stored answers from" in clear_store(store_dir)
    assert store_info(store_dir).entries == 0


def test_parse_age_reads_units_and_refuses_nonsense() -> None:
    """Ages take d, h, m, s or plain seconds; anything else is one clear ValueError."""
    assert parse_age("7d") == 7 * 86400
    assert parse_age("12h") == 12 * 3600
    assert parse_age("30m") == 1800
    assert parse_age("45") == 45
    for bad in ("soon", "-1d", "nan", "inf", "infinity", "1e400d", "1e305d"):
        with pytest.raises(ValueError, match="not an age"):
            parse_age(bad)


def test_cli_store_info_and_clear(store_dir: Path) -> None:
    """`amp-profile-magic store` shows the store and `store clear --older-than` empties it, from a shell."""
    store = ProfileStore(store_dir, max_bytes=BIG)
    _put(store, "user_id=a", fetched_at=time.time() - 3 * 3600)
    store.close()
    environment = {**os.environ, "AMPLITUDE_PROFILE_STORE": str(store_dir)}
    command = [sys.executable, "-m", "amp_profile_magic._extension_cli", "store"]
    options: dict[str, Any] = {"env": environment, "capture_output": True, "text": True, "timeout": 60}
    info = subprocess.run(command, env=environment, capture_output=True, text=True, check=True, timeout=60)
    assert str(store_dir / "profiles.sqlite3") in info.stdout
    assert "1 answer from 1 project" in info.stdout
    cleared = subprocess.run([*command, "clear", "--older-than", "1h"], check=False, **options)
    assert cleared.returncode == 0, cleared.stderr
    assert "Deleted 1 stored answer " in cleared.stdout
    for age in ("soon", "inf", "nan", "-1d"):  # -1d after a space too: not taken for an option
        bad = subprocess.run([*command, "clear", "--older-than", age], check=False, **options)
        assert bad.returncode == 1
        assert "not an age" in bad.stderr
        assert "Traceback" not in bad.stderr
    off = subprocess.run([*command, "--path", "off"], check=False, **options)
    assert off.stdout.strip() == "The local profile store is off (--path=off)."
    assert off.returncode == 1  # as for a store that cannot be used: a script can tell
    directory_in_the_way = store_dir.parent / "dir-store"
    (directory_in_the_way / "profiles.sqlite3").mkdir(parents=True)
    blocked = subprocess.run([*command, "clear", "--path", str(directory_in_the_way)], check=False, **options)
    assert blocked.returncode == 1
    assert "Is a directory): move it away by hand" in blocked.stderr
    assert "Traceback" not in blocked.stderr
    # An empty --path is refused before anything is cleared: it meant the default store, not $AMPLITUDE_PROFILE_STORE.
    for action in ("info", "clear"):
        empty = subprocess.run([*command, action, "--path", " "], check=False, **options)
        assert empty.returncode == 2
        assert "--path is empty: give the store's directory, or leave --path out." in empty.stderr
    in_the_way = store_dir.parent / "a-file"
    in_the_way.write_text("")
    unusable = subprocess.run([*command, "--path", str(in_the_way / "store")], check=False, **options)
    assert unusable.returncode == 1
    assert "not usable, so off" in unusable.stdout

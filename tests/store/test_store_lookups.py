"""The store in use: repeated cells cost nothing, freshness, --refresh, --store-only, --dry-run, the summary line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from amp_profile_magic import NotStored, ProfileClient, ProfileQuery, UnknownUser
from amp_profile_magic._batch import BatchResult, Outcome, PacingSummary
from amp_profile_magic._journal import JOURNAL_GLOB
from amp_profile_magic._result import summary_line
from amp_profile_magic._store import ProfileStore
from amp_profile_magic.emulator import Emulator, Faults
from tests.conftest import CANARY_KEY
from tests.magics.helpers import api_requests, magics_of

from .conftest import store_files

IDS = [f"user-{index:05d}" for index in range(1, 21)] + ["nobody"]


def _users(emulator: Emulator) -> list[str]:
    return [entry.params.get("user_id", "") for entry in api_requests(emulator)]


def test_repeated_cell_within_max_age_sends_zero_requests(shell: Any, run: Any, emulator: Emulator) -> None:
    """The second run of a batch cell sends nothing, unknown users included, and gives the same frame."""
    shell.user_ns["ids"] = IDS
    first = run("%ampprofile --users ids props recs=testRecId -o first")
    assert first.result.success, first.everything
    assert len(api_requests(emulator)) == len(IDS)
    assert first.texts()[0] == "20 profiles · 1 failed: unknown_user ×1"
    second = run("%ampprofile --users ids props recs=testRecId -o second")
    assert second.result.success, second.everything
    assert len(api_requests(emulator)) == len(IDS), "the repeated cell sent requests"
    assert second.texts()[0] == "20 profiles (20 from the local store, 0 min old) · 1 failed: unknown_user ×1"
    for name in ("recs", "props"):
        assert shell.user_ns["second"][name].equals(shell.user_ns["first"][name])
    assert list(shell.user_ns["second"].failures["kind"]) == ["unknown_user"]


def test_single_lookups_use_the_store_too(shell: Any, run: Any, emulator: Emulator) -> None:
    """A repeated single lookup (what the form runs) is answered from the store."""
    run("%ampprofile user=12345 cohorts -o a")
    run("%ampprofile user=12345 cohorts -o b")
    assert _users(emulator) == ["12345"]
    assert shell.user_ns["a"].equals(shell.user_ns["b"])


def test_older_answers_and_refresh_are_fetched_again(shell: Any, run: Any, emulator: Emulator) -> None:
    """Answers older than max_age are fetched again, and --refresh ignores fresh ones; both are stored anew."""
    shell.user_ns["ids"] = IDS[:5]
    run("%ampprofile --users ids cohorts -o a")
    run("%ampprofile --users ids cohorts --refresh -o b")
    assert len(api_requests(emulator)) == 10
    magics_of(shell).client.max_age = 0.0
    time.sleep(0.01)
    run("%ampprofile --users ids cohorts -o c")
    assert len(api_requests(emulator)) == 15
    magics_of(shell).client.max_age = 3600.0
    run("%ampprofile --users ids cohorts -o d")
    assert len(api_requests(emulator)) == 15


def test_transient_failures_are_never_stored(shell: Any, run: Any, emulator: Emulator) -> None:
    """A user that failed with a server error is asked again next time; only its eventual answer is kept."""
    magics_of(shell).client.max_retries = 0
    emulator.faults = Faults(error_rate=1.0)
    shell.user_ns["ids"] = IDS[:3]
    failed = run("%ampprofile --users ids cohorts -o a")
    assert "ServerUnavailable" in failed.everything  # every user failed alike: the cell fails
    emulator.faults = Faults()
    run("%ampprofile --users ids cohorts -o b")
    assert len(api_requests(emulator)) == 6
    again = run("%ampprofile --users ids cohorts -o c")
    assert len(api_requests(emulator)) == 6
    assert "(3 from the local store" in again.texts()[0]


def test_store_only_fails_clearly_for_what_is_missing(shell: Any, run: Any, emulator: Emulator) -> None:
    """--store-only answers the stored users, reports the others as not_stored, and sends nothing."""
    shell.user_ns["some"], shell.user_ns["more"] = IDS[:2], IDS[:4]
    run("%ampprofile --users some cohorts -o a")
    sent = len(api_requests(emulator))
    result = run("%ampprofile --users more cohorts --store-only -o b")
    assert len(api_requests(emulator)) == sent
    assert result.texts()[0] == "2 profiles (2 from the local store, 0 min old) · 2 failed: not_stored ×2"
    failures = shell.user_ns["b"].attrs["failures"]
    assert [failure["user_id"] for failure in failures] == IDS[2:4]
    assert "store-only" in failures[0]["message"]
    single = run("%ampprofile user=user-04000 cohorts --store-only")
    assert not single.result.success
    assert "Not in the local store, or older than max_age: user user-04000" in single.everything
    assert len(api_requests(emulator)) == sent


def test_dry_run_counts_what_the_store_holds_and_sends_nothing(shell: Any, run: Any, emulator: Emulator) -> None:
    """--dry-run prints the requests left after the store, the expected time, and a keyless curl line."""
    shell.user_ns["some"], shell.user_ns["more"] = IDS[:4], IDS[:10]
    run("%ampprofile --users some props -o a")
    sent = len(api_requests(emulator))
    magics_of(shell).client.requests_per_minute = 60
    plan = run("%ampprofile --users more props --dry-run")
    assert len(api_requests(emulator)) == sent
    text = plan.stdout
    assert "10 users → 10 lookups, 10 requests" in text
    assert "4 requests already answered; 6 to send" in text
    assert "Expected time at 60 requests/minute: about 6 s" in text
    assert f"'{emulator.url}/v1/userprofile?user_id=user-00005&get_amp_props=true'" in text
    assert "$AMPLITUDE_SECRET_KEY" in text
    assert CANARY_KEY not in plan.everything
    assert "bulk" not in text


def test_an_unknown_user_of_a_two_request_query_is_answered_from_the_store(
    shell: Any, run: Any, emulator: Emulator
) -> None:
    """props + comps for an unknown user stops at the first request; re-runs, dry runs and store-only send nothing."""
    shell.user_ns["ids"] = ["user-00001", "nobody"]
    first = run("%ampprofile --users ids props comps -o a")
    assert first.texts()[0] == "1 profile · 1 failed: unknown_user ×1", first.everything
    sent = len(api_requests(emulator))
    assert sent == 3  # two for the known user, one (refused) for the unknown one
    again = run("%ampprofile --users ids props comps -o b")
    assert len(api_requests(emulator)) == sent, "the unknown user was requested again"
    assert again.texts()[0] == "1 profile (1 from the local store, 0 min old) · 1 failed: unknown_user ×1"
    single = run("%ampprofile user=nobody props comps")
    assert "Unknown user" in single.everything
    assert len(api_requests(emulator)) == sent
    plan = run("%ampprofile --users ids props comps --dry-run").stdout
    assert "4 requests already answered; 0 to send" in plan, plan
    assert "curl" not in plan
    only = run("%ampprofile --users ids props comps --store-only -o c")
    assert list(shell.user_ns["c"].failures["kind"]) == ["unknown_user"], only.everything
    assert len(api_requests(emulator)) == sent


def test_a_store_only_dry_run_names_what_it_would_miss(shell: Any, run: Any, emulator: Emulator) -> None:
    """--store-only --dry-run says how many lookups would fail as not stored, and sends nothing."""
    shell.user_ns["some"], shell.user_ns["more"] = IDS[:1], IDS[:3]
    run("%ampprofile --users some props -o a")
    plan = run("%ampprofile --users more props --store-only --dry-run").stdout
    assert "1 request already answered; 0 to send" in plan, plan
    assert "Store-only: 2 lookups are not in the local store (or are older than max_age)" in plan, plan
    assert len(api_requests(emulator)) == 1


def test_dry_run_past_an_hour_points_to_bulk_routes(shell: Any, run: Any, emulator: Emulator) -> None:
    """A batch expected to take more than an hour at the configured rate suggests the cohort download and exports."""
    shell.user_ns["ids"] = [f"u{index}" for index in range(700)]
    magics_of(shell).client.requests_per_minute = 10
    text = run("%ampprofile --users ids props comps --dry-run").stdout
    assert "700 users → 700 lookups, 1,400 requests" in text
    assert "about 2 h." in text
    assert "Dashboard REST API" in text
    assert "warehouse export" in text
    assert not api_requests(emulator)


def test_refresh_and_store_only_together_are_refused(run: Any, emulator: Emulator) -> None:
    """--refresh with --store-only is a one-line usage error, and nothing is sent."""
    result = run("%ampprofile user=1 props --refresh --store-only")
    assert "give one of them" in result.everything
    assert not api_requests(emulator)


def test_cassette_replay_is_not_answered_from_the_store(
    shell: Any, run: Any, emulator: Emulator, tmp_path: Path
) -> None:
    """Recording and replaying bypass the store: a replay reproduces the cassette, not what the store holds."""
    cassette = tmp_path / "c.json"
    run(f"%ampprofile_cassette record {cassette}")
    run("%ampprofile user=12345 cohorts -o recorded")
    run("%ampprofile user=12345 cohorts -o again")
    assert _users(emulator) == ["12345", "12345"], "recording must capture every response, not stored ones"
    run(f"%ampprofile_cassette replay {cassette}")
    replayed = run("%ampprofile user=12345 cohorts -o replayed")
    assert replayed.result.success, replayed.everything
    assert shell.user_ns["replayed"].equals(shell.user_ns["recorded"])


def test_lookup_api_and_stored_unknown_user(make_client: Any, emulator: Emulator) -> None:
    """From Python, lookup() and lookup_many() share the store; a stored unknown user raises UnknownUser again."""
    client = make_client()
    first = client.lookup(user_id="12345", props=True)
    assert client.lookup(user_id="12345", props=True) == first
    with pytest.raises(UnknownUser):
        client.lookup(user_id="nobody", props=True)
    with pytest.raises(UnknownUser):
        client.lookup(user_id="nobody", props=True)
    with pytest.raises(NotStored):
        client.lookup(user_id="user-00009", props=True, cache="only")
    assert _users(emulator) == ["12345", "nobody"]
    batch = client.lookup_many([ProfileQuery(user_id="12345", props=True)])
    assert [outcome.stored_at is not None for outcome in batch] == [True]


def test_props_with_comps_resumes_per_request(make_client: Any, emulator: Emulator) -> None:
    """A lookup of two requests whose first is stored sends only the second."""
    client = make_client()
    client.lookup(user_id="12345", props=True)
    both = client.lookup(user_id="12345", props=True, comps=True)
    assert both.computations is not None
    assert [sorted(entry.params) for entry in api_requests(emulator)] == [
        ["get_amp_props", "user_id"],
        ["get_computations", "user_id"],
    ]


def _scan_for_the_key(files: list[Path]) -> None:
    for path in files:
        data = path.read_bytes()
        assert CANARY_KEY.encode() not in data, path
        assert CANARY_KEY.encode("utf-16-le") not in data, path


def test_nothing_the_store_writes_holds_the_key(
    make_client: Any, emulator: Emulator, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A canary scan of every store file's bytes finds no key, even when a proxy echoes the key into a 200 body."""

    class EchoingTransport(httpx.BaseTransport):
        def __init__(self) -> None:
            self._inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = self._inner.handle_request(request)
            payload = json.loads(response.read() or b"null")
            if not isinstance(payload, dict) or "userData" not in payload:
                return httpx.Response(response.status_code, content=response.content, request=request)
            payload["userData"]["echo"] = request.headers["authorization"]
            return httpx.Response(200, json=payload, request=request)

    emulator_key = emulator.api_key
    assert emulator_key == CANARY_KEY
    client = make_client(transport=EchoingTransport())
    queries = [ProfileQuery(user_id=user, props=True) for user in IDS]
    with monkeypatch.context() as holding:
        # The batch's end folds the journal in and wipes it: keep the answers in it, to scan it as a kill leaves it.
        holding.setattr(ProfileStore, "_fold", lambda self, db: None)
        assert len(client.lookup_many(queries[:10]).profiles) == 10
        (journal,) = store_dir.glob(JOURNAL_GLOB)
        assert b"user_id" in journal.read_bytes(), "the journal holds the answers: the scan below means something"
        _scan_for_the_key(store_files(store_dir))
    batch = client.lookup_many(queries)
    assert len(batch.profiles) == 20
    files = store_files(store_dir)
    assert any(path.name.endswith("-wal") for path in files)
    _scan_for_the_key(files)
    client.store_info()  # reads the file; a cheap check that the store is still healthy
    assert "Local profile store" in client.store_info()


def test_store_magic_shows_and_clears(shell: Any, run: Any, emulator: Emulator) -> None:
    """%ampprofile_store shows where the store is and what it holds; clear empties it; bad input is a usage error."""
    run("%ampprofile user=12345 cohorts -o a")
    shown = run("%ampprofile_store").stdout
    assert "profiles.sqlite3" in shown
    assert "1 answer from 1 project" in shown
    assert "fetched: oldest 0 min ago" in shown
    partly = run("%ampprofile_store clear --older-than 7d").stdout
    assert "Deleted 0 stored answers fetched more than 7 days ago" in partly
    assert "Deleted 1 stored answer " in run("%ampprofile_store clear").stdout
    run("%ampprofile user=12345 cohorts -o b")
    assert _users(emulator) == ["12345", "12345"]
    assert "not an age" in run("%ampprofile_store clear --older-than soon").everything
    assert "unknown command" in run("%ampprofile_store wipe").everything
    misplaced = run("%ampprofile_store info --older-than 1d").everything
    assert "info takes nothing more (--older-than 1d); --older-than goes with clear" in misplaced
    assert "%ampprofile_store clear --older-than 7d" in run("%ampprofile_store --help").stdout


def test_clearing_from_another_client_leaves_this_kernels_store_working(
    shell: Any, run: Any, emulator: Emulator
) -> None:
    """A store cleared by another client in the kernel is opened again here: the next cell is stored and cached."""
    run("%ampprofile user=12345 cohorts -o a")
    directory = magics_of(shell).client.profile_store().directory
    assert "Deleted 1 stored answer " in ProfileClient(store=str(directory)).clear_store()
    run("%ampprofile user=12345 cohorts -o b")
    run("%ampprofile user=12345 cohorts -o c")
    assert _users(emulator) == ["12345", "12345"], "the store stopped caching after another client cleared it"
    assert "1 answer from 1 project" in run("%ampprofile_store").stdout


def test_a_relative_store_path_stays_the_store_it_first_named(
    shell: Any, run: Any, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a %cd, info and clear act on the store the lookups use, not on the same name in the new directory."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    run("%config ProfileClient.store = 'relative-store'")
    run("%ampprofile user=12345 cohorts -o a")
    monkeypatch.chdir(second)
    shown = run("%ampprofile_store").stdout
    assert str(first / "relative-store" / "profiles.sqlite3") in shown, shown
    assert "1 answer from 1 project" in shown, shown
    assert "Deleted 1 stored answer " in run("%ampprofile_store clear").stdout
    run("%ampprofile user=12345 cohorts -o b")
    assert _users(emulator) == ["12345", "12345"]
    assert not (second / "relative-store").exists()


def test_store_off_sends_every_time(shell: Any, run: Any, emulator: Emulator, tmp_path: Path) -> None:
    """With ProfileClient.store = 'off' nothing is kept and repeated lookups are sent again."""
    run("%config ProfileClient.store = 'off'")
    run("%ampprofile user=12345 cohorts -o a")
    run("%ampprofile user=12345 cohorts -o b")
    assert _users(emulator) == ["12345", "12345"]
    assert "off" in run("%ampprofile_store").stdout


def test_summary_line_shows_each_part_only_when_non_zero() -> None:
    """The summary carries the store's share and ages, failures, retries and throttling, and the paced rate."""
    now = 10_000.0
    ok = [
        Outcome(ProfileQuery(user_id=f"s{index}"), profile=object(), stored_at=now - 35 * 60 * index)  # type: ignore[arg-type]
        for index in (0, 1)
    ]
    fetched = [Outcome(ProfileQuery(user_id="f"), profile=object())]  # type: ignore[arg-type]
    failed = [Outcome(ProfileQuery(user_id="x"), error=UnknownUser("gone"))] * 2
    batch = BatchResult(
        outcomes=(*ok, *fetched, *failed),
        unique_queries=4,
        retries=186,
        throttled=4,
        pacing=PacingSummary(throttled=4, paced_down_to=480.0),
    )
    assert summary_line(batch, now=now) == (
        "3 profiles (2 from the local store, 0–35 min old; 1 fetched) · 2 failed: unknown_user ×2 "
        "· 186 retries (4 throttled) · paced down to 480/min after 4 throttles"
    )
    assert summary_line(BatchResult(outcomes=tuple(fetched), unique_queries=1)) == "1 profile"


def test_summary_parts_add_up_with_duplicate_ids() -> None:
    """An id given three times counts three times in every part, as it does in the profiles."""
    now = 10_000.0
    stored = Outcome(ProfileQuery(user_id="s"), profile=object(), stored_at=now - 60)  # type: ignore[arg-type]
    fetched = Outcome(ProfileQuery(user_id="f"), profile=object())  # type: ignore[arg-type]
    gone = Outcome(ProfileQuery(user_id="x"), error=UnknownUser("gone"))
    batch = BatchResult(outcomes=(stored, stored, stored, fetched, gone, gone), unique_queries=3)
    assert summary_line(batch, now=now) == (
        "4 profiles (3 from the local store, 1 min old; 1 fetched) · 2 failed: unknown_user ×2"
    )


def test_an_interrupted_summary_and_message_account_for_failures_too() -> None:
    """Interrupted with an unknown user among the finished: the summary names it, and the message agrees."""
    from amp_profile_magic._exceptions import NotFetched
    from amp_profile_magic._invoke import interrupted_message

    done = [Outcome(ProfileQuery(user_id=f"u{index}"), profile=object()) for index in range(5)]  # type: ignore[arg-type]
    gone = [Outcome(ProfileQuery(user_id="x"), error=UnknownUser("gone"))]
    left = [Outcome(ProfileQuery(user_id=f"m{index}"), error=NotFetched("not fetched")) for index in range(4)]
    batch = BatchResult(outcomes=(*done, *gone, *left), unique_queries=10, interrupted=True)
    assert summary_line(batch) == (
        "Interrupted: 5 of 10 fetched, 4 missing (kept what finished) · 1 failed: unknown_user ×1"
    )
    assert interrupted_message(batch, "res") == (
        "4 of 10 users not fetched; the 5 fetched are in res (its failures list the missing ones and the 1 that failed)"
    )


def test_load_ext_imports_no_store_code() -> None:
    """%load_ext imports neither the store module nor platformdirs (IPython itself imports sqlite3 for history)."""
    script = textwrap.dedent(
        """
        import sys
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "amp_profile_magic")
        modules = ("amp_profile_magic._store", "amp_profile_magic._journal", "platformdirs")
        print(sorted(m for m in modules if m in sys.modules))
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert completed.stdout.strip().splitlines()[-1] == "[]"


def test_an_endpoint_changed_during_a_batch_files_no_answer_under_the_old_one(make_client: Any) -> None:
    """Answers fetched after the endpoint changed mid-batch are not stored as the first endpoint's answers."""
    import threading

    users = [f"user-{index:05d}" for index in range(1, 201)]
    with (
        Emulator(seed=1, api_key="shared-key", faults=Faults(latency=0.01)) as first,
        Emulator(seed=2, api_key="shared-key", faults=Faults(latency=0.01)) as second,
    ):
        client = make_client(endpoint=first.url, api_key="shared-key", max_concurrency=4)
        switched = threading.Event()

        def switch_when_a_quarter_is_done() -> None:
            while first.request_count < len(users) // 4:
                time.sleep(0.005)
            client.endpoint = second.url
            switched.set()

        threading.Thread(target=switch_when_a_quarter_is_done, daemon=True).start()
        client.lookup_many([ProfileQuery(user_id=user, props=True) for user in users])
        assert switched.is_set()
        assert second.request_count > 0, "the switch came too late to test anything"
        plain = make_client(endpoint=first.url, api_key="shared-key", store="off")
        truth = {user: plain.lookup(user_id=user, props=True).properties for user in users}
        stored = make_client(endpoint=first.url, api_key="shared-key").lookup_many(
            [ProfileQuery(user_id=user, props=True) for user in users], cache="only"
        )
    kept = [outcome for outcome in stored.outcomes if outcome.profile is not None]
    assert kept, "nothing was stored before the switch"
    assert all(outcome.profile.properties == truth[outcome.query.user_id] for outcome in kept)  # type: ignore[union-attr]

"""Batch accounting against the emulator: one outcome per input, in order, whatever fails."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

import pytest

from amp_profile_magic import (
    ConnectionFailed,
    MalformedResponse,
    NotFetched,
    Outcome,
    ProfileClient,
    ProfileError,
    ProfileQuery,
    ServerUnavailable,
    Throttled,
    UnknownUser,
)
from amp_profile_magic.emulator import Emulator, Faults
from tests.client.conftest import check_error, wait_until_quiet

#: The error each injected fault turns into when it is the last thing a user's lookup met.
ERROR_FOR_FAULT: dict[str, type[ProfileError]] = {
    "error": ServerUnavailable,
    "drop": ConnectionFailed,
    "malformed": MalformedResponse,
    "throttle": Throttled,
}
RETRIED_FAULTS = {"error", "drop"}


def test_every_input_gets_one_outcome_in_order_and_duplicates_are_sent_once(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """Duplicates share one request and one outcome, an unknown user fails alone, and the order is the input's."""
    client = make_client()
    users = emulator.dataset.user_ids
    queries = [
        ProfileQuery(user_id=users[0], cohorts=True),
        ProfileQuery(user_id=users[1], cohorts=True),
        ProfileQuery(user_id=users[0], cohorts=True),
        ProfileQuery(user_id="never-seen", cohorts=True),
        ProfileQuery(user_id="12345", props=True, comps=True),
        ProfileQuery(user_id=users[1], cohorts=True),
        ProfileQuery(user_id=users[0], props=True),
    ]
    emulator.reset()
    seen: list[tuple[Outcome, str]] = []
    result = client.lookup_many(queries, on_outcome=lambda o: seen.append((o, threading.current_thread().name)))
    assert len(result) == len(queries)
    assert [outcome.query for outcome in result] == queries
    assert result[0] is result[2]
    assert result[1] is result[5]
    assert result.unique_queries == 5
    assert not result.interrupted
    assert result.missing == 0
    assert [outcome.ok for outcome in result] == [True, True, True, False, True, True, True]
    assert isinstance(result[3].error, UnknownUser)
    assert result.failures == [result[3]]
    expected_users = [users[0], users[1], users[0], "12345", users[1], users[0]]
    assert [profile.user_id for profile in result.profiles] == expected_users
    assert result[4].profile is not None
    assert result[4].profile.computations == {"computed-prop-1": "5000000.0", "computed-prop-2": "3"}
    # Five distinct queries, the props + comps one costing two requests: six requests, none repeated.
    sent = sorted(tuple(sorted(entry.params.items())) for entry in emulator.requests)
    assert len(sent) == 6
    assert len(set(sent)) == 6
    # on_outcome ran once per distinct query, in the calling thread.
    assert sorted(id(outcome) for outcome, _ in seen) == sorted({id(outcome) for outcome in result})
    assert {thread for _, thread in seen} == {threading.current_thread().name}


def test_a_batch_under_injected_faults_accounts_for_every_user(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """With 5xx, dropped connections, malformed bodies and throttling injected, every input still gets exactly one
    outcome, in order; each failure is the error of the last fault that user met, after exactly the retries due."""
    client = make_client(max_retries=2, max_retry_after=0.5, max_concurrency=8)
    users = emulator.dataset.user_ids[300:360]
    queries = [ProfileQuery(user_id=user) for user in users] + [ProfileQuery(user_id=user) for user in users[:10]]
    emulator.faults = Faults(error_rate=0.15, drop_rate=0.1, malformed_rate=0.1, throttle_rate=0.1)
    emulator.reset()
    result = client.lookup_many(queries)
    wait_until_quiet(emulator)

    assert len(result) == len(queries)
    assert [outcome.query for outcome in result] == queries
    assert result.unique_queries == len(users)
    for outcome in result:
        assert (outcome.profile is None) != (outcome.error is None)
        if outcome.error is not None:
            check_error(outcome.error)
    assert 0 < len(result.failures) < len(queries), "the fault rates should give some failures and some successes"

    by_user: dict[str, list[str | None]] = defaultdict(list)
    for entry in emulator.requests:
        by_user[entry.params["user_id"]].append(entry.fault)
    assert set(by_user) == set(users)
    for outcome in result[: len(users)]:
        user = outcome.query.user_id
        assert user is not None
        faults = by_user[user]
        assert 1 <= len(faults) <= 3
        assert all(fault in RETRIED_FAULTS for fault in faults[:-1]), (user, faults)
        if outcome.profile is not None:
            assert faults[-1] is None
            assert outcome.profile.user_id == user
        else:
            assert faults[-1] is not None
            assert type(outcome.error) is ERROR_FOR_FAULT[faults[-1]], (user, faults, outcome.error)
            if faults[-1] in RETRIED_FAULTS:
                assert len(faults) == 3
    # The repeated users reuse their first outcome instead of asking again.
    for index in range(10):
        assert result[len(users) + index] is result[index]


def test_an_interrupt_keeps_finished_outcomes_and_marks_the_rest_not_fetched(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """Ctrl-C during a batch (here raised from the progress callback) keeps what finished, marks every other input
    NotFetched, and leaves the client usable."""
    client = make_client(requests_per_minute=600, max_concurrency=4)
    users = emulator.dataset.user_ids[400:420]
    emulator.reset()
    finished: list[Outcome] = []

    def progress(outcome: Outcome) -> None:
        finished.append(outcome)
        if len(finished) == 3:
            raise KeyboardInterrupt

    result = client.lookup_many([ProfileQuery(user_id=user) for user in users], on_outcome=progress)
    assert result.interrupted
    assert len(result) == len(users)
    assert [outcome.query.user_id for outcome in result] == users
    done = [outcome for outcome in result if outcome.ok]
    assert len(done) >= 3
    not_fetched = [outcome for outcome in result if not outcome.ok]
    assert not_fetched
    assert result.missing == len(not_fetched)
    for outcome in not_fetched:
        assert isinstance(outcome.error, NotFetched)
        assert outcome.query.user_id is not None
        assert outcome.query.user_id in str(outcome.error)
        assert "again" in str(outcome.error)
    wait_until_quiet(emulator)
    # Requests in flight when the interrupt came may finish; the waiting ones were never sent.
    assert emulator.request_count < len(users)
    assert client.lookup(user_id="12345").user_id == "12345"


def test_an_empty_batch_sends_nothing(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """No queries: an empty result and no request."""
    client = make_client()
    emulator.reset()
    result = client.lookup_many([])
    assert len(result) == 0
    assert result.unique_queries == 0
    assert emulator.request_count == 0


@pytest.mark.parametrize("concurrency", [1, 3])
def test_batches_keep_input_order_at_any_concurrency(
    emulator: Emulator, make_client: Callable[..., ProfileClient], concurrency: int
) -> None:
    """Whatever finishes first, outcomes come back in input order (checked against reversed and mixed inputs)."""
    client = make_client(max_concurrency=concurrency)
    users = list(reversed(emulator.dataset.user_ids[500:512]))
    queries = [ProfileQuery(user_id=user, props=bool(i % 2)) for i, user in enumerate(users)]
    emulator.reset()
    result = client.lookup_many(queries)
    assert [outcome.profile.user_id for outcome in result if outcome.profile] == users
    assert [outcome.profile.properties is not None for outcome in result if outcome.profile] == [
        bool(i % 2) for i in range(len(users))
    ]
    assert emulator.request_count == len(users)

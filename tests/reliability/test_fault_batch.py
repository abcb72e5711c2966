"""A large batch under injected faults accounts for every user exactly once and mostly succeeds."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.utils.capture import capture_output

from amp_profile_magic import ProfileClient
from amp_profile_magic.emulator import Emulator

from .conftest import magics_of

USERS = 1000
RETRYABLE_KINDS = {"server_error", "throttled", "connection_failed", "timeout"}


@pytest.mark.slow
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_faulty_batch_accounts_for_every_user_once(shell: Any, faulty_emulator: Emulator) -> None:
    """1,000 users against 20% 5xx, 5% throttling, 2% drops and 2% timeouts: each user is a row or a failure, once."""
    # The client keeps its default max_retries; only the waits (backoff, timeout) are shortened to keep the test fast.
    # With 29% of attempts failing, a user fails all six attempts with probability 0.29**6 ≈ 0.06%: under one user
    # of 1,000 is expected to fail, and more than five (the 99.5% bound) happens in about 1 run in 20,000 (Poisson).
    magics = magics_of(shell)
    client = magics.client
    assert client.max_retries == ProfileClient.class_traits()["max_retries"].default_value == 5
    client.endpoint = faulty_emulator.url
    client.timeout = 1.0  # the slow fault answers after 2.5 s: a timeout, then a retry
    ids = faulty_emulator.dataset.user_ids[:USERS]
    shell.user_ns["ids"] = ids

    with capture_output() as captured:
        returned = shell.run_line_magic("ampprofile", "--users ids recs=recA props -o res")
    assert returned is None  # -o binds the result and shows a summary instead
    result = shell.user_ns["res"]
    recs, props, failures = result["recs"], result["props"], result.failures

    # Every fault kind was really injected, and more than a quarter of attempts failed.
    stats = faulty_emulator.stats()
    assert set(stats["by_fault"]) >= {"error", "throttle", "drop", "slow"}, stats
    assert stats["requests"] > USERS * 1.3, stats

    # Accounting: every input user is exactly one props row or exactly one failure row.
    ok_users = list(props["user_id"])
    failed_users = list(failures["user_id"])
    assert len(ok_users) == len(set(ok_users)), "duplicate rows in the props frame"
    assert len(failed_users) == len(set(failed_users)), "a user failed twice"
    assert set(ok_users).isdisjoint(failed_users)
    assert sorted(ok_users + failed_users) == sorted(ids)
    assert len(ok_users) >= 0.995 * USERS, failures.to_string()
    assert set(failures["kind"]) <= RETRYABLE_KINDS, failures.to_string()

    # The recommendations of every successful user, each (user, rec, rank) once.
    assert not recs.duplicated(["user_id", "rec_id", "rank"]).any()
    assert set(recs["user_id"]) == set(ok_users)
    assert (recs.groupby("user_id").size() == faulty_emulator.dataset.rec_items).all()

    # The summary shown inline says the same.
    shown = captured.stdout + "".join(str(output.data) for output in captured.outputs)
    assert f"{len(ok_users):,} profiles" in shown
    if failed_users:
        assert f"{len(failed_users):,} failed" in shown

"""Ctrl-C in the middle of a slow, paced batch keeps what finished, counts what is missing, and harms nothing."""

from __future__ import annotations

import _thread
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from IPython.utils.capture import capture_output

from amp_profile_magic import NotFetched, ProfileClient, ProfileQuery
from amp_profile_magic.emulator import Emulator

from .conftest import magics_of

USERS = 40
#: Ten requests a second: the 40-user batch needs about four seconds, and is interrupted after one.
SLOW_PACE = 600.0
INTERRUPT_AFTER = 1.0


@contextmanager
def interrupt_after(seconds: float) -> Iterator[Callable[[], bool]]:
    """Deliver a KeyboardInterrupt to the main thread after ``seconds``, as Ctrl-C (or Jupyter's ■) would."""
    fired = threading.Event()

    def interrupt() -> None:
        fired.set()
        _thread.interrupt_main()

    timer = threading.Timer(seconds, interrupt)
    timer.start()
    try:
        yield fired.is_set
    finally:
        timer.cancel()


def test_interrupted_lookup_many_keeps_finished_outcomes(client: ProfileClient, emulator: Emulator) -> None:
    """lookup_many returns on Ctrl-C with the finished profiles, NotFetched for the rest, and the client works after."""
    client.requests_per_minute = SLOW_PACE
    ids = emulator.dataset.user_ids[:USERS]
    queries = [ProfileQuery(user_id=user, props=True) for user in ids]

    with interrupt_after(INTERRUPT_AFTER) as fired:
        batch = client.lookup_many(queries)
    assert fired()

    assert batch.interrupted
    assert len(batch) == USERS
    finished = [outcome for outcome in batch if outcome.ok]
    missing = [outcome for outcome in batch if not outcome.ok]
    assert 0 < len(finished) < USERS
    assert batch.missing == len(missing) > 0
    assert all(isinstance(outcome.error, NotFetched) for outcome in missing)
    # The finished ones are real data, for the right users, in input order.
    assert [outcome.query.user_id for outcome in batch] == ids
    assert all(outcome.profile is not None and outcome.profile.user_id == outcome.query.user_id for outcome in finished)
    served = {entry.params["user_id"] for entry in emulator.requests if entry.status == 200}
    assert {outcome.query.user_id for outcome in finished} <= served

    client.requests_per_minute = 600_000
    profile = client.lookup(user_id="12345", props=True)
    assert profile.properties is not None
    assert profile.properties["library"] == "http/1.0"


def _interrupted_cell(shell: Any, emulator: Emulator, source: str) -> tuple[Any, Any]:
    """Run ``source`` as a slowly paced batch over ``ids`` and interrupt it part-way; return its result and output."""
    magics_of(shell).client.requests_per_minute = SLOW_PACE
    shell.user_ns["ids"] = emulator.dataset.user_ids[:USERS]
    with interrupt_after(INTERRUPT_AFTER) as fired, capture_output() as captured:
        outcome = shell.run_cell(source, store_history=True)
    assert fired()
    assert type(outcome.error_in_exec).__name__ == "BatchInterrupted"
    return outcome, captured


def test_interrupted_magic_binds_partial_result_and_says_what_is_missing(shell: Any, emulator: Emulator) -> None:
    """A cell interrupted mid-batch ends in error, binds the finished rows to -o, reports the missing count, and the
    next cell's lookup succeeds."""
    _, captured = _interrupted_cell(shell, emulator, "%ampprofile --users ids props cohorts -o partial")
    result = shell.user_ns["partial"]
    props, failures = result["props"], result.failures
    assert 0 < len(props) < USERS
    assert len(props) + len(failures) == USERS
    assert set(failures["kind"]) == {"not_fetched"}
    assert sorted([*props["user_id"], *failures["user_id"]]) == sorted(shell.user_ns["ids"])
    shown = captured.stdout + "".join(str(output.data) for output in captured.outputs)
    assert f"{len(failures)} missing" in shown
    assert "KeyboardInterrupt" in shown
    assert f"{len(failures)} of {USERS} users not fetched" in shown
    assert "Traceback" not in shown

    magics_of(shell).client.requests_per_minute = 600_000
    with capture_output():
        after = shell.run_cell("%ampprofile user=12345 cohorts", store_history=True)
    assert after.success
    assert list(after.result["cohort_id"]) == ["cohort1", "cohort3", "cohort7"]


def test_interrupted_magic_without_out_keeps_the_finished_rows(shell: Any, emulator: Emulator) -> None:
    """Without -o, an interrupted batch still keeps what it fetched, in the variable its error message names."""
    # props has one row per fetched profile, so rows and failures must add up to the batch.
    outcome, captured = _interrupted_cell(shell, emulator, "%ampprofile --users ids props")
    assert "_ampprofile_partial" in str(outcome.error_in_exec)
    partial = shell.user_ns["_ampprofile_partial"]
    failures = partial.attrs["failures"]
    fetched_users = set(partial["user_id"])
    assert failures
    assert {failure["kind"] for failure in failures} == {"not_fetched"}
    assert len(fetched_users) + len(failures) == USERS
    assert fetched_users.isdisjoint(failure["user_id"] for failure in failures)
    assert "Traceback" not in captured.stdout

"""The cyclic garbage collector is paused only while a batch builds its objects, never for good or while it waits."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from amp_profile_magic import ProfileClient, ProfileQuery
from amp_profile_magic._batch import Outcome
from amp_profile_magic._gcpause import paused
from amp_profile_magic.emulator import Emulator

IDS = [f"user-{index:05d}" for index in range(1, 31)]


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    """Each test starts with the collector enabled, and leaves it enabled whatever it did."""
    gc.enable()
    yield
    gc.enable()


def test_a_batch_leaves_the_collector_enabled(shell: Any, run: Any) -> None:
    """After a fetched batch, a cached re-run of it and a batch refused for a bad id, the collector is enabled."""
    shell.user_ns["ids"] = IDS
    shell.user_ns["bad"] = [*IDS, None]
    for line in ("%ampprofile --users ids cohorts", "%ampprofile --users ids cohorts", "%ampprofile --users bad props"):
        run(line)
        assert gc.isenabled(), line
    assert not run("%ampprofile --users bad props").result.success


def test_the_collector_runs_while_answers_are_fetched(client: ProfileClient, emulator: Emulator) -> None:
    """Outcomes of sent requests arrive with the collector enabled: an hour-long batch still collects its cycles."""
    client.store = "off"
    seen: list[bool] = []

    def record(outcome: Outcome) -> None:
        seen.append(gc.isenabled())

    batch = client.lookup_many(ProfileQuery.each([(user, None) for user in IDS], requests=()), on_outcome=record)
    assert len(batch) == len(IDS)
    assert not batch.failures
    assert seen == [True] * len(IDS)
    assert gc.isenabled()


def test_pauses_nest_across_threads_and_respect_a_collector_turned_off() -> None:
    """Nested and concurrent pauses end together, on the last one's exit; a collector the user disabled stays off."""
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with paused():
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=other)
    with paused():
        worker.start()
        assert entered.wait(5)
        with paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's pause is still open
    release.set()
    worker.join(5)
    assert gc.isenabled()
    gc.disable()
    with paused():
        pass
    assert not gc.isenabled()

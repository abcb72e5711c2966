"""_invoke runs a batch from code as the magic does: its own progress callback, and a stop event like Ctrl-C."""

from __future__ import annotations

import threading
from typing import Any

from amp_profile_magic import NotFetched, _invoke
from amp_profile_magic._grammar import Identity
from amp_profile_magic.emulator import Emulator

USERS = 30
#: Ten requests a second: the batch needs about three seconds, and is stopped after its fifth user.
SLOW_PACE = 600.0


def test_a_stop_event_ends_a_batch_like_ctrl_c_keeping_what_finished(magics: Any, emulator: Emulator) -> None:
    """Setting stop from the progress callback ends the batch: finished users kept, the rest not_fetched."""
    magics.client.requests_per_minute = SLOW_PACE
    ids = emulator.dataset.user_ids[:USERS]
    invocation = _invoke.parse(magics, "--users ids props --refresh")
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(finished: int, total: int, note: str) -> None:
        seen.append((finished, total))
        if finished >= 5:
            stop.set()

    fetched = _invoke.fetch(
        magics, invocation, [Identity(user_id=user) for user in ids], on_progress=progress, stop=stop
    )
    assert fetched.batch.interrupted
    assert len(fetched.batch) == USERS
    ok = [outcome for outcome in fetched.batch if outcome.ok]
    assert 5 <= len(ok) < USERS
    assert all(isinstance(outcome.error, NotFetched) for outcome in fetched.batch if not outcome.ok)
    assert len(fetched.result) == len(ok)
    assert fetched.result.attrs["failures"][0]["kind"] == "not_fetched"
    assert fetched.summary.startswith(f"Interrupted: {len(ok)} of {USERS} fetched")
    assert seen[0] == (1, USERS)
    assert [finished for finished, _ in seen] == sorted(finished for finished, _ in seen)


def test_progress_callback_counts_every_user_of_a_batch(magics: Any, emulator: Emulator) -> None:
    """Without a stop, the callback reaches total, and the summary is the one the magic prints."""
    seen: list[int] = []
    invocation = _invoke.parse(magics, "--users ids cohorts")
    identities = [Identity(user_id=user) for user in ("12345", "user-00001", "user-00002")]
    fetched = _invoke.fetch(magics, invocation, identities, on_progress=lambda done, total, note: seen.append(done))
    assert seen[-1] == 3
    assert not fetched.batch.interrupted
    assert fetched.summary == fetched.result.attrs["summary"]
    assert fetched.summary.startswith("3 profiles")

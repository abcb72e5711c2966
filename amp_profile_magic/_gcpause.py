"""The cyclic garbage collector, paused while a batch's many short-lived, acyclic objects are made and dropped.

A cached 100,000-user re-run makes about a million small containers in a few seconds (ids, queries, stored
answers, parsed bodies, profiles, outcomes), none of them in a reference cycle. While they pile up, CPython
runs a full collection each time allocations outgrow the surviving heap by a quarter, and each full collection
walks everything alive: that was a third of the re-run. Even one collection when a pause ends walks every one of
them still alive, so ``%ampprofile`` pauses for its whole call: the batch's objects are gone, freed by their
reference counts, before the collector looks. Waiting on the network is never paused (:func:`resumed`): an
hour-long batch makes cycles (exceptions and their tracebacks) that must still be collected.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused", "resumed"]

_lock = threading.Lock()
_depth = 0  # open pauses, all threads
_waiting = 0  # open resumed() blocks, all threads
_resume = False  # whether the collector was on when the first open pause began


def _apply() -> None:
    """Off while any pause is open and no block waits on the network; else as the first pause found it."""
    if _resume:
        if _depth and not _waiting:
            gc.disable()
        else:
            gc.enable()


@contextmanager
def paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block (nested and concurrent blocks share one pause)."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
        _depth += 1
        _apply()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            _apply()


@contextmanager
def resumed() -> Iterator[None]:
    """Let the collector run inside the block when a pause is on: a batch's network part, inside a paused call.

    Waiting wins: while any thread is inside one of these blocks (the form's batch beside a cell's, say), the
    collector runs, whatever pauses other threads hold; it is paused again when the last one ends, if a pause is open.
    """
    global _waiting
    with _lock:
        _waiting += 1
        if _depth:
            _apply()
    try:
        yield
    finally:
        with _lock:
            _waiting -= 1
            if _depth:
                _apply()

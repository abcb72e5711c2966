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
_depth = 0
_resume = False


@contextmanager
def paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block (nested and concurrent blocks share one pause)."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()


@contextmanager
def resumed() -> Iterator[None]:
    """Let the collector run inside the block when a pause is on: a batch's network part, inside a paused call.

    The pause is one switch for the process: another thread pausing meanwhile finds the collector running, and it
    is paused again when this block ends if any pause is still open.
    """
    with _lock:
        paused_here = _depth > 0 and _resume
        if paused_here:
            gc.enable()
    try:
        yield
    finally:
        with _lock:
            if paused_here and _depth > 0:
                gc.disable()

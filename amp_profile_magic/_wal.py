"""Switching an SQLite file to WAL mode when other processes may be opening it at the same moment."""

from __future__ import annotations

import random
import sqlite3
import time

__all__ = ["switch_to_wal"]


def switch_to_wal(db: sqlite3.Connection, timeout: float) -> str:
    """Put the file in WAL mode (kept in the file: later opens find it so), waiting up to ``timeout`` for others;
    return the mode SQLite reports.

    Switching needs the file to itself, and SQLite answers "database is locked" at once, without its busy timeout,
    while another process is switching a new file too: two kernels starting on a new cache directory lost one
    store (or one rate budget) that way.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as error:
            if time.monotonic() >= deadline or not any(word in str(error) for word in ("locked", "busy")):
                raise
        time.sleep(0.005 + random.random() * 0.02)  # jittered, so two processes do not retry in step

"""The emulator's request log and counters, readable from the thread that owns the emulator."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

__all__ = ["LOGGED_VALUE_LIMIT", "LOG_LIMIT", "LoggedRequest", "RequestLog", "logged_value"]

#: How many of the most recent requests the log keeps; counters count every request.
LOG_LIMIT = 100_000
#: Characters of one parameter value the log keeps: 100,000 entries of a 60 KB value each would be 6 GB.
LOGGED_VALUE_LIMIT = 4096


def logged_value(value: str) -> str:
    """``value``, or its first :data:`LOGGED_VALUE_LIMIT` characters and how many there were."""
    if len(value) <= LOGGED_VALUE_LIMIT:
        return value
    return f"{value[:LOGGED_VALUE_LIMIT]}… ({len(value):,} characters)"


@dataclass(frozen=True)
class LoggedRequest:
    """One request to the emulated API, as answered.

    ``at`` is ``time.monotonic()`` on arrival; ``params`` the query parameters (last value wins; a value past
    :data:`LOGGED_VALUE_LIMIT` characters is cut, see :func:`logged_value`);
    ``status`` the HTTP status sent, or 0 for a dropped connection; ``fault`` the injected fault
    (``"throttle"``, ``"error"``, ``"drop"``, ``"malformed"``, ``"slow"``) or None. Request headers,
    and so the API key, are never recorded.
    """

    at: float
    method: str
    path: str
    params: dict[str, str]
    status: int
    fault: str | None


class RequestLog:
    """The most recent :data:`LOG_LIMIT` requests plus counters over all of them, safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: deque[LoggedRequest] = deque(maxlen=LOG_LIMIT)
        self._count = 0
        self._by_status: Counter[int] = Counter()
        self._by_fault: Counter[str] = Counter()
        self._throttled = 0

    def add(self, entry: LoggedRequest) -> None:
        """Record one answered request."""
        with self._lock:
            self._entries.append(entry)
            self._count += 1
            self._by_status[entry.status] += 1
            if entry.fault is not None:
                self._by_fault[entry.fault] += 1
            if entry.status == 429:
                self._throttled += 1

    def entries(self) -> list[LoggedRequest]:
        """A snapshot of the logged requests, oldest first."""
        with self._lock:
            return list(self._entries)

    @property
    def count(self) -> int:
        """How many requests were recorded since creation or the last :meth:`clear`."""
        return self._count

    def stats(self) -> dict[str, object]:
        """The counters as JSON-ready data: requests, by_status (keys are strings), throttled, by_fault."""
        with self._lock:
            return {
                "requests": self._count,
                "by_status": {str(status): n for status, n in sorted(self._by_status.items())},
                "throttled": self._throttled,
                "by_fault": dict(sorted(self._by_fault.items())),
            }

    def clear(self) -> None:
        """Forget every request and zero the counters."""
        with self._lock:
            self._entries.clear()
            self._count = 0
            self._by_status.clear()
            self._by_fault.clear()
            self._throttled = 0

"""A client's request budget: where it is counted (this kernel, an SQLite file, Redis) and what to do when that fails.

:func:`open_budget` turns ``ProfileClient.rate_limiter`` into a :class:`Budget`, one per setting and scope per
process. A scope is the endpoint plus a fingerprint of the key (never the key), so kernels using different
emulators or projects never wait on each other. A shared budget that fails (Redis down, the file locked, read-only
or on NFS) never fails a batch: the client paces in the kernel at :data:`FALLBACK_SHARE` of its rate, logs one
warning, and tries the shared budget again after :data:`RETRY_SHARED_AFTER` seconds.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from amp_profile_magic._pacing import Cancelled, Pacer, kernel_pacer, sleep
from amp_profile_magic._secret import Secret, SecretURL

from . import _aimd
from ._window import BackendDown, SharedWindow

__all__ = [
    "FALLBACK_SHARE",
    "KERNEL",
    "Budget",
    "Grant",
    "KernelBudget",
    "kernel_budget",
    "open_budget",
    "reset",
    "scope_of",
]

log = logging.getLogger("amp_profile_magic")

KERNEL = "kernel"
#: Share of requests_per_minute a kernel paces at when its shared budget is unusable: it cannot see the others.
FALLBACK_SHARE = 0.5
#: Seconds between attempts to use a failed shared budget again.
RETRY_SHARED_AFTER = 30.0
#: Seconds between looks at the cancel event while a thread queues for its process's turn at the shared window.
TURN_POLL = 0.2


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission for one send: the rate it was paced at, and when it was granted on ``clock``'s time."""

    rate: float
    sent_at: float
    clock: object
    #: The rate before any adaptive cut (requests_per_minute, or its fallback share), per minute.
    ceiling: float = 0.0
    #: Why the send was paced in the kernel instead of the shared budget ("redis unreachable"); "" when it was not.
    fallback: str = ""


class Budget(Protocol):
    """Paces sends and spreads throttles among everyone who counts against the same budget."""

    #: Where the budget is counted, password masked ("kernel", "sqlite:///…", "redis://…").
    description: str

    def acquire(self, requests_per_minute: float, cancel: threading.Event | None, adaptive: bool) -> Grant:
        """Block until one request may be sent (:class:`~.._pacing.Cancelled` if ``cancel`` is set meanwhile)."""
        ...

    def throttled(self, hold: float, grant: Grant | None, adaptive: bool) -> None:
        """A request (sent under ``grant``) was throttled: hold every send ``hold`` seconds, lower the rate."""
        ...

    def hold_remaining(self) -> float:
        """Seconds left of a throttle hold on this budget (0 when sends are not held)."""
        ...

    def open(self) -> None:
        """Connect now (the backend's libraries, file or server), so that the first send does not wait for it."""
        ...


class KernelBudget:
    """Today's behaviour: this process's :class:`Pacer`, plus the adaptive rate kept in the process."""

    description = KERNEL

    def __init__(self, pacer: Pacer) -> None:
        self._pacer = pacer
        self._lock = threading.Lock()
        self._cut_factor = 1.0
        self._cut_at = -math.inf

    def acquire(self, requests_per_minute: float, cancel: threading.Event | None, adaptive: bool) -> Grant:
        """See :meth:`Budget.acquire`."""
        rate = requests_per_minute * self._share(adaptive)
        self._pacer.acquire(rate, cancel)
        return Grant(rate, time.monotonic(), self, requests_per_minute)

    def throttled(self, hold: float, grant: Grant | None, adaptive: bool) -> None:
        """See :meth:`Budget.throttled`."""
        self._pacer.hold(hold)
        if adaptive:
            sent_at = grant.sent_at if grant is not None and grant.clock is self else None
            with self._lock:
                after = _aimd.cut(self._cut_factor, self._cut_at, time.monotonic(), sent_at)
                if after is not None:
                    self._cut_factor, self._cut_at = after

    def hold_remaining(self) -> float:
        """See :meth:`Budget.hold_remaining`."""
        return self._pacer.hold_remaining()

    def open(self) -> None:
        """See :meth:`Budget.open`: nothing to open in the kernel."""

    def reset(self) -> None:
        """Back to the full rate (tests start each case from a clean budget)."""
        with self._lock:
            self._cut_factor, self._cut_at = 1.0, -math.inf

    def _share(self, adaptive: bool) -> float:
        if not adaptive:
            return 1.0
        with self._lock:
            return _aimd.factor(self._cut_factor, self._cut_at, time.monotonic())


class SharedBudget:
    """One scope of a shared window: try to send, and sleep (interruptibly) for as long as the window says."""

    def __init__(self, window: SharedWindow, scope: str) -> None:
        self.description = window.description
        self._window = window
        self._scope = scope
        # One thread per process asks the window at a time; the others queue here, not at the backend, so a
        # process's eight threads do not all wake for the same free slot (a polling herd) and race for it.
        self._turn = threading.Lock()
        self._failures = 0
        self._last_failure: BackendDown | None = None

    def acquire(self, requests_per_minute: float, cancel: threading.Event | None, adaptive: bool) -> Grant:
        """See :meth:`Budget.acquire`."""
        failures = self._failures
        while not self._turn.acquire(timeout=TURN_POLL):
            if cancel is not None and cancel.is_set():
                raise Cancelled
        try:
            if self._failures != failures and self._last_failure is not None:
                # The window failed while this thread queued: fail at once, or eight threads would each wait out
                # the backend's timeout in turn.
                raise self._last_failure
            while True:
                try:
                    wait, rate, now = self._window.try_send(self._scope, requests_per_minute, adaptive)
                except BackendDown as error:
                    self._failures, self._last_failure = self._failures + 1, error
                    raise
                if wait <= 0:
                    return Grant(rate, now, self._window, requests_per_minute)
                sleep(wait, cancel)
        finally:
            self._turn.release()

    def throttled(self, hold: float, grant: Grant | None, adaptive: bool) -> None:
        """See :meth:`Budget.throttled`."""
        sent_at = grant.sent_at if grant is not None and grant.clock is self._window else None
        self._window.throttle(self._scope, hold, sent_at, adaptive)

    def hold_remaining(self) -> float:
        """See :meth:`Budget.hold_remaining`."""
        return self._window.hold_remaining(self._scope)

    def open(self) -> None:
        """See :meth:`Budget.open`."""
        self._window.open()


class FallbackBudget:
    """A shared budget that paces in the kernel, at a conservative rate, while the shared one is unusable."""

    def __init__(self, shared: SharedBudget, kernel: KernelBudget) -> None:
        self.description = shared.description
        self._shared = shared
        self._kernel = kernel
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._warned = False
        self._reason = ""

    def acquire(self, requests_per_minute: float, cancel: threading.Event | None, adaptive: bool) -> Grant:
        """See :meth:`Budget.acquire`."""
        if self._shared_usable():
            try:
                return self._shared.acquire(requests_per_minute, cancel, adaptive)
            except BackendDown as error:
                self._went_down(error)
        grant = self._kernel.acquire(requests_per_minute * FALLBACK_SHARE, cancel, adaptive)
        return replace(grant, fallback=self._reason)

    def throttled(self, hold: float, grant: Grant | None, adaptive: bool) -> None:
        """See :meth:`Budget.throttled`."""
        if self._shared_usable():
            try:
                self._shared.throttled(hold, grant, adaptive)
                return
            except BackendDown as error:
                self._went_down(error)
        self._kernel.throttled(hold, grant, adaptive)

    def hold_remaining(self) -> float:
        """See :meth:`Budget.hold_remaining`."""
        if self._shared_usable():
            try:
                return self._shared.hold_remaining()
            except BackendDown as error:
                self._went_down(error)
        return self._kernel.hold_remaining()

    def open(self) -> None:
        """See :meth:`Budget.open`; a failure here is the same one warning a failed send gives."""
        if self._shared_usable():
            try:
                self._shared.open()
            except BackendDown as error:
                self._went_down(error)

    @property
    def degraded(self) -> bool:
        """Whether sends are paced in the kernel because the shared budget failed."""
        return time.monotonic() < self._down_until

    def _shared_usable(self) -> bool:
        with self._lock:
            return time.monotonic() >= self._down_until

    def _went_down(self, error: BackendDown) -> None:
        with self._lock:
            if time.monotonic() < self._down_until:
                return  # another thread already switched
            self._down_until = time.monotonic() + RETRY_SHARED_AFTER
            self._reason = error.reason
            first, self._warned = not self._warned, True
        if first:
            log.warning("Pacing in this kernel at %d%% of requests_per_minute: %s.", round(FALLBACK_SHARE * 100), error)
        else:
            log.debug("The shared rate budget is still unusable: %s.", error)


_KERNEL_BUDGET = KernelBudget(kernel_pacer())
_lock = threading.Lock()
_windows: dict[str, SharedWindow] = {}
_budgets: dict[tuple[str, str], FallbackBudget] = {}


def kernel_budget() -> KernelBudget:
    """The process-wide kernel budget (``rate_limiter = "kernel"``, and every shared budget's fallback)."""
    return _KERNEL_BUDGET


def scope_of(endpoint: str, key: Secret) -> str:
    """The scope of a budget: the endpoint and a fingerprint of the key. Neither the key nor a way back to it."""
    # Revealed inside the expression only: a local holding the key would print in a traceback with locals.
    digest = hashlib.sha256(
        f"amp_profile_magic rate budget\0{endpoint.rstrip('/')}\0{key.reveal()}".encode()
    ).hexdigest()
    return digest[:32]


def open_budget(setting: SecretURL, *, endpoint: str, key: Secret) -> Budget:
    """The budget that a rate_limiter ``setting`` names, for this endpoint and key (one per process)."""
    if setting.reveal() == KERNEL:
        return _KERNEL_BUDGET
    scope = scope_of(endpoint, key)
    with _lock:
        budget = _budgets.get((setting.reveal(), scope))
        if budget is None:
            window = _windows.get(setting.reveal())
            if window is None:
                window = _windows[setting.reveal()] = _window_for(setting)
            budget = _budgets[setting.reveal(), scope] = FallbackBudget(SharedBudget(window, scope), _KERNEL_BUDGET)
        return budget


def _window_for(setting: SecretURL) -> SharedWindow:
    # The trait checked the setting's form (ProfileClient.rate_limiter): sqlite:///PATH, or redis:// / rediss://.
    if setting.reveal().startswith("sqlite:"):
        from ._sqlite import SqliteWindow

        # sqlite:///tmp/x (a file URL's three slashes) and sqlite:////tmp/x (SQLAlchemy's four) both mean /tmp/x.
        path = Path("/" + unquote(urlsplit(setting.reveal()).path).lstrip("/"))
        return SqliteWindow(path, description=setting.masked)
    from ._redis import RedisWindow

    return RedisWindow(setting, description=setting.masked)


def reset() -> None:
    """Forget every open budget and close its connections; the kernel budget returns to the full rate."""
    with _lock:
        windows = list(_windows.values())
        _windows.clear()
        _budgets.clear()
    for window in windows:
        window.close()
    _KERNEL_BUDGET.reset()

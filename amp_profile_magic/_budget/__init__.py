"""The organisation's request budget, counted in this kernel, in an SQLite file or in Redis (see :mod:`._budget`).

Imported on the first request, never by ``%load_ext``: nothing here is needed until something is sent.
"""

from ._budget import (
    FALLBACK_SHARE,
    KERNEL,
    Budget,
    Grant,
    KernelBudget,
    kernel_budget,
    open_budget,
    reset,
    scope_of,
)

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

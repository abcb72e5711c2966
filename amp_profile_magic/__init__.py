"""Query Amplitude's User Profile API from IPython and Jupyter, and get pandas DataFrames back.

In a notebook::

    In [1]: %load_ext amp_profile_magic
    In [2]: %ampprofile_emulator          # or set AMPLITUDE_SECRET_KEY for the real API
    In [3]: %ampprofile user=12345 recs=testRecId,testRecId2

The package imports lightly: the client, the emulator and pandas load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from ._batch import BatchResult, Outcome
    from ._client import ProfileClient
    from ._exceptions import (
        ApiError,
        CassetteError,
        ConfigurationError,
        ConnectionFailed,
        EndpointNotFound,
        InsecureEndpoint,
        InvalidKey,
        InvalidQuery,
        MalformedResponse,
        MissingAuthHeader,
        MissingKey,
        NotFetched,
        NotStored,
        PlainHttpRedirect,
        ProfileError,
        ProxyFailed,
        RequestTimeout,
        ResponseTooLarge,
        SectionFailed,
        ServerUnavailable,
        Throttled,
        UnexpectedResponse,
        UnknownUser,
        UnsupportedRegion,
    )
    from ._magics import profile_form
    from ._models import Profile
    from ._query import ProfileQuery
    from .sections.propensity import Propensity
    from .sections.recs import Recommendation

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "BatchResult",
    "CassetteError",
    "ConfigurationError",
    "ConnectionFailed",
    "EndpointNotFound",
    "InsecureEndpoint",
    "InvalidKey",
    "InvalidQuery",
    "MalformedResponse",
    "MissingAuthHeader",
    "MissingKey",
    "NotFetched",
    "NotStored",
    "Outcome",
    "PlainHttpRedirect",
    "Profile",
    "ProfileClient",
    "ProfileError",
    "ProfileQuery",
    "Propensity",
    "ProxyFailed",
    "Recommendation",
    "RequestTimeout",
    "ResponseTooLarge",
    "SectionFailed",
    "ServerUnavailable",
    "Throttled",
    "UnexpectedResponse",
    "UnknownUser",
    "UnsupportedRegion",
    "load_ipython_extension",
    "profile_form",
    "unload_ipython_extension",
]

_LAZY = {
    "BatchResult": "._batch",
    "Outcome": "._batch",
    "ProfileClient": "._client",
    "Profile": "._models",
    "Propensity": ".sections.propensity",
    "Recommendation": ".sections.recs",
    "ProfileQuery": "._query",
    "profile_form": "._magics",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in __all__:
        return getattr(importlib.import_module("._exceptions", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register ``%ampprofile``, ``%%ampprofile`` and friends (``%load_ext amp_profile_magic``)."""
    from ._magics import load

    load(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Remove what :func:`load_ipython_extension` registered (``%unload_ext amp_profile_magic``)."""
    from ._magics import unload

    unload(ipython)

"""Set up for every pytest run, the notebooks included: a throw-away cache directory for the local profile store.

The store lives in the user's cache directory. No run may read a developer's store, leave one behind, or depend on
an earlier run, so XDG_CACHE_HOME points at a fresh directory, set at import (before nbval starts the notebooks'
kernels, which inherit it). tests/conftest.py gives each test a directory of its own on top of this.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_SESSION_CACHE = tempfile.mkdtemp(prefix="amp-profile-test-cache-")
os.environ["XDG_CACHE_HOME"] = _SESSION_CACHE
os.environ.pop("AMPLITUDE_PROFILE_STORE", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's throw-away cache directory."""
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)

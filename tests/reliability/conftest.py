"""Fixtures for the reliability suite: the shell's magics object and an emulator that misbehaves on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from amp_profile_magic.emulator import Emulator, Faults
from tests.conftest import CANARY_KEY

#: The injected mix of the fault test: 29% of all attempts fail, each in a way the client must retry.
FAULT_MIX = Faults(error_rate=0.20, throttle_rate=0.05, drop_rate=0.02, slow_rate=0.02, slow_seconds=2.5)


def magics_of(shell: Any) -> Any:
    """The AmpProfileMagics instance loaded into ``shell``."""
    return next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")


@pytest.fixture
def faulty_emulator() -> Iterator[Emulator]:
    """A private emulator (canary key) injecting FAULT_MIX, throttling without ``Retry-After``.

    Without ``Retry-After`` a throttled request backs off like any other transient failure; with the emulator's
    ``Retry-After: 1``, about 70 throttles of a 1,000-user batch would each hold the whole kernel for a second.
    """
    with Emulator(seed=7, users=5000, api_key=CANARY_KEY, throttle_retry_after=False, faults=FAULT_MIX) as emu:
        yield emu

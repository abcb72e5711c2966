"""A local emulator of Amplitude's User Profile API: a real HTTP server on 127.0.0.1.

It answers ``GET /v1/userprofile`` exactly as the vendor documents (the documented examples verbatim
for user ``12345``), serves deterministic synthetic users otherwise, and can throttle, fail, drop,
garble and delay responses on demand. Start one with ``with Emulator() as emu:`` or from a shell with
``python -m amp_profile_magic.emulator``.
"""

from ._data import EXAMPLE_DEVICE_ID, EXAMPLE_USER_ID, Dataset, Prediction, Profile, Recommendation
from ._faults import NO_FAULTS, Faults
from ._log import LOG_LIMIT, LoggedRequest
from ._server import Emulator

__all__ = [
    "EXAMPLE_DEVICE_ID",
    "EXAMPLE_USER_ID",
    "LOG_LIMIT",
    "NO_FAULTS",
    "Dataset",
    "Emulator",
    "Faults",
    "LoggedRequest",
    "Prediction",
    "Profile",
    "Recommendation",
]

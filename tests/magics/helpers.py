"""Plain helpers for the magics' tests: the loaded magics object, the emulator's API log, captured cell runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from IPython.utils.capture import CapturedIO

from amp_profile_magic.emulator import Emulator, LoggedRequest

API_PATH = "/v1/userprofile"


def magics_of(ip: Any) -> Any:
    """The AmpProfileMagics instance registered on ``ip``."""
    return next(item for item in ip.configurables if type(item).__name__ == "AmpProfileMagics")


def api_requests(emulator: Emulator) -> list[LoggedRequest]:
    """The requests the emulator answered on the API path, oldest first."""
    return [entry for entry in emulator.requests if entry.path == API_PATH]


@dataclass
class CellRun:
    """What one ``run_cell`` did: its result plus everything it printed and displayed."""

    result: Any
    captured: CapturedIO

    @property
    def stdout(self) -> str:
        return self.captured.stdout

    @property
    def stderr(self) -> str:
        return self.captured.stderr

    def bundles(self) -> list[dict[str, Any]]:
        """Each displayed output's MIME bundle, in display order."""
        return [dict(output.data) for output in self.captured.outputs]

    def texts(self) -> list[str]:
        """Each displayed output's text/plain."""
        return [bundle.get("text/plain", "") for bundle in self.bundles()]

    @property
    def everything(self) -> str:
        """All text the user could see: stdout, stderr and every displayed representation."""
        parts = [self.stdout, self.stderr]
        for bundle in self.bundles():
            parts.extend(str(value) for value in bundle.values())
        return "\n".join(parts)

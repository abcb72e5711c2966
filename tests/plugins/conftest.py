"""The test plugins installed through entry points of a throwaway distribution, and an API that knows their fields."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from amp_profile_magic.sections import _registry
from tests.conftest import CANARY_KEY

ENTRY_POINTS = """\
[amp_profile_magic.sections]
loyalty = tests.plugins.loyalty:LoyaltySection
experiments = tests.plugins.experiments:ExperimentsSection
"""


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution ``amp-test-plugins`` on sys.path whose entry points declare the two test sections."""
    info = tmp_path / "amp_test_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: amp-test-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    _registry.reset()  # rediscover the entry points, as a fresh kernel would
    yield tmp_path
    _registry.reset()


def user_data(params: dict[str, str]) -> dict[str, Any]:
    """What the (hypothetical) API answers: the documented fields, plus ``loyalty`` and experiment flags.

    Like the real API, everything asked of ``amp_props`` (properties, computations, experiment flags) is merged
    into that one dict.
    """
    data: dict[str, Any] = {"user_id": params.get("user_id"), "device_id": params.get("device_id")}
    amp_props: dict[str, Any] = {}
    if params.get("get_amp_props") == "true":
        amp_props["plan"] = "pro"
    if params.get("get_computations") == "true":
        amp_props["c1"] = "3"
    if params.get("get_experiment_props") == "true":
        amp_props["exp_checkout"] = "B"
    data["amp_props"] = amp_props or None
    if params.get("get_cohort_ids") == "true":
        data["cohort_ids"] = ["cohort-a"]
    if params.get("get_loyalty") == "true":
        programs = params["loyalty_program"].split(",") if "loyalty_program" in params else ["p1", "p2"]
        data["loyalty"] = [{"program": program, "tier": "gold", "points": 120} for program in programs]
    return data


class PluginApi(ThreadingHTTPServer):
    """A real HTTP server on 127.0.0.1 answering ``/v1/userprofile`` with :func:`user_data`; it logs each query."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: PluginApi
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if self.headers.get("Authorization") != f"Api-Key {CANARY_KEY}" or parts.path != "/v1/userprofile":
            status, body = 401, b"Invalid Api-Key"
        else:
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            self.server.requests.append(params)
            status, body = 200, json.dumps({"userData": user_data(params)}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def plugin_api() -> Iterator[PluginApi]:
    """The plugin-aware API on a free loopback port."""
    server = PluginApi()
    thread = threading.Thread(target=server.serve_forever, name="plugin-api", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def plugin_shell(shell: Any, installed: Path, plugin_api: PluginApi) -> Any:
    """The real IPython shell, the test plugins installed, its client pointed at the plugin-aware API."""
    magics = next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")
    magics.client.endpoint = plugin_api.url
    magics.client.api_key = CANARY_KEY
    magics.client.store = "off"  # these tests count requests
    return shell

"""A scripted loopback API for the validation tests: well-formed profiles by default, crafted bodies per user."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from IPython.utils.capture import capture_output

from tests.conftest import CANARY_KEY
from tests.magics.helpers import CellRun, magics_of

#: The last_updated every well-formed recommendation of the scripted API carries (2020-12-22 20:58:40 UTC).
GOOD_LAST_UPDATED = 1608670720


@dataclass
class Answer:
    """One scripted answer: status, raw body bytes and content type."""

    status: int
    body: bytes
    content_type: str = "application/json"


def good_user_data(params: dict[str, str]) -> dict[str, Any]:
    """A documented, well-formed ``userData`` for the query's ids, with every section it asked for."""
    data: dict[str, Any] = {
        "user_id": params.get("user_id"),
        "device_id": params.get("device_id"),
        "recommendations": None,
        "amp_props": None,
        "cohort_ids": None,
    }
    if params.get("get_recs") == "true":
        data["recommendations"] = [
            {
                "rec_id": rec_id,
                "child_rec_id": rec_id,
                "items": ["cookie", "cracker"],
                "is_control": False,
                "recommendation_source": "model",
                "last_updated": GOOD_LAST_UPDATED,
            }
            for rec_id in params["rec_id"].split(",")
        ]
    if params.get("get_amp_props") == "true" or params.get("get_computations") == "true":
        data["amp_props"] = {"plan": "pro", "visits": 3}
    if params.get("get_cohort_ids") == "true":
        data["cohort_ids"] = ["cohort-a"]
    if params.get("get_propensity") == "true":
        ids = params["prediction_id"].split(",")
        data["propensity"] = 0.5 if len(ids) == 1 else None
        data["propensities"] = [{"prop": 0.5, "pred_id": pid, "prop_type": "score"} for pid in ids]
    return data


def user_data_answer(user_data: dict[str, Any], *, status: int = 200) -> Answer:
    """An answer whose body is ``{"userData": user_data}`` (NaN and Infinity written as Python's json writes them)."""
    return Answer(status, json.dumps({"userData": user_data}).encode())


@dataclass
class ScriptedApi:
    """A real HTTP server on 127.0.0.1 answering ``/v1/userprofile``; ``answers`` maps a user (or device) id to a
    crafted :class:`Answer`, and every other id gets :func:`good_user_data`."""

    server: ThreadingHTTPServer
    # Not in the repr: a test's frame (shown with locals in a checked traceback) would print every crafted body.
    answers: dict[str, Answer] = field(default_factory=dict, repr=False)
    requests: list[dict[str, str]] = field(default_factory=list, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, params: dict[str, str]) -> Answer:
        with self.lock:
            self.requests.append(params)
        who = params.get("user_id") or params.get("device_id") or ""
        crafted = self.answers.get(who)
        if crafted is not None:
            return crafted
        return user_data_answer(good_user_data(params))


@pytest.fixture
def scripted_api() -> Iterator[ScriptedApi]:
    """The scripted API on a free loopback port, stopped after the test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    api = ScriptedApi(server)
    server.api = api  # type: ignore[attr-defined]
    # shutdown() returns at serve_forever's next poll: 0.5 s by default, most of a short test's time.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="scripted-api", daemon=True
    )
    thread.start()
    yield api
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API and the emulator

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/v1/userprofile":
            self._send(Answer(404, b"", "text/plain"))
            return
        if self.headers.get("Authorization") != f"Api-Key {CANARY_KEY}":
            self._send(Answer(401, b"Invalid Api-Key", "text/plain"))
            return
        api: ScriptedApi = self.server.api  # type: ignore[attr-defined]
        self._send(api.answer(dict(parse_qsl(parts.query, keep_blank_values=True))))

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest would show every request otherwise


@pytest.fixture
def api_shell(shell: Any, scripted_api: ScriptedApi) -> Any:
    """The real IPython shell of tests/conftest.py, its client pointed at the scripted API with the canary key."""
    client = magics_of(shell).client
    client.endpoint = scripted_api.url
    client.api_key = CANARY_KEY
    client.max_retries = 2
    return shell


@pytest.fixture
def run(api_shell: Any) -> Any:
    """Run a cell in the shell pointed at the scripted API, capturing its outputs."""

    def run_cell(source: str) -> CellRun:
        with capture_output() as captured:
            result = api_shell.run_cell(source, store_history=True)
        return CellRun(result, captured)

    return run_cell

"""The canary key never shows up in any channel a user, a log or a saved file can see.

The session's emulator accepts only the canary key, and the shell's client is configured with it, so every lookup
below really sends it. Each test drives a group of channels and scans everything they produced: printed text,
stderr, display data (every mimetype and its metadata), exception text (plain, chained, with frame locals, and
IPython's own Context and Verbose tracebacks), log records at DEBUG for every logger, ``%config`` listings, reprs,
the emulator's request log, widget state, an executed notebook and a recorded cassette.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from IPython.utils.capture import capture_output

from amp_profile_magic import ProfileClient
from amp_profile_magic.emulator import Emulator
from tests.conftest import CANARY_KEY

from .conftest import magics_of

HAS_FORM = importlib.util.find_spec("amp_profile_magic._form") is not None
HAS_CASSETTE = importlib.util.find_spec("amp_profile_magic._cassette") is not None


class Scan:
    """Collects (channel, text) pairs and fails naming every channel that contains the canary."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.seen: list[tuple[str, str]] = []
        self._caplog = caplog

    def add(self, channel: str, value: object) -> None:
        """Record ``value`` (text, bytes, or anything JSON or repr can render) under ``channel``."""
        if isinstance(value, bytes):
            text = value.decode("utf-8", "replace")
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, default=repr)
        self.seen.append((channel, text))

    def error(self, channel: str, error: BaseException | None) -> None:
        """Record an exception's str, repr, formatted chain, and the chain formatted with every frame's locals."""
        if error is None:
            return
        self.add(f"{channel}: str", str(error))
        self.add(f"{channel}: repr", repr(error))
        self.add(f"{channel}: traceback", "".join(traceback.format_exception(error)))
        with_locals = traceback.TracebackException.from_exception(error, capture_locals=True)
        self.add(f"{channel}: traceback with locals", "".join(with_locals.format()))

    def cell(self, shell: Any, source: str) -> Any:
        """Run ``source`` as a cell; record what it printed, displayed, returned and raised."""
        with capture_output() as captured:
            result = shell.run_cell(source, store_history=True)
        self.add(f"stdout of {source!r}", captured.stdout)
        self.add(f"stderr of {source!r}", captured.stderr)
        for output in captured.outputs:
            self.add(f"display data of {source!r}", {"data": output.data, "metadata": output.metadata})
        if result.result is not None:
            data, metadata = shell.display_formatter.format(result.result)
            self.add(f"result of {source!r}", {"data": data, "metadata": metadata})
            self.add(f"repr of the result of {source!r}", repr(result.result))
        self.error(f"exception of {source!r}", result.error_before_exec or result.error_in_exec)
        return result

    def assert_clean(self) -> None:
        """Add every log record so far, then fail, naming the channels, if the canary appeared anywhere."""
        self.add("log text", self._caplog.text)
        for record in self._caplog.records:
            self.add(f"log record {record.name}", record.getMessage())
            if record.exc_info and record.exc_info[1] is not None:
                self.error(f"log record {record.name}", record.exc_info[1])
        assert self.seen, "nothing was scanned"
        leaks = [f"{channel}: …{_around(text)}…" for channel, text in self.seen if CANARY_KEY in text]
        assert not leaks, "the canary key leaked into:\n" + "\n".join(leaks)


def _around(text: str, width: int = 150) -> str:
    where = text.index(CANARY_KEY)
    return text[max(0, where - width) : where + len(CANARY_KEY) + 20]


def forget_typed_key(shell: Any) -> None:
    """Remove the canary from the shell's input history (``In``, ``_ih``, ``_i``…) and from string variables.

    A cell that types the key (``%config ProfileClient.api_key = '...'``, here or in another directory's tests) keeps
    it in the input history of the InteractiveShell singleton for the rest of the session. That is the user's own
    input, not an output, but a traceback formatted with frame locals shows it (a cell's frame has the namespace as
    its locals), so it would read as a leak here.
    """
    history = shell.history_manager
    for inputs in (history.input_hist_parsed, history.input_hist_raw):
        inputs[:] = [text.replace(CANARY_KEY, "<typed key>") for text in inputs]
    for name in [name for name, value in shell.user_ns.items() if isinstance(value, str) and CANARY_KEY in value]:
        del shell.user_ns[name]


@pytest.fixture
def scan(caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest) -> Scan:
    """A Scan that also reads every log record of the test (all loggers, DEBUG and up)."""
    if "shell" in request.fixturenames:
        forget_typed_key(request.getfixturevalue("shell"))
    caplog.set_level(logging.DEBUG)
    return Scan(caplog)


@pytest.fixture
def restore_config(shell: Any) -> Iterator[None]:
    """Put back the shell's Config (which outlives the test's magics) and forget the key the test typed."""
    saved = copy.deepcopy(shell.config)
    yield
    shell.config = saved
    forget_typed_key(shell)


@pytest.fixture
def echo_server() -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server that answers every request with its own headers in the body, at ``server.status``.

    It stands for a proxy, a debugging endpoint or a misconfigured URL that echoes what it was sent.
    """

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            # The Authorization header first, so even a message cut short would still quote it.
            headers = {"Authorization": self.headers.get("Authorization"), **dict(self.headers)}
            body = json.dumps({"error": f"rejected request with headers {headers}"}).encode()
            self.send_response(self.server.status)  # type: ignore[attr-defined]
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.status = 400  # type: ignore[attr-defined]
    # shutdown() returns at serve_forever's next poll: 0.5 s by default, most of a short test's time.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_no_canary_in_cell_outputs_errors_logs_config_or_reprs(
    shell: Any, emulator: Emulator, scan: Scan, closed_url: str
) -> None:
    """Successes, batches with failures, failing cells, usage errors, %config, %whos, reprs, the emulator's own
    log, the emulator switch and IPython's Context and Verbose tracebacks all stay free of the key."""
    magics = magics_of(shell)
    assert magics.client.api_key.reveal() == CANARY_KEY
    magics.progress = True  # the progress bar writes to stderr
    shell.user_ns["unreachable"] = ProfileClient(endpoint=closed_url, api_key=CANARY_KEY, max_retries=0)
    for source in (
        "%ampprofile user=12345 recs=testRecId props cohorts comps propensity=0x10x",
        "ids = ['user-00001', 'nobody', '12345', 'user-00002']\n%ampprofile --users ids props comps -o res",
        "res",
        "res.props",
        "res.failures",
        "%ampprofile --users ids cohorts",
        "%ampprofile user=nobody props",
        "%ampprofile user=12345 bogus_section",
        "%ampprofile --sections",
        "%config ProfileClient",
        "%config AmpProfileMagics",
        "%config",
        "client = [c for c in get_ipython().configurables if type(c).__name__ == 'ProfileClient'][0]\nclient",
        "print(client, client.api_key, str(client.api_key), f'{client.api_key}', client.trait_values())",
        "client.api_key",
        "%whos",
        "unreachable.lookup(user_id='12345', props=True)",
        "%xmode Verbose",
        "unreachable.lookup(user_id='12345', props=True)",
        "%ampprofile user=nobody props",
        "%xmode Context",
        "%ampprofile_emulator",
        "%ampprofile user=12345 cohorts",
        "%ampprofile_emulator --stop",
        "client.api_key",
    ):
        scan.cell(shell, source)
    assert shell.user_ns["res"].failures["user_id"].tolist() == ["nobody"]
    assert magics.client.api_key.reveal() == CANARY_KEY  # --stop gave the canary back: it was in use throughout
    scan.add("repr of the client", repr(magics.client))
    scan.add("repr of the magics", repr(magics))
    scan.add("repr of the emulator", repr(emulator))
    scan.add("the emulator's request log", [repr(entry) for entry in emulator.requests])
    scan.add("the emulator's stats", emulator.stats())
    # Every lookup above went to the canary-keyed emulator (and was accepted), so the key was really sent.
    assert emulator.stats()["by_status"].get("200", 0) >= 8
    scan.assert_clean()


def test_no_canary_after_setting_the_key_with_config(shell: Any, scan: Scan, restore_config: None) -> None:
    """A key typed into %config appears in no output, no later %config listing, and not in the shell's Config."""
    scan.cell(shell, f"%config ProfileClient.api_key = '{CANARY_KEY}'")
    for source in ("%config ProfileClient", "%config", "get_ipython().config", "%ampprofile user=12345 props"):
        result = scan.cell(shell, source)
        assert result.success, source
    scan.add("repr of the shell's Config", repr(shell.config))
    scan.add("the shell's Config as JSON", shell.config)
    scan.assert_clean()


def test_no_canary_when_a_server_echoes_the_request_headers(
    shell: Any, scan: Scan, echo_server: ThreadingHTTPServer
) -> None:
    """A server that quotes the request's headers (key included) in its error body gets quoted with the key masked,
    in panels, failure tables, exceptions and retry log lines alike."""
    magics = magics_of(shell)
    magics.client.endpoint = f"http://127.0.0.1:{echo_server.server_port}"
    shell.user_ns["ids"] = ["12345", "user-00001"]
    for status in (400, 401, 429, 503, 200):
        echo_server.status = status  # type: ignore[attr-defined]
        before = len(scan.seen)
        for source in ("%ampprofile user=12345 props", "%ampprofile --users ids props -o echoed"):
            batch = scan.cell(shell, source)
        # Every user failed alike, so the batch fails its cell with the first failure, as the single lookup does.
        assert batch.error_in_exec is not None
        assert "echoed" not in shell.user_ns
        if status != 401:
            # The body really was quoted, key masked: the masking, not a truncation, kept the key out.
            shown = "\n".join(text for _, text in scan.seen[before:])
            assert "{'Authorization': 'Api-Key ********'" in shown, shown
    scan.assert_clean()


@pytest.mark.skipif(not HAS_FORM, reason="amp_profile_magic._form does not exist yet")
def test_no_canary_in_widget_state(shell: Any, emulator: Emulator, scan: Scan) -> None:
    """After the form fetched a profile and failed on another, no live widget's state holds the key."""
    import ipywidgets
    from ipywidgets.widgets import widget as widget_module

    try:
        form = scan.cell(shell, "form = %ampprofile_form user=12345 recs=testRecId props\nform").result
        form.fetch()
        assert form.wait(timeout=30)
        form.identity_value.value = "nobody-at-all"
        form.fetch()
        assert form.wait(timeout=30)
        states = {model_id: item.get_state() for model_id, item in list(widget_module._instances.items())}
        assert len(states) > 10
        scan.add("widget state", states)
        scan.add("form output", [dict(output) for output in form.output.outputs])
        scan.add("form mimebundle", form._repr_mimebundle_())
        scan.add("repr of the form", repr(form))
        scan.assert_clean()
    finally:
        ipywidgets.Widget.close_all()


@pytest.mark.slow
def test_no_canary_in_an_executed_notebook_or_its_cassette(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scan: Scan
) -> None:
    """A notebook run in a real kernel with the key in its environment, recording a cassette, saving widget state
    and failing on purpose, leaves the key in neither the saved .ipynb nor the cassette."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", CANARY_KEY)
    monkeypatch.setenv("AMPLITUDE_PROFILE_URL", emulator.url)
    monkeypatch.delenv("AMPLITUDE_PROFILE_CASSETTE_MODE", raising=False)
    cells = ["%load_ext amp_profile_magic\n%config AmpProfileMagics.progress = False"]
    if HAS_CASSETTE:
        cells.append("%ampprofile_cassette record canary.cassette.json")
    cells += [
        "%ampprofile user=12345 recs=testRecId props cohorts",
        "ids = ['user-00001', 'nobody']\nres = %ampprofile --users ids props comps\nres.failures",
        "%config ProfileClient",
        "client = [c for c in get_ipython().configurables if type(c).__name__ == 'ProfileClient'][0]\n"
        "print(repr(client), client.api_key, client.trait_values())",
        "%ampprofile user=nobody props",
        "%xmode Verbose",
        "from amp_profile_magic import ProfileClient\n"
        "ProfileClient(endpoint='http://127.0.0.1:9', max_retries=0).lookup(user_id='12345', props=True)",
    ]
    if HAS_FORM:
        cells.append("form = %ampprofile_form user=12345 props\nform.fetch(); form.wait(30); form")
    notebook = new_notebook(cells=[new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    executed = client.execute()
    path = tmp_path / "canary.ipynb"
    nbformat.write(executed, path)

    errors = [output for cell in executed.cells for output in cell.outputs if output.output_type == "error"]
    assert len(errors) == 2, errors  # the unknown user and the unreachable endpoint, as intended
    lookup = next(cell for cell in executed.cells if cell.source.startswith("%ampprofile user=12345 recs"))
    assert "cookie" in json.dumps(lookup.outputs), lookup.outputs
    scan.add("the executed notebook", path.read_text())
    if HAS_CASSETTE:
        cassette = tmp_path / "canary.cassette.json"
        assert cassette.stat().st_size > 0
        scan.add("the recorded cassette", cassette.read_bytes())
    if HAS_FORM:
        assert "application/vnd.jupyter.widget-state+json" in executed.metadata.get("widgets", {})
    scan.assert_clean()


def _echo_handler(kind: str) -> Any:
    """A scripted answer that quotes the request's Authorization header (key included) in the way ``kind`` says."""
    from tests.client.scripted import answer, trickle_head

    slow = trickle_head(interval=0.5)

    def handle(server: Any, conn: Any, head: Any) -> None:
        authorization = head.headers.get("authorization", "")
        if kind == "timeout":
            slow(server, conn, head)
        elif kind == "non-json":
            answer(conn, 200, f"<html>you sent {authorization}</html>".encode(), {"Content-Type": "text/html"})
        elif kind == "location":
            answer(conn, 302, b"", {"Location": f"https://elsewhere.test/login?auth={authorization.split()[-1]}"})

    return handle


@pytest.mark.parametrize("kind", ["timeout", "non-json", "location"])
def test_no_canary_in_verbose_tracebacks_tb_or_debug_logs(shell: Any, scan: Scan, kind: str) -> None:
    """A send that times out, a non-JSON 200 that echoes the key, and a redirect whose Location holds the key show
    no key under ``%xmode Verbose`` (frame locals), in ``%tb``, or in httpx's and httpcore's DEBUG log records."""
    from tests.client.scripted import ScriptedServer

    server = ScriptedServer(_echo_handler(kind))
    shell.user_ns["hostile"] = ProfileClient(endpoint=server.url, api_key=CANARY_KEY, timeout=0.4, max_retries=0)
    magics = magics_of(shell)
    magics.client.endpoint = server.url
    magics.client.timeout = 0.4
    magics.client.max_retries = 0
    try:
        scan.cell(shell, "%xmode Verbose")
        first = scan.cell(shell, "hostile.lookup(user_id='12345', props=True)")
        scan.cell(shell, "%tb")
        scan.cell(shell, "%ampprofile user=12345 props")
        scan.cell(shell, "%tb")
    finally:
        scan.cell(shell, "%xmode Context")
        shell.user_ns.pop("hostile").close()
        server.close()
    # The key really was sent and (except for the timeout) really came back.
    assert server.heads[0].headers["authorization"] == f"Api-Key {CANARY_KEY}"
    assert first.error_in_exec is not None
    expected = {"timeout": "RequestTimeout", "non-json": "MalformedResponse", "location": "PlainHttpRedirect"}[kind]
    assert type(first.error_in_exec).__name__ == expected
    if kind == "location":
        assert any("elsewhere.test/login?auth=********" in text for _, text in scan.seen)
        assert any(record.name.startswith("httpcore") for record in scan._caplog.records)
    scan.assert_clean()


@pytest.mark.parametrize(
    "url", ["redis://:{canary}@127.0.0.1:notaport/3", "//:{canary}@127.0.0.1:6379/0", ":{canary}@127.0.0.1:6379/0"]
)
def test_no_canary_from_a_bad_rate_limiter_url_in_the_environment(
    shell: Any, scan: Scan, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """A mistyped $AMPLITUDE_PROFILE_RATE_LIMITER whose password is the canary reads masked, fails a lookup with a
    message naming the setting, and neither its password nor the key from the environment shows under %xmode
    Verbose."""
    monkeypatch.setenv("AMPLITUDE_PROFILE_RATE_LIMITER", url.format(canary=CANARY_KEY))
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", CANARY_KEY)
    shell.user_ns["fresh"] = ProfileClient()
    try:
        scan.cell(shell, "%xmode Verbose")
        read = scan.cell(shell, "fresh.rate_limiter")
        failed = scan.cell(shell, "fresh.lookup(user_id='12345')")
        scan.cell(shell, "fresh")
    finally:
        scan.cell(shell, "%xmode Context")
        shell.user_ns.pop("fresh").close()
    assert read.error_in_exec is None
    assert type(failed.error_in_exec).__name__ == "ConfigurationError"
    assert "ProfileClient.rate_limiter (from $AMPLITUDE_PROFILE_RATE_LIMITER) is not usable" in str(
        failed.error_in_exec
    )
    scan.assert_clean()


@pytest.mark.parametrize("setting", ["refused", "unusable"])
def test_no_canary_from_a_proxy_with_credentials(
    shell: Any, scan: Scan, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """A proxy whose password is the canary, refusing with 407 or named by a URL httpx cannot use, shows neither its
    credentials nor the key under ``%xmode Verbose``, in ``%tb``, in the client's repr or in DEBUG logs."""
    from tests.client.scripted import ConnectProxy

    proxy = ConnectProxy(refuse=407)
    scheme = "http" if setting == "refused" else "ftp"
    for name in ("HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"{scheme}://alice:{CANARY_KEY}@{proxy.url.removeprefix('http://')}")
    shell.user_ns["hostile"] = ProfileClient(endpoint="https://profile-api.test", api_key=CANARY_KEY, max_retries=0)
    try:
        scan.cell(shell, "%xmode Verbose")
        first = scan.cell(shell, "hostile.lookup(user_id='12345', props=True)")
        scan.cell(shell, "%tb")
        scan.cell(shell, "hostile")
        scan.add("repr of the client's proxy", repr(shell.user_ns["hostile"]._proxy))
    finally:
        scan.cell(shell, "%xmode Context")
        shell.user_ns.pop("hostile").close()
        proxy.close()
    expected = {"refused": "ProxyFailed", "unusable": "ConfigurationError"}[setting]
    assert type(first.error_in_exec).__name__ == expected
    assert len(proxy.connects) == (1 if setting == "refused" else 0)
    scan.assert_clean()

"""Recording goes through the proxy the environment names for an https endpoint, and never for a loopback one."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from amp_profile_magic import ProfileClient
from amp_profile_magic.emulator import Emulator
from tests.client.scripted import ConnectProxy

from .conftest import FAST

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


class ForwardProxy(ThreadingHTTPServer):
    """A plain-HTTP forward proxy on loopback that remembers the absolute URLs it forwarded."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ForwardingHandler)
        self.forwarded: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ForwardingHandler(BaseHTTPRequestHandler):
    server: ForwardProxy
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        target = urlsplit(self.path)  # a forward proxy receives the absolute URL
        self.server.forwarded.append(self.path)
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=5)
        headers = {name: value for name, value in self.headers.items() if name.lower() != "proxy-connection"}
        upstream.request("GET", f"{target.path}?{target.query}", headers=headers)
        answer = upstream.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        upstream.close()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    """A forward proxy serving on a background thread for one test."""
    server = ForwardProxy()
    # shutdown() returns at serve_forever's next poll: 0.5 s by default, most of a short test's time.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets exactly the proxy variables it is about."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_recording_an_https_endpoint_goes_through_the_environment_proxy(
    emulator: Emulator, cassette: Path, closed_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTPS_PROXY set, a recording client's https request tunnels through that proxy, and is recorded."""
    import ssl

    import trustme

    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("profile-api.test").configure_cert(context)
    proxy = ConnectProxy(server_context=context, upstream=emulator.url)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    try:
        client = ProfileClient(
            endpoint="https://profile-api.test",
            api_key=emulator.api_key,
            cassette=str(cassette),
            cassette_mode="record",
            **FAST,
        )
        profile = client.lookup(user_id="12345", cohorts=True)
        client.close()
    finally:
        proxy.close()

    assert profile.cohort_ids == ("cohort1", "cohort3", "cohort7")
    assert proxy.connects == ["profile-api.test:443"]
    assert emulator.api_key not in cassette.read_text()
    replayer = ProfileClient(endpoint=closed_url, cassette=str(cassette), cassette_mode="replay", **FAST)
    assert replayer.lookup(user_id="12345", cohorts=True) == profile


def test_recording_a_loopback_endpoint_ignores_the_proxy(
    emulator: Emulator, proxy: ForwardProxy, cassette: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording against the emulator on loopback goes direct even with HTTP_PROXY set: no key to a proxy."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = ProfileClient(
        endpoint=emulator.url, api_key=emulator.api_key, cassette=str(cassette), cassette_mode="record", **FAST
    )
    client.lookup(user_id="12345", cohorts=True)
    client.close()

    assert proxy.forwarded == []
    assert emulator.request_count == 1

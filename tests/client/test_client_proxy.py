"""Proxies: loopback endpoints never go through one; https endpoints honour the environment's, NO_PROXY included.

The https endpoint here is ``https://profile-api.test``, which no resolver knows: a request can only reach it
through the loopback CONNECT proxy (tests/client/scripted.py), which terminates TLS with a throwaway CA's
certificate (trustme) and forwards to the session's emulator.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amp_profile_magic import ConnectionFailed, ProfileClient, ProxyFailed, ServerUnavailable
from amp_profile_magic._proxy import Proxy, proxy_for
from amp_profile_magic.emulator import Emulator
from tests.client.conftest import FAST, expect_failure
from tests.client.scripted import ConnectProxy
from tests.conftest import CANARY_KEY

HTTPS_ENDPOINT = "https://profile-api.test"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets exactly the proxy variables it is about."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def tls_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context for profile-api.test signed by a throwaway CA that the client trusts (SSL_CERT_FILE)."""
    import trustme

    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("profile-api.test").configure_cert(context)
    return context


@pytest.fixture
def proxies() -> Iterator[list[ConnectProxy]]:
    """Proxies a test starts, closed after it."""
    started: list[ConnectProxy] = []
    yield started
    for proxy in started:
        proxy.close()


def start(proxies: list[ConnectProxy], **settings: Any) -> ConnectProxy:
    """A ConnectProxy with ``settings``, closed after the test."""
    proxies.append(ConnectProxy(**settings))
    return proxies[-1]


def test_a_loopback_endpoint_never_goes_through_the_proxy(
    client: ProfileClient, emulator: Emulator, proxies: list[ConnectProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTP_PROXY and ALL_PROXY set, lookups against the emulator go straight to it; the proxy sees nothing."""
    proxy = start(proxies, refuse=502)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    emulator.reset()
    assert client.lookup(user_id="12345", cohorts=True).cohort_ids == ("cohort1", "cohort3", "cohort7")
    assert proxy.heads == []
    assert emulator.request_count == 1
    for endpoint in ("http://localhost:9", "http://127.0.0.5:9", "http://[::1]:9", "http://app.localhost:9"):
        assert proxy_for(endpoint) is None, endpoint


def test_the_emulator_magic_works_with_a_proxy_set(shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """%ampprofile_emulator keeps working on a machine with HTTP_PROXY set to a proxy that cannot reach it."""
    proxy = ConnectProxy(refuse=502)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    try:
        shell.run_line_magic("ampprofile_emulator", "")
        frame = shell.run_line_magic("ampprofile", "user=12345 props")
        shell.run_line_magic("ampprofile_emulator", "--stop")
    finally:
        proxy.close()
    assert len(frame) > 0
    assert proxy.heads == []


def test_an_https_endpoint_goes_through_the_environment_proxy(
    emulator: Emulator, proxies: list[ConnectProxy], tls_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTPS_PROXY set, an https lookup tunnels through that proxy (CONNECT to the API's host) and succeeds."""
    proxy = start(proxies, server_context=tls_context, upstream=emulator.url)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    client = ProfileClient(endpoint=HTTPS_ENDPOINT, api_key=CANARY_KEY, **FAST)
    try:
        profile = client.lookup(user_id="12345", cohorts=True)
    finally:
        client.close()
    assert profile.cohort_ids == ("cohort1", "cohort3", "cohort7")
    assert proxy.connects == ["profile-api.test:443"]
    assert proxy.forwarded[0].headers["authorization"] == f"Api-Key {CANARY_KEY}"  # inside TLS only


def test_no_proxy_sends_an_https_endpoint_direct(proxies: list[ConnectProxy], monkeypatch: pytest.MonkeyPatch) -> None:
    """A host listed in NO_PROXY is connected to directly (and here fails to resolve): the proxy sees nothing, and
    the failure is the connection's, not the proxy's."""
    proxy = start(proxies, refuse=502)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,.test")
    client = ProfileClient(endpoint=HTTPS_ENDPOINT, api_key=CANARY_KEY, **{**FAST, "max_retries": 0})
    try:
        error = expect_failure(ConnectionFailed, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert "proxy" not in str(error).split(".")[0]
    assert proxy.heads == []


def test_a_proxy_asking_for_credentials_is_named_and_not_retried(
    proxies: list[ConnectProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 407 from the proxy is ProxyFailed naming the proxy's host and variable, never its credentials, and is not
    retried (the same credentials cannot satisfy it)."""
    proxy = start(proxies, refuse=407)
    port = proxy.url.rsplit(":", 1)[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://alice:hunter2-{CANARY_KEY}@127.0.0.1:{port}")
    client = ProfileClient(endpoint=HTTPS_ENDPOINT, api_key=CANARY_KEY, **FAST)
    try:
        error = expect_failure(ProxyFailed, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    message = str(error)
    assert f"through the proxy 127.0.0.1:{port} (from HTTPS_PROXY)" in message
    assert "407" in message
    assert "alice" not in message
    assert "hunter2" not in message
    assert error.status == 407
    assert not error.retryable
    assert len(proxy.connects) == 1


def test_a_proxy_bad_gateway_is_the_proxy_failing_not_the_api(
    proxies: list[ConnectProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy's own 502 (it could not reach the API) is ProxyFailed, retried, not ServerUnavailable."""
    proxy = start(proxies, refuse=502)
    monkeypatch.setenv("https_proxy", proxy.url)
    client = ProfileClient(endpoint=HTTPS_ENDPOINT, api_key=CANARY_KEY, **FAST)
    try:
        error = expect_failure(ProxyFailed, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert not isinstance(error, ServerUnavailable)
    assert "(from https_proxy)" in str(error)
    assert error.retryable
    assert len(proxy.connects) == 3  # max_retries=2


def test_proxy_choice_reads_scheme_all_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY applies to https endpoints, ALL_PROXY to any scheme without its own, NO_PROXY exempts hosts, and
    a proxy is described by host and port only."""
    assert proxy_for("https://profile-api.amplitude.com") is None
    monkeypatch.setenv("ALL_PROXY", "http://all.proxy.invalid:3128")
    assert proxy_for("https://profile-api.amplitude.com") == Proxy("http://all.proxy.invalid:3128", "ALL_PROXY")
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@tls.proxy.invalid:3128")
    chosen = proxy_for("https://profile-api.amplitude.com")
    assert chosen == Proxy("http://user:secret@tls.proxy.invalid:3128", "HTTPS_PROXY")
    assert chosen.describe() == "the proxy tls.proxy.invalid:3128 (from HTTPS_PROXY)"
    assert "secret" not in repr(chosen)
    monkeypatch.setenv("NO_PROXY", "amplitude.com")
    assert proxy_for("https://profile-api.amplitude.com") is None

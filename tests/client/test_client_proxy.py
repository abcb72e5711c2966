"""Proxies: loopback endpoints never go through one; https endpoints honour the environment's, NO_PROXY included.

The https endpoint here is ``https://profile-api.test``, which no resolver knows: a request can only reach it
through the loopback CONNECT proxy (tests/client/scripted.py), which terminates TLS with a throwaway CA's
certificate (trustme) and forwards to the session's emulator.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from amp_profile_magic import (
    ConfigurationError,
    ConnectionFailed,
    ProfileClient,
    ProxyFailed,
    RequestTimeout,
    ServerUnavailable,
)
from amp_profile_magic._proxy import Proxy, is_loopback
from amp_profile_magic.emulator import Emulator
from tests.client.conftest import FAST, check_error, expect_failure
from tests.client.scripted import ConnectProxy, trickle, trickle_head, wait_for
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
    loopbacks = ("http://localhost:9", "http://127.0.0.5:9", "http://[::1]:9", "http://[::ffff:127.0.0.1]:9")
    for endpoint in (*loopbacks, "http://app.localhost:9"):
        # Nothing listens on port 9: a direct attempt fails as a connection; one through the proxy would reach it.
        assert type(lookup_failure(endpoint)) is ConnectionFailed, endpoint
    assert proxy.heads == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("[::FFFF:127.9.9.9]", True),
        ("LOCALHOST", True),
        ("api.localhost", True),
        ("::ffff:10.0.0.1", False),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("profile-api.test", False),
        ("", False),
    ],
)
def test_loopback_hosts_are_told_apart(host: str, loopback: bool) -> None:
    """Loopback names and addresses, IPv4-mapped IPv6 ones on every Python, are this machine; nothing else is."""
    assert is_loopback(host) is loopback


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


def lookup_failure(endpoint: str) -> ConnectionFailed:
    """The ConnectionFailed (or ProxyFailed) of one unretried lookup against ``endpoint``, checked for leaks."""
    client = ProfileClient(endpoint=endpoint, api_key=CANARY_KEY, **{**FAST, "max_retries": 0})
    try:
        with pytest.raises(ConnectionFailed) as caught:
            client.lookup(user_id="12345")
    finally:
        client.close()
    check_error(caught.value)
    return caught.value


def test_proxy_choice_reads_scheme_all_and_no_proxy(
    proxies: list[ConnectProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY applies to https endpoints, ALL_PROXY to any scheme without its own, NO_PROXY exempts hosts, and
    a proxy is described by host and port only."""
    endpoint = "https://profile-api.amplitude.test"  # resolves nowhere: only a proxy can answer for it
    fallback, tls = start(proxies, refuse=502), start(proxies, refuse=502)
    assert type(lookup_failure(endpoint)) is ConnectionFailed
    monkeypatch.setenv("ALL_PROXY", fallback.url)
    error = lookup_failure(endpoint)
    assert type(error) is ProxyFailed
    assert f"through the proxy {fallback.url.removeprefix('http://')} (from ALL_PROXY)" in str(error)
    assert fallback.connects == ["profile-api.amplitude.test:443"]
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:secret@{tls.url.removeprefix('http://')}")
    error = lookup_failure(endpoint)
    assert f"through the proxy {tls.url.removeprefix('http://')} (from HTTPS_PROXY)" in str(error)
    assert "secret" not in repr(error)
    assert "user" not in str(error)
    assert len(tls.connects) == 1
    assert len(fallback.connects) == 1
    monkeypatch.setenv("NO_PROXY", "amplitude.test")
    assert type(lookup_failure(endpoint)) is ConnectionFailed
    assert len(tls.connects) == 1
    assert len(fallback.connects) == 1
    chosen = Proxy("http://user:secret@tls.proxy.invalid:3128", "HTTPS_PROXY")
    assert chosen.describe() == "the proxy tls.proxy.invalid:3128 (from HTTPS_PROXY)"
    assert "secret" not in repr(chosen)


@pytest.mark.parametrize(
    ("settings", "through"),
    [
        ({"https_proxy": "{url}"}, "https_proxy"),
        ({"ALL_PROXY": "{url}", "HTTP_PROXY": "http://plain-http-only.invalid:1"}, "ALL_PROXY"),
        ({"HTTPS_PROXY": "{url}", "NO_PROXY": "*"}, None),
        ({"https_proxy": "{url}", "no_proxy": "other.test, .amplitude.test"}, None),
    ],
    ids=["lowercase-https_proxy", "ALL_PROXY-not-HTTP_PROXY", "NO_PROXY-star", "no_proxy-domain"],
)
def test_the_environment_is_read_as_httpx_documents(
    settings: dict[str, str], through: str | None, proxies: list[ConnectProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lowercase https_proxy is honoured, ALL_PROXY covers https while HTTP_PROXY does not, and NO_PROXY=* or a
    listed domain sends the https endpoint direct, as httpx documents its environment variables."""
    proxy = start(proxies, refuse=502)
    for name, value in settings.items():
        monkeypatch.setenv(name, value.format(url=proxy.url))
    error = lookup_failure("https://profile-api.amplitude.test")
    if through is None:
        assert type(error) is ConnectionFailed
        assert proxy.heads == []
    else:
        assert type(error) is ProxyFailed
        assert f"(from {through})" in str(error)
        assert proxy.connects == ["profile-api.amplitude.test:443"]


@pytest.mark.parametrize("trickling", ["status-line", "body"])
def test_the_deadline_holds_inside_a_proxy_tunnel(
    trickling: str, proxies: list[ConnectProxy], tls_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer trickled a byte at a time inside an https proxy tunnel is cut off at the request's deadline, not
    per socket read: the deadline is installed on the proxy's connections, which httpx chose."""
    handler = trickle_head(interval=0.3) if trickling == "status-line" else trickle(chunked=True, interval=0.3)
    proxy = start(proxies, server_context=tls_context, respond=handler)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    client = ProfileClient(endpoint=HTTPS_ENDPOINT, api_key=CANARY_KEY, **{**FAST, "timeout": 1.0, "max_retries": 0})
    started = time.monotonic()
    try:
        error = expect_failure(RequestTimeout, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert 0.9 <= time.monotonic() - started < 1.6
    assert "within 1s" in str(error)
    assert proxy.connects == ["profile-api.test:443"]
    assert wait_for(lambda: proxy.abandoned == 1), "the client kept the trickling tunnel open"


def test_the_deadline_is_installed_on_the_transport_httpx_routes_to(
    proxies: list[ConnectProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Direct or through a proxy, the connections httpx opens for the endpoint are the ones bound by the deadline
    (a unit check of the two private hops; the trickling tests above and in test_client_deadline.py are the proof)."""
    from amp_profile_magic._deadline import _DeadlineBackend

    proxy = start(proxies, refuse=502)
    for proxied in (False, True):
        if proxied:
            monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        client = ProfileClient(endpoint=HTTPS_ENDPOINT, api_key=CANARY_KEY, **FAST)
        try:
            http = client._client()
            routed = http._transport_for_url(httpx.URL(HTTPS_ENDPOINT))
            assert (routed is http._transport) is not proxied
            assert isinstance(routed._pool._network_backend, _DeadlineBackend)  # type: ignore[attr-defined]
            assert (client._proxy is not None) is proxied
        finally:
            client.close()


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("HTTPS_PROXY", "ftp://alice:hunter2@proxy.invalid:21", "is not http://, https://, socks5:// or socks5h://"),
        ("HTTPS_PROXY", "http://alice:hunter2@proxy.invalid:port", "Invalid port"),
        ("NO_PROXY", "[::1", "Invalid port"),
    ],
    ids=["scheme", "port", "no_proxy"],
)
def test_an_unusable_proxy_setting_is_one_clear_line(
    variable: str, value: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy variable httpx cannot use is a ConfigurationError naming the variables, never the proxy's
    credentials; nothing is sent."""
    monkeypatch.setenv(variable, value)
    if variable == "NO_PROXY":
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    client = ProfileClient(endpoint=HTTPS_ENDPOINT, api_key=CANARY_KEY, **FAST)
    try:
        error = expect_failure(ConfigurationError, lambda: client.lookup(user_id="12345"))
    finally:
        client.close()
    assert "A proxy setting in the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY or NO_PROXY)" in str(error)
    assert says in str(error)
    assert "alice" not in repr(error)
    assert "hunter2" not in repr(error)


#: urllib's readers of the proxy settings, and httpx's private one: calling any is choosing a proxy beside httpx.
PROXY_READERS = {
    "getproxies",
    "getproxies_environment",
    "getproxies_registry",
    "getproxies_macosx_sysconf",
    "proxy_bypass",
    "proxy_bypass_environment",
    "get_environment_proxies",
    "ProxyHandler",
}


def test_the_package_holds_no_copy_of_httpxs_proxy_choice() -> None:
    """No module calls a proxy reader or passes httpx a proxy, mounts or trust_env=False, and the one function that
    reads a *_PROXY variable is _proxy._variable, which only names the variable of the proxy httpx chose."""
    import ast

    import amp_profile_magic

    package = Path(amp_profile_magic.__file__).parent
    readers, keywords, environment = [], [], set()
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = {getattr(node, "attr", None), getattr(node, "id", None)}
            if isinstance(node, ast.alias):
                names.add(node.name.rpartition(".")[2])
            if names & PROXY_READERS:
                readers.append(f"{module}:{node.lineno if hasattr(node, 'lineno') else '?'}")
            if isinstance(node, ast.keyword) and (
                node.arg in ("proxy", "proxies", "mounts")
                or (node.arg == "trust_env" and not (isinstance(node.value, ast.Constant) and node.value.value is True))
            ):
                keywords.append(f"{module}:{node.lineno} {node.arg}=")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inside = list(ast.walk(node))
                reads_environment = any(
                    getattr(inner, "attr", None) in ("environ", "getenv") or getattr(inner, "id", None) == "environ"
                    for inner in inside
                )
                names_a_proxy = any(
                    isinstance(inner, ast.Constant) and isinstance(inner.value, str) and "proxy" in inner.value.lower()
                    for inner in inside
                )
                if reads_environment and names_a_proxy:
                    environment.add(f"{module}.{node.name}")
    assert readers == []
    assert keywords == []
    assert environment == {"amp_profile_magic._proxy._variable"}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"HTTPS_PROXY": "http://proxy.invalid:80"}, "the proxy proxy.invalid (from HTTPS_PROXY)"),
        ({"HTTPS_PROXY": "proxy.invalid:3128"}, "the proxy proxy.invalid:3128 (from HTTPS_PROXY)"),
        ({"HTTPS_PROXY": "https://u:secret@proxy.invalid:443"}, "the proxy proxy.invalid (from HTTPS_PROXY)"),
        (
            {"HTTPS_PROXY": "http://upper.invalid:1", "https_proxy": "http://lower.invalid:2"},
            "the proxy lower.invalid:2 (from https_proxy)",
        ),
    ],
    ids=["default-port", "no-scheme", "https-proxy", "lowercase-wins"],
)
def test_the_proxy_httpx_chose_is_named_after_its_variable(
    settings: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy is read from the pool httpx routes the endpoint to (whose URL httpx normalised), and named after
    the variable that holds it, never with its credentials."""
    from amp_profile_magic._deadline import install

    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with httpx.Client() as http:
        chosen = Proxy.of(install(http, httpx.URL(HTTPS_ENDPOINT)), "https")
    assert chosen is not None
    assert chosen.describe() == named
    assert "secret" not in repr(chosen)

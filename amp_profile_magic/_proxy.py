"""Which proxy, if any, a request to the endpoint goes through, and how to name it without its credentials."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Proxy", "is_loopback", "proxy_for"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy URL and the environment variable it came from."""

    url: str
    variable: str

    def describe(self) -> str:
        """``the proxy proxy.corp:3128 (from HTTPS_PROXY)``: host and port only, never a user or password."""
        parts = urlsplit(self.url if "://" in self.url else f"http://{self.url}")
        where = parts.hostname or "?"
        if parts.port:
            where = f"{where}:{parts.port}"
        return f"the proxy {where} (from {self.variable})"

    def __repr__(self) -> str:
        return f"<Proxy {self.describe()}>"


def proxy_for(endpoint: str) -> Proxy | None:
    """The proxy HTTP(S)_PROXY / ALL_PROXY / NO_PROXY choose for ``endpoint``; never one for a loopback endpoint.

    A loopback endpoint is the emulator (or a tunnel) on this machine: a corporate proxy cannot reach it, and would
    see the key in plain text on the way.
    """
    import urllib.request

    parts = urlsplit(endpoint)
    if not parts.hostname or is_loopback(parts.hostname):
        return None
    if urllib.request.proxy_bypass(parts.hostname):  # NO_PROXY, read as urllib and curl read it
        return None
    proxies = urllib.request.getproxies_environment()
    for scheme in (parts.scheme, "all"):
        url = proxies.get(scheme)
        if url:
            return Proxy(url=url, variable=_variable(scheme, url))
    return None


def _variable(scheme: str, url: str) -> str:
    # getproxies_environment() folds HTTPS_PROXY and https_proxy into one key; name the one the user set.
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
        if os.environ.get(name) == url:
            return name
    return f"{scheme.upper()}_PROXY"

"""Loopback hosts, which never go through a proxy, and naming the proxy httpx chose without its credentials.

httpx alone chooses the proxy (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY); this module only says which one it was.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Proxy", "is_loopback"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1``, ``::ffff:127.x.x.x``)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # An IPv4-mapped IPv6 address reaches the IPv4 host; ipaddress says so itself only from Python 3.13.
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy by scheme, host and port (httpx keeps its credentials apart), and the setting it came from."""

    url: str
    variable: str

    @classmethod
    def of(cls, pool: Any, scheme: str) -> Proxy | None:
        """The proxy an httpcore ``pool`` (the one httpx routes an ``scheme`` endpoint to) tunnels through, if any."""
        # httpcore's HTTPProxy and SOCKSProxy keep their URL here, without the user and password (httpx passes
        # those separately); a plain connection pool has none.
        url = getattr(pool, "_proxy_url", None)
        parts = [getattr(url, name, None) for name in ("scheme", "host", "port")]
        if not isinstance(parts[0], bytes) or not isinstance(parts[1], bytes):
            return None
        where = f"{parts[0].decode()}://{parts[1].decode()}" + (f":{parts[2]}" if parts[2] else "")
        return cls(url=where, variable=_variable(scheme, where))

    def describe(self) -> str:
        """``the proxy proxy.corp:3128 (from HTTPS_PROXY)``: host and port only, never a user or password."""
        parts = urlsplit(self.url if "://" in self.url else f"http://{self.url}")
        where = parts.hostname or "?"
        if parts.port:
            where = f"{where}:{parts.port}"
        return f"the proxy {where} (from {self.variable})"

    def __repr__(self) -> str:
        return f"<Proxy {self.describe()}>"


def _variable(scheme: str, url: str) -> str:
    # Display only, after httpx has chosen: name the variable (lowercase first, as urllib reads them) whose proxy is
    # at the chosen host and port. None matches when httpx took it from the macOS or Windows system settings.
    chosen = _address(url)
    for prefix in (scheme, "all"):
        for name in (f"{prefix}_proxy", f"{prefix.upper()}_PROXY"):
            value = os.getenv(name, "")
            if value and _address(value) == chosen:
                return name
    return "the system proxy settings"


def _address(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number: httpx refused it already
        port = None
    return (parts.hostname or "", port)

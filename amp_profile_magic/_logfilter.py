"""Mask secret keys in the HTTP libraries' log records before any handler sees them.

httpcore's DEBUG log prints raw response headers, so a key that a server echoes (in ``Location``, say) would reach
the log. A filter on a logger only sees records logged on that very logger, not its children's, so it is added to
each logger httpx and httpcore log on.
"""

from __future__ import annotations

import logging
import re
import threading

from ._secret import MASK, Secret, redact

__all__ = ["LOGGERS", "install", "mask"]

LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
# An Authorization value of any client, even one whose key this process never held.
_AUTHORIZATION = re.compile(r"(?i)\b(api-key|bearer|basic)(\s+)[^\s'\",;)\]}]+")


class _Redacting(logging.Filter):
    def __init__(self) -> None:
        super().__init__("amp_profile_magic.redact")
        self._secrets: set[Secret] = set()
        self._lock = threading.Lock()

    def add(self, secret: Secret) -> None:
        if secret:
            with self._lock:
                self._secrets.add(secret)

    def mask(self, text: str) -> str:
        with self._lock:
            secrets = list(self._secrets)
        for secret in secrets:
            text = redact(text, secret.reveal())
        return _AUTHORIZATION.sub(lambda match: f"{match[1]}{match[2]}{MASK}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as it always does
            return True
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_FILTER = _Redacting()
_installed = False
_install_lock = threading.Lock()


def install(secret: Secret) -> None:
    """Mask ``secret`` (and any Authorization value) in every httpx and httpcore log record from now on."""
    global _installed
    _FILTER.add(secret)
    with _install_lock:
        if not _installed:
            for name in LOGGERS:
                logging.getLogger(name).addFilter(_FILTER)
            _installed = True


def mask(text: str) -> str:
    """``text`` with every key :func:`install` was given, and any Authorization value, masked."""
    return _FILTER.mask(text)

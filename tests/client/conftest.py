"""Fixtures for the client's tests: clients built against the session's emulator, and secret-leak checks."""

from __future__ import annotations

import logging
import pickle
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from amp_profile_magic import ProfileClient, ProfileError
from amp_profile_magic.emulator import Emulator
from tests.conftest import CANARY_KEY

#: Settings that make retries fast and pacing never bind, unless a test overrides them. These tests count the
#: requests that reach the emulator, so the local store (which would answer repeated lookups) is off;
#: tests/store/ covers it.
FAST = {
    "store": "off",
    "timeout": 2.0,
    "max_retries": 2,
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "requests_per_minute": 600_000,
}


def assert_secret_free(*texts: str | bytes) -> None:
    """Fail if the canary key, or its bytes, appears in any of ``texts``."""
    for text in texts:
        needle: str | bytes = CANARY_KEY.encode() if isinstance(text, bytes) else CANARY_KEY
        assert needle not in text, f"the secret key leaked into: {text[:300]!r}"


def check_error(error: BaseException, *, with_locals: bool = True) -> str:
    """Assert that nothing derived from ``error`` shows the key, and return its one-line message.

    Covers str, repr, the formatted traceback with every chained cause (httpx's included) with and without the
    frames' local variables (as IPython's ``%xmode Verbose`` shows them), and pickling.
    """
    text = str(error)
    formatted = "".join(traceback.format_exception(error))
    assert_secret_free(text, repr(error), formatted)
    if with_locals:
        assert_secret_free("".join(traceback.TracebackException.from_exception(error, capture_locals=True).format()))
    # Nothing foreign rides along: httpx's and httpcore's frames hold the request, key included, in their locals.
    assert error.__cause__ is None or isinstance(error.__cause__, ProfileError), repr(error.__cause__)
    assert error.__context__ is None or isinstance(error.__context__, ProfileError), repr(error.__context__)
    cause = error.__cause__
    while cause is not None:
        assert_secret_free(str(cause), repr(cause))
        cause = cause.__cause__
    try:
        assert_secret_free(pickle.dumps(error))
    except (TypeError, pickle.PicklingError, AttributeError) as pickling_error:
        assert_secret_free(str(pickling_error))
    assert "\n" not in text, f"the message is not one line: {text!r}"
    return text


def expect_failure(kind: type[ProfileError], call: Callable[[], object]) -> ProfileError:
    """Run ``call``, assert it raises ``kind`` (exactly, not a subclass), check the error for leaks, return it."""
    with pytest.raises(kind) as caught:
        call()
    error = caught.value
    assert type(error) is kind, f"expected {kind.__name__}, got {type(error).__name__}: {error}"
    check_error(error)
    return error


def wait_for_requests(emulator: Emulator, count: int, *, within: float = 5.0) -> None:
    """Wait until the emulator has logged ``count`` requests (slow answers are logged when they finish)."""
    deadline = time.monotonic() + within
    while emulator.request_count < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emulator.request_count >= count, f"only {emulator.request_count} of {count} requests reached the emulator"


def wait_until_quiet(emulator: Emulator, *, quiet: float = 0.3, within: float = 5.0) -> None:
    """Wait until no new request has reached the emulator for ``quiet`` seconds (background requests finished)."""
    deadline = time.monotonic() + within
    last, since = emulator.request_count, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if emulator.request_count != last:
            last, since = emulator.request_count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


class ForwardingTransport(httpx.BaseTransport):
    """A real transport to the emulator that lets a test rewrite each request and response, and counts attempts.

    It stands in for a proxy between the client and the API (one that strips headers or rewrites statuses).
    """

    def __init__(
        self,
        *,
        on_request: Callable[[httpx.Request], httpx.Request] | None = None,
        on_response: Callable[[httpx.Response], httpx.Response] | None = None,
    ) -> None:
        self._inner = httpx.HTTPTransport()
        self._on_request = on_request
        self._on_response = on_response
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self._on_request is not None:
            request = self._on_request(request)
        response = self._inner.handle_request(request)
        if self._on_response is not None:
            response.read()
            response = self._on_response(response)
        return response

    def close(self) -> None:
        self._inner.close()


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every client test runs with DEBUG logging captured, and fails if the key was logged anywhere."""
    caplog.set_level(logging.DEBUG)
    yield
    assert_secret_free(caplog.text)
    for record in caplog.records:
        assert_secret_free(record.getMessage(), repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            check_error(record.exc_info[1])


@pytest.fixture
def make_client(emulator: Emulator) -> Iterator[Callable[..., ProfileClient]]:
    """``make_client(**traits)`` → a client for the session's emulator (fast retries, 3 attempts), closed after."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> ProfileClient:
            settings: dict[str, Any] = {"endpoint": emulator.url, "api_key": emulator.api_key, **FAST, **overrides}
            profile_client = ProfileClient(**settings)
            stack.callback(profile_client.close)
            assert_secret_free(repr(profile_client), str(profile_client))
            return profile_client

        yield make

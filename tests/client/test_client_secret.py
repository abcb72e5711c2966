"""The canary key never shows: reprs, exceptions, tracebacks, logs, pickles, %config and verbose IPython tracebacks."""

from __future__ import annotations

import copy
import logging
import pickle
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from traitlets import TraitError

from amp_profile_magic import (
    BatchResult,
    ConnectionFailed,
    EndpointNotFound,
    InvalidKey,
    InvalidQuery,
    MalformedResponse,
    PlainHttpRedirect,
    ProfileClient,
    ProfileError,
    ProfileQuery,
    RequestTimeout,
    ServerUnavailable,
    Throttled,
    UnknownUser,
)
from amp_profile_magic._secret import Secret
from amp_profile_magic.emulator import Emulator, Faults
from tests.client.conftest import assert_secret_free, check_error, expect_failure, wait_for_requests
from tests.conftest import CANARY_KEY


def test_client_repr_and_trait_values_hide_the_key(make_client: Callable[..., ProfileClient]) -> None:
    """repr, str, trait_values() and the instance dict show the key as asterisks, while the client holds it."""
    client = make_client()
    assert client.api_key.reveal() == CANARY_KEY
    assert "key=set" in repr(client)
    secret = client.api_key
    texts = [repr(client), str(client), repr(client.trait_values()), repr(vars(client)), repr(client.config)]
    texts += [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>60}", "%s" % secret, "%r" % secret]  # noqa: UP031
    assert_secret_free(*texts)
    assert "********" in str(secret)
    assert repr(Secret("")) == "<secret unset>"
    assert copy.deepcopy(secret) == secret
    assert copy.copy(secret).reveal() == CANARY_KEY


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_a_client_or_its_key_is_refused(make_client: Callable[..., ProfileClient], protocol: int) -> None:
    """Neither the client nor its key can be pickled (a cache or variable inspector would carry the key), and the
    refusal does not show the key."""
    client = make_client()
    for target in (client, client.api_key, {"key": client.api_key}):
        with pytest.raises((TypeError, pickle.PicklingError, AttributeError)) as caught:
            pickle.dumps(target, protocol=protocol)
        assert_secret_free(str(caught.value), repr(caught.value))


def test_a_non_string_key_is_refused_without_showing_it(make_client: Callable[..., ProfileClient]) -> None:
    """Assigning the key as bytes (or any non-string) raises a TraitError that names the trait and type only."""
    client = make_client()
    for wrong in (CANARY_KEY.encode(), [CANARY_KEY], {CANARY_KEY: 1}):
        with pytest.raises(TraitError) as caught:
            client.api_key = wrong  # type: ignore[assignment]
        message = str(caught.value)
        assert "'api_key'" in message
        assert type(wrong).__name__ in message
        # Without locals: traitlets' frames (and this test's) hold the rejected value the caller passed in.
        check_error(caught.value, with_locals=False)
    assert client.api_key.reveal() == CANARY_KEY


def every_api_failure(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> list[ProfileError]:
    """Provoke each failure class against the emulator and return the raised exceptions."""
    errors: list[ProfileError] = []
    client = make_client(timeout=0.2)

    def capture(kind: type[ProfileError], **lookup: Any) -> None:
        errors.append(expect_failure(kind, lambda: client.lookup(**{"user_id": "12345", **lookup})))

    capture(UnknownUser, user_id="nobody")
    errors.append(expect_failure(InvalidQuery, lambda: client.lookup(user_id="   ")))
    errors.append(expect_failure(InvalidKey, lambda: make_client(api_key="wrong").lookup(user_id="12345")))
    errors.append(
        expect_failure(EndpointNotFound, lambda: make_client(endpoint=emulator.url + "/x").lookup(user_id="12345"))
    )
    emulator.plain_http_redirect = True
    capture(PlainHttpRedirect)
    emulator.plain_http_redirect = False
    emulator.faults = Faults(error_rate=1.0)
    capture(ServerUnavailable)
    emulator.faults = Faults(drop_rate=1.0)
    capture(ConnectionFailed)
    emulator.faults = Faults(malformed_rate=1.0)
    capture(MalformedResponse)
    emulator.faults = Faults()
    emulator.throttle_burst(1)
    errors.append(expect_failure(Throttled, lambda: make_client(max_retry_after=0.5).lookup(user_id="12345")))
    emulator.reset()
    emulator.faults = Faults(slow_rate=1.0, slow_seconds=0.4)
    capture(RequestTimeout)
    wait_for_requests(emulator, 3)
    emulator.faults = Faults()
    return errors


def test_every_exception_round_trips_through_pickle_without_the_key(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """Each failure (as a batch result would carry it to another process) pickles without the key and comes back
    with the same type, message and details."""
    errors = every_api_failure(emulator, make_client)
    assert len({type(error) for error in errors}) == 10
    for error in errors:
        data = pickle.dumps(error)
        assert_secret_free(data)
        restored = pickle.loads(data)  # noqa: S301 - our own bytes, just made
        assert type(restored) is type(error)
        assert str(restored) == str(error)
        assert restored.status == error.status
        assert restored.api_message == error.api_message
        for detail in ("location", "retry_after", "parameter"):
            assert getattr(restored, detail, None) == getattr(error, detail, None)
    batch = BatchResult(outcomes=(), unique_queries=0)
    assert pickle.loads(pickle.dumps(batch)) == batch  # noqa: S301


def test_formatted_tracebacks_carry_no_httpx_frames_and_hide_the_key(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """A dropped connection and a timeout name httpx's error in one line, but carry no httpx cause, context or
    frame (whose locals hold the request), so even tracebacks with locals hide the key."""
    client = make_client(max_retries=0, timeout=0.2)
    emulator.faults = Faults(drop_rate=1.0)
    dropped = expect_failure(ConnectionFailed, lambda: client.lookup(user_id="12345"))
    emulator.faults = Faults(slow_rate=1.0, slow_seconds=0.4)
    emulator.reset()
    timed_out = expect_failure(RequestTimeout, lambda: client.lookup(user_id="12345"))
    wait_for_requests(emulator, 1)
    assert "RemoteProtocolError" in str(dropped)
    for error in (dropped, timed_out):
        assert error.__cause__ is None
        assert error.__context__ is None
        formatted = "".join(traceback.format_exception(error))
        assert "The above exception" not in formatted
        assert "During handling" not in formatted
        assert "httpcore" not in formatted
        assert "httpx/" not in formatted
        verbose = "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
        assert "self = <ProfileClient" in verbose
        assert_secret_free(formatted, verbose)


def test_debug_logging_never_shows_the_key(
    emulator: Emulator, make_client: Callable[..., ProfileClient], caplog: pytest.LogCaptureFixture
) -> None:
    """With every logger at DEBUG (httpx and httpcore included) through successes, retries and failures, the key
    is in no log record."""
    caplog.set_level(logging.DEBUG)
    client = make_client()
    client.lookup(user_id="12345", props=True, comps=True)
    client.lookup_many([ProfileQuery(user_id=user) for user in emulator.dataset.user_ids[:5]])
    emulator.faults = Faults(error_rate=1.0)
    expect_failure(ServerUnavailable, lambda: client.lookup(user_id="12345"))
    emulator.faults = Faults(drop_rate=1.0)
    expect_failure(ConnectionFailed, lambda: client.lookup(user_id="12345"))
    emulator.faults = Faults()
    expect_failure(InvalidKey, lambda: make_client(api_key="wrong").lookup(user_id="12345"))
    loggers = {record.name for record in caplog.records}
    assert {"amp_profile_magic", "httpcore.http11", "httpx"} <= loggers
    assert any("Retrying in" in record.getMessage() for record in caplog.records)
    assert any("-> 200" in record.getMessage() for record in caplog.records)
    assert_secret_free(caplog.text, *(record.getMessage() for record in caplog.records))


def _run(shell: Any, cell: str) -> None:
    result = shell.run_cell(cell, store_history=False)
    assert result.error_in_exec is None or isinstance(result.error_in_exec, Exception)


@pytest.fixture
def config_shell(shell: Any) -> Iterator[Any]:
    """The shell fixture, with any ProfileClient settings made through %config removed afterwards (the shell is a
    process-wide singleton: a leftover key would configure every later test's client)."""
    yield shell
    for owner in (shell, *shell.configurables):
        owner.config.pop("ProfileClient", None)


def test_config_output_in_ipython_hides_the_key(
    config_shell: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """%config ProfileClient, %config after setting the key with %config, the shell's Config, and the displayed
    client and key in a real IPython shell all show asterisks; the key still works."""
    shell = config_shell
    shell.user_ns["_amp_key"] = CANARY_KEY
    _run(shell, "%config ProfileClient")
    listing = capsys.readouterr().out
    assert "ProfileClient.api_key" in listing
    assert "<secret ********>" in listing
    _run(shell, "%config ProfileClient.api_key = _amp_key")
    del shell.user_ns["_amp_key"]
    _run(shell, "%config ProfileClient")
    _run(shell, "%config")
    _run(shell, "print(get_ipython().config)")
    _run(shell, "get_ipython().config")
    _run(shell, "_amp_client = [c for c in get_ipython().configurables if type(c).__name__ == 'ProfileClient'][0]")
    _run(shell, "_amp_client")
    _run(shell, "_amp_client.api_key")
    _run(shell, "print(_amp_client.lookup(user_id='12345').user_id)")
    _run(shell, "%config ProfileClient.api_key = _amp_client.api_key.reveal().encode()")
    _run(shell, "print(get_ipython().config)")
    _run(shell, "%config ProfileClient")
    captured = capsys.readouterr()
    assert "<ProfileClient endpoint=" in captured.out
    assert "12345" in captured.out
    # IPython logs the refused assignment rather than printing it; the autouse fixture checks every record.
    assert "expected a secret string" in caplog.text
    assert_secret_free(captured.out, captured.err)
    client = shell.user_ns["_amp_client"]
    assert client.api_key.reveal() == CANARY_KEY


def test_verbose_ipython_tracebacks_hide_the_key(
    shell: Any, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed lookup in a real IPython shell under %xmode Verbose (locals of every frame, chained httpx cause
    included) does not show the key."""
    emulator.faults = Faults(drop_rate=1.0)
    _run(shell, "%xmode Verbose")
    try:
        _run(shell, "_amp_client = [c for c in get_ipython().configurables if type(c).__name__ == 'ProfileClient'][0]")
        _run(shell, "_amp_client.max_retries = 0")
        _run(shell, "_amp_client.lookup(user_id='12345', props=True)")
    finally:
        shell.run_line_magic("xmode", "Context")
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "ConnectionFailed" in shown
    assert "RemoteProtocolError" in shown
    assert "self = <ProfileClient" in shown or "self=<ProfileClient" in shown
    assert_secret_free(shown)

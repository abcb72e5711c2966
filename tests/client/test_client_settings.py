"""Settings refuse values that would hang or spin, and waits (pacing, throttle holds) end on Ctrl-C and show up."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from IPython.utils.capture import capture_output
from traitlets import TraitError

from amp_profile_magic import NotFetched, ProfileClient, ProfileQuery
from amp_profile_magic._pacing import Pacer, sleep
from amp_profile_magic.emulator import Emulator

CHECKED = ("requests_per_minute", "timeout", "backoff_initial", "backoff_max", "max_retry_after")
BAD = (math.nan, math.inf, -math.inf, 0, 0.0, -1.5)


@contextmanager
def ctrl_c_after(seconds: float) -> Iterator[Callable[[], bool]]:
    """Send SIGINT to the main thread after ``seconds``, as Ctrl-C does: it interrupts a blocking sleep too."""
    fired = threading.Event()
    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:
        fired.set()
        signal.pthread_kill(main, signal.SIGINT)

    timer = threading.Timer(seconds, interrupt)
    timer.start()
    try:
        yield fired.is_set
    finally:
        timer.cancel()


@pytest.mark.parametrize("name", CHECKED)
@pytest.mark.parametrize("value", BAD, ids=repr)
def test_non_finite_or_non_positive_settings_are_refused(name: str, value: float) -> None:
    """Each wait-related setting refuses NaN, ±infinity, zero and negatives with a one-line error naming it, both
    when assigned and when given to the constructor, and keeps its previous value."""
    client = ProfileClient()
    before = getattr(client, name)
    with pytest.raises(TraitError) as caught:
        setattr(client, name, value)
    message = str(caught.value)
    assert message.startswith(f"ProfileClient.{name} must be a positive, finite number")
    assert repr(value) in message
    assert "\n" not in message
    assert getattr(client, name) == before
    with pytest.raises(TraitError, match=f"ProfileClient.{name} must be"):
        ProfileClient(**{name: value})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0], ids=repr)
def test_max_age_refuses_nan_infinity_and_negatives(value: float) -> None:
    """``max_age`` refuses NaN (which would silently make every stored answer stale), infinities and negatives with
    a one-line error naming it, and keeps its value; 0 (reuse nothing) is allowed."""
    client = ProfileClient()
    before = client.max_age
    with pytest.raises(TraitError) as caught:
        client.max_age = value
    message = str(caught.value)
    assert message == f"ProfileClient.max_age must be a finite number of seconds, 0 or more, not {value!r}."
    assert client.max_age == before
    client.max_age = 0
    assert client.max_age == 0.0


@pytest.mark.parametrize(
    "name", ["store_max_bytes", "max_concurrency", "max_retries", "timeout", "max_age", "requests_per_minute"]
)
@pytest.mark.parametrize("value", [True, False])
def test_numeric_settings_refuse_booleans(name: str, value: bool) -> None:
    """A boolean for a number (``store_max_bytes = True`` was a 1-byte cap) is refused in one line naming the
    setting, and the setting keeps its value."""
    client = ProfileClient()
    before = getattr(client, name)
    with pytest.raises(TraitError) as caught:
        setattr(client, name, value)
    assert f"The '{name}' trait of a ProfileClient instance expected a" in str(caught.value)
    assert f"not the bool {value}" in str(caught.value)
    assert getattr(client, name) == before


@pytest.mark.parametrize("name", ["timeout", "backoff_initial", "backoff_max", "max_retry_after"])
def test_waits_longer_than_a_week_are_refused(name: str) -> None:
    """A finite but huge wait (1e10 s overflowed the socket's time_t mid-request) is refused in one line."""
    with pytest.raises(TraitError) as caught:
        ProfileClient(**{name: 1e10})
    assert str(caught.value) == f"ProfileClient.{name} must be at most 604,800 seconds (a week), not 10000000000.0."


def test_the_endpoint_is_stripped_and_an_unparsable_one_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pasted endpoint's surrounding whitespace (a trailing newline, from the setting or the variable) is dropped;
    one that is no URL at all fails a lookup with a ConfigurationError naming the setting, before any request."""
    from amp_profile_magic import ConfigurationError

    assert ProfileClient(endpoint=" http://127.0.0.1:9/\n").endpoint == "http://127.0.0.1:9/"
    monkeypatch.setenv("AMPLITUDE_PROFILE_URL", "http://127.0.0.1:9\n")
    assert ProfileClient().endpoint == "http://127.0.0.1:9"
    client = ProfileClient(endpoint="http://[::1", api_key="k")
    with pytest.raises(ConfigurationError, match=r"^ProfileClient.endpoint 'http://\[::1' is not a URL \("):
        client.lookup(user_id="1")


def test_an_endpoint_with_a_password_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """user:password@ in the endpoint is refused when set, and on use when it came from the environment; no
    message quotes the password, and nothing is sent."""
    from traitlets import TraitError

    from amp_profile_magic import ConfigurationError

    canary = "CANARY-PW-77aa"
    with pytest.raises(TraitError, match="holds a user name or password") as raised:
        ProfileClient(endpoint=f"https://someone:{canary}@profile-api.example")
    assert canary not in str(raised.value)
    monkeypatch.setenv("AMPLITUDE_PROFILE_URL", f"http://someone:{canary}@127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="holds a user name or password") as failed:
        ProfileClient(api_key="k").lookup(user_id="1")
    assert canary not in str(failed.value)
    # The userinfo trick (a loopback-looking user name before the real host) is refused the same way.
    with pytest.raises(TraitError, match="holds a user name or password"):
        ProfileClient(endpoint="http://127.0.0.1@example.invalid")
    # An @ after the host (in the query) is no credential.
    assert ProfileClient(endpoint="https://x.example/?tag=a@b").endpoint == "https://x.example/?tag=a@b"


def test_paths_with_a_nul_character_are_refused_when_set() -> None:
    """A NUL in the store, cassette or rate_limiter setting is a one-line TraitError, not a raw ValueError later
    from every lookup."""
    from traitlets import TraitError

    for setting in ({"store": "data/a\x00b"}, {"cassette": "data/a\x00b"}, {"rate_limiter": "sqlite:///data/a\x00b"}):
        with pytest.raises(TraitError, match="NUL character"):
            ProfileClient(**setting)


def test_clear_store_refuses_ages_that_are_no_ages(tmp_path: Any) -> None:
    """clear_store(older_than=…) refuses negative, NaN, infinite, boolean and overflowing ages before deleting."""
    client = ProfileClient(store=str(tmp_path / "store"))
    for age in (-1, float("nan"), float("inf"), True, 10**400):
        with pytest.raises(ValueError, match="give seconds, zero or more and finite"):
            client.clear_store(older_than=age)
    assert client.clear_store(older_than=0).startswith("Nothing to clear")


def test_valid_settings_still_accepted() -> None:
    """Small positive values and integers pass unchanged (as floats)."""
    client = ProfileClient(requests_per_minute=1, timeout=0.01, backoff_initial=1e-6, max_retry_after=5)
    assert client.requests_per_minute == 1.0
    assert isinstance(client.requests_per_minute, float)
    assert client.max_retry_after == 5.0


def test_config_magic_with_nan_reports_one_line_and_lookups_keep_working(
    shell: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """``%config ProfileClient.requests_per_minute = float('nan')`` reports the clear error (IPython logs a
    refused %config value; the extension fails the cell with it), raises no traceback, and the next lookup still
    runs at the previous rate."""
    with capture_output() as captured:
        result = shell.run_cell("%config ProfileClient.requests_per_minute = float('nan')")
    expected = "ProfileClient.requests_per_minute must be a positive, finite number of requests a minute, not nan."
    assert str(result.error_in_exec) == expected
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == [expected]
    assert "Traceback" not in captured.stderr + captured.stdout
    frame = shell.run_line_magic("ampprofile", "user=12345 props")
    assert len(frame) > 0


def test_the_pacer_and_sleep_refuse_nan_instead_of_spinning() -> None:
    """Even called directly, the pacer and the cancellable sleep refuse NaN and infinity at once."""
    pacer = Pacer()
    for bad in (math.nan, math.inf, 0.0, -1.0):
        with pytest.raises(ValueError, match="requests_per_minute"):
            pacer.acquire(bad)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="cannot wait"):
            sleep(bad, threading.Event())
        with pytest.raises(ValueError, match="throttle hold"):
            pacer.hold(bad)


def hold(client: ProfileClient, seconds: float) -> None:
    """A throttle hold on the client's budget (the default: shared by every kernel on the machine), as after a 429."""
    client._budget().throttled(seconds, None, adaptive=False)


def test_ctrl_c_ends_a_throttle_hold_of_a_single_lookup(
    client: ProfileClient, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A lookup in the main thread waiting on a 30 s kernel-wide hold says so, stops on Ctrl-C within a second,
    and sends nothing; the hold itself stays (the API asked for it)."""
    hold(client, 30)
    emulator.reset()
    started = time.monotonic()
    with ctrl_c_after(0.3) as fired, pytest.raises(KeyboardInterrupt):
        client.lookup(user_id="12345")
    assert fired()
    assert time.monotonic() - started < 1.3
    assert emulator.request_count == 0
    assert client._budget().hold_remaining() > 25
    assert "Waiting 30s on the API's throttle hold (Retry-After) before sending; Ctrl-C stops." in caplog.messages


def test_ctrl_c_ends_a_throttle_hold_of_a_batch(client: ProfileClient, emulator: Emulator) -> None:
    """A batch waiting on a 30 s hold returns on Ctrl-C within a second, every user accounted as NotFetched."""
    hold(client, 30)
    emulator.reset()
    queries = [ProfileQuery(user_id=user) for user in emulator.dataset.user_ids[:6]]
    started = time.monotonic()
    with ctrl_c_after(0.3) as fired:
        batch = client.lookup_many(queries)
    assert fired()
    assert time.monotonic() - started < 1.3
    assert batch.interrupted
    assert len(batch) == 6
    assert all(isinstance(outcome.error, NotFetched) for outcome in batch)
    assert emulator.request_count == 0


def test_a_batch_reports_a_throttle_hold_and_its_end(client: ProfileClient, emulator: Emulator) -> None:
    """``on_wait`` hears the seconds left of a kernel-wide hold, counting down, then 0 when sends resume."""
    hold(client, 2.2)
    seen: list[float] = []
    batch = client.lookup_many([ProfileQuery(user_id="12345"), ProfileQuery(user_id="user-00001")], on_wait=seen.append)
    assert all(outcome.ok for outcome in batch)
    assert seen[0] == 3.0
    assert seen == sorted(seen, reverse=True)
    assert seen[-1] == 0.0
    assert 2.0 in seen
    assert 1.0 in seen


def test_the_progress_bar_says_a_batch_waits_on_a_throttle_hold(shell: Any) -> None:
    """The %ampprofile progress bar shows "waiting on a throttle hold, Ns left" while the kernel is held."""
    magics = next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")
    magics.progress = True
    shell.user_ns["ids"] = ["12345", "user-00001", "user-00002"]
    hold(magics.client, 1.5)
    with capture_output() as captured:
        shell.run_line_magic("ampprofile", "--users ids props")
    assert "waiting on a throttle hold, 2s left" in captured.stderr

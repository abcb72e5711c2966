"""API failures show a compact inline panel, no traceback, and still end the cell in error."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from amp_profile_magic._panel import CellFailed
from amp_profile_magic.emulator import Emulator, Faults

from .helpers import CellRun, magics_of


@dataclass(frozen=True)
class Case:
    """One way a lookup can fail: how to provoke it and what the panel must say."""

    setup: Callable[[Any, Emulator], None]
    title: str
    status: str
    says: tuple[str, ...]
    line: str = "%ampprofile user=12345 cohorts"
    requests: int | None = 1


def _wrong_key(magics: Any, emulator: Emulator) -> None:
    magics.client.api_key = "not-the-key"


def _no_key(magics: Any, emulator: Emulator) -> None:
    magics.client.api_key = ""


def _wrong_path(magics: Any, emulator: Emulator) -> None:
    magics.client.endpoint = emulator.url + "/wrong"


def _plain_http(magics: Any, emulator: Emulator) -> None:
    emulator.plain_http_redirect = True


def _throttled(magics: Any, emulator: Emulator) -> None:
    magics.client.max_retries = 0
    emulator.throttle_burst(1)


def _nothing(magics: Any, emulator: Emulator) -> None:
    pass


def _server_errors(magics: Any, emulator: Emulator) -> None:
    magics.client.max_retries = 2
    emulator.faults = Faults(error_rate=1.0, error_status=503)


def _slow(magics: Any, emulator: Emulator) -> None:
    magics.client.max_retries = 0
    magics.client.timeout = 0.2
    emulator.faults = Faults(slow_rate=1.0, slow_seconds=1.0)


def _garbled(magics: Any, emulator: Emulator) -> None:
    emulator.faults = Faults(malformed_rate=1.0)


CASES = {
    "invalid key": Case(_wrong_key, "Invalid secret key", "HTTP 401", ("Invalid Api-Key", "AMPLITUDE_SECRET_KEY")),
    "missing key": Case(
        _no_key,
        "No secret key configured",
        "MissingKey",
        ("AMPLITUDE_SECRET_KEY", "%config ProfileClient.api_key", "%ampprofile_emulator"),
        requests=0,
    ),
    "404 wrong endpoint": Case(_wrong_path, "Wrong endpoint or path", "HTTP 404", ("ProfileClient.endpoint",)),
    "301 plain http": Case(_plain_http, "Plain HTTP redirected", "HTTP 301", ("https://", "not followed")),
    "throttled": Case(
        _throttled, "Rate limit exceeded", "HTTP 429", ("Number of requests per minute exceeds", "requests_per_minute")
    ),
    "unknown user": Case(
        _nothing,
        "Unknown user or device",
        "HTTP 400",
        ("User id and device id not seen before", "spelling"),
        line="%ampprofile user=nobody-at-all cohorts",
    ),
    "5xx after retries": Case(
        _server_errors, "Profile API unavailable", "HTTP 503", ("Service Unavailable", "retry later"), requests=3
    ),
    # The emulator logs a request when it answers, which a timed-out one has not done yet.
    "timeout": Case(_slow, "Request timed out", "RequestTimeout", ("0.2s", "ProfileClient.timeout"), requests=None),
    "malformed": Case(_garbled, "Unreadable response", "HTTP 200", ("not JSON", "ProfileClient.endpoint")),
}


def _panel_checks(done: CellRun, case: Case, canary: str) -> None:
    bundles = done.bundles()
    assert len(bundles) == 1, bundles
    panel = bundles[0]
    assert set(panel) == {"text/plain", "text/html"}
    plain, markup = panel["text/plain"], panel["text/html"]
    assert plain.startswith(f"✖ {case.title} ({case.status})")
    assert "What happened" in plain
    assert "What to do" in plain
    assert "amp-profile-error" in markup
    assert case.title in markup
    for text in case.says:
        assert text in plain, text
    assert "Traceback" not in done.everything
    assert canary not in done.everything


@pytest.mark.parametrize("name", list(CASES))
def test_failure_shows_panel_and_ends_cell_in_error(run: Any, magics: Any, emulator: Emulator, name: str) -> None:
    """Each API failure renders the panel (status, the API's words, the fix), no traceback, and fails the cell."""
    case = CASES[name]
    case.setup(magics, emulator)
    done = run(case.line)
    assert done.result.success is False
    assert isinstance(done.result.error_in_exec, CellFailed)
    _panel_checks(done, case, emulator.api_key)
    # One short line, naming the failure's class, replaces the traceback.
    error = done.result.error_in_exec.error
    assert f"{type(error).__name__}: {error.message}" in done.stdout
    if case.requests is not None:
        assert len(emulator.requests) == case.requests
    else:
        # The timed-out request is answered (and logged) only when its slow fault ends: wait for that here, or it
        # lands in the log of whichever test runs next (seen under load, as a stray request in the next case).
        deadline = time.monotonic() + 10
        while emulator.request_count == 0 and time.monotonic() < deadline:
            time.sleep(0.02)


def test_missing_key_is_reported_before_any_request(run: Any, magics: Any, emulator: Emulator) -> None:
    """Without a key nothing is sent at all, even for a batch, and the panel says how to set one."""
    magics.client.api_key = ""
    done = run("%%ampprofile cohorts\n12345\nuser-00001")
    assert done.result.success is False
    assert emulator.requests == []
    assert "AMPLITUDE_SECRET_KEY" in done.texts()[0]


def test_raise_errors_false_shows_the_panel_only(run: Any, magics: Any, emulator: Emulator) -> None:
    """With raise_errors off, the panel is shown and the cell succeeds with no result."""
    magics.raise_errors = False
    done = run("%ampprofile user=nobody-at-all cohorts")
    assert done.result.success is True
    assert done.result.result is None
    _panel_checks(done, CASES["unknown user"], emulator.api_key)
    assert "UnknownUser:" not in done.stdout


def test_config_raise_errors_false_from_config_magic(run: Any, emulator: Emulator) -> None:
    """%config AmpProfileMagics.raise_errors = False turns failing cells into panels only."""
    assert run("%config AmpProfileMagics.raise_errors = False").result.success
    done = run("%ampprofile user=nobody-at-all cohorts")
    assert done.result.success is True
    assert done.texts()[0].startswith("✖ Unknown user or device")


def test_batch_failing_wholly_on_setup_shows_one_panel(run: Any, magics: Any, emulator: Emulator) -> None:
    """When every user of a batch fails on the key, the cell fails with one panel instead of a failure table."""
    magics.client.api_key = "not-the-key"
    done = run("%%ampprofile cohorts\n12345\nuser-00001\nuser-00002")
    assert done.result.success is False
    assert isinstance(done.result.error_in_exec, CellFailed)
    _panel_checks(done, CASES["invalid key"], emulator.api_key)


def test_batch_with_some_server_errors_keeps_the_rest(run: Any, magics: Any, emulator: Emulator) -> None:
    """A batch where some users hit 5xx after retries still returns the others, the failures listed by kind."""
    magics.client.max_retries = 0
    emulator.faults = Faults(error_rate=0.5)
    ids = [f"user-{n:05d}" for n in range(12)]
    done = run("%%ampprofile cohorts\n" + "\n".join(ids))
    assert done.result.success, done.everything
    frame = done.result.result
    failed = [failure["user_id"] for failure in frame.attrs["failures"]]
    assert failed, "the seeded fault sequence fails some of 12 users"
    assert {failure["kind"] for failure in frame.attrs["failures"]} == {"server_error"}
    assert set(frame["user_id"]) | set(failed) == set(ids)
    assert not set(frame["user_id"]) & set(failed)
    ok = len(ids) - len(failed)
    assert f"{ok} profiles · {len(failed)} failed: server_error ×{len(failed)}" in done.texts()


def test_run_line_magic_raises_cell_failed(shell: Any, emulator: Emulator) -> None:
    """Called from Python, a failing lookup raises CellFailed carrying the ProfileError (after the panel)."""
    with pytest.raises(CellFailed) as raised:
        shell.run_line_magic("ampprofile", "user=nobody-at-all cohorts")
    assert raised.value.error.kind == "unknown_user"
    assert raised.value.error.status == 400


def test_the_apis_own_words_are_one_short_line_in_the_panel() -> None:
    """A 502's multi-line HTML page is quoted in the panel as one line of at most SAID_LIMIT characters, and not at
    all when the message already quotes it; the error itself keeps its longer quote."""
    from amp_profile_magic import ServerUnavailable
    from amp_profile_magic._panel import SAID_LIMIT, error_bundle

    page = "<html>\n<body>\n" + "<p>line of diagnostic text</p>\n" * 100 + "</body></html>\n"
    error = ServerUnavailable("HTTP 502 from the Profile API: bad gateway.", status=502, api_message=page)
    text = error_bundle(error)["text/plain"]
    said = next(line for line in text.splitlines() if line.startswith("  The API said: "))
    assert len(said) == len("  The API said: ") + SAID_LIMIT
    assert said.endswith("…")
    assert len(text.splitlines()) == 4
    assert error.api_message is not None
    assert error.api_message.startswith(page[:900])
    quoted = ServerUnavailable(f"HTTP 502 from the Profile API: {' '.join(page.split())[:200]}.", api_message=page)
    assert "The API said" not in error_bundle(quoted)["text/plain"]


def test_a_batch_failing_at_setup_closes_its_progress_bar(shell: Any, run: Any) -> None:
    """A batch whose setup fails (no key) ends its progress bar before the error panel: no bar is left open."""
    from tqdm import tqdm

    magics = magics_of(shell)
    magics.progress = True
    magics.client.api_key = ""
    shell.user_ns["ids"] = ["12345", "user-00001"]
    open_before = len(tqdm._instances)  # type: ignore[attr-defined]
    done = run("%ampprofile --users ids cohorts")
    assert not done.result.success
    assert "No secret key" in done.everything
    assert len(tqdm._instances) == open_before  # type: ignore[attr-defined]


def test_help_flags_and_sections_with_a_comment(shell: Any, run: Any) -> None:
    """%ampprofile -h / --help and %ampprofile_form -h print their help; --sections takes a trailing comment, and
    with anything else it says it takes nothing else."""
    for line in ("%ampprofile -h", "%ampprofile --help  # the grammar"):
        shown = run(line)
        assert shown.result.success, shown.everything
        assert "Usage::" in shown.stdout
    form_help = run("%ampprofile_form -h")
    assert form_help.result.success
    assert form_help.stdout.startswith("Explore a profile with a form")
    listed = run("%ampprofile --sections  # which are installed")
    assert listed.result.success, listed.everything
    assert "recs  (amp_profile_magic.sections" in listed.stdout
    refused = run("%ampprofile --sections props")
    assert not refused.result.success
    assert "UsageError: %ampprofile: --sections lists the installed sections and takes nothing else" in refused.stderr


def test_each_magic_names_itself_in_its_grammar_errors(shell: Any, run: Any) -> None:
    """A grammar error from %%ampprofile (its line or its body) or %ampprofile_form starts with that magic's name."""
    body = run("%%ampprofile props\njohn smith")
    assert "UsageError: %%ampprofile: line 1: 'smith' is a second bare id" in body.stderr
    first_line = run("%%ampprofile bogus\n12345")
    assert "UsageError: %%ampprofile: unknown keyword 'bogus'" in first_line.stderr
    form = run("%ampprofile_form user=12345 bogus")
    assert "UsageError: %ampprofile_form: unknown keyword 'bogus'" in form.stderr

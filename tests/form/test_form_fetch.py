"""Fetch: the form runs the magic's own code path on a background thread and shows tables or the error panel."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import pytest

from amp_profile_magic import _exceptions as exc
from amp_profile_magic import _invoke
from amp_profile_magic._form import BUSY_ICON, BUSY_LABEL, IDLE_ICON, IDLE_LABEL, ProfileForm
from amp_profile_magic._grammar import parse_line
from amp_profile_magic._panel import error_bundle
from amp_profile_magic.emulator import Faults

from .conftest import click_and_wait, fill, output_data


def expected_panel(magics: Any, line: str) -> dict[str, str]:
    """The panel %ampprofile shows for ``line``: the bundle of the error its fetch raises."""
    invocation = parse_line(line)
    try:
        _invoke.fetch(magics, invocation, [invocation.identity])
    except exc.ProfileError as error:
        return error_bundle(error)
    raise AssertionError(f"{line!r} did not fail")


def assert_idle(form: Any) -> None:
    """The button is back to its usable state."""
    assert not form.busy
    assert not form.fetch_button.disabled
    assert form.fetch_button.description == IDLE_LABEL
    assert form.fetch_button.icon == IDLE_ICON


def test_fetch_shows_the_table(form: Any, emulator: Any) -> None:
    """Fetch for user 12345's testRecId shows the recommendations table with the documented items."""
    fill(form, who="12345", recs="testRecId")
    click_and_wait(form)
    data = output_data(form)
    assert len(data) == 2
    table = data[0]["text/html"]
    assert "<table" in table
    assert "cookie" in table
    assert "testRecId" in table
    assert data[1]["text/plain"].startswith("fetched in ")
    assert emulator.requests[-1].params["rec_id"] == "testRecId"
    assert_idle(form)


def test_bound_variable_equals_running_the_line_as_a_cell(shell: Any, form: Any) -> None:
    """The variable the form binds holds what its displayed %ampprofile line gives when run as a cell."""
    fill(form, who="12345", recs="testRecId,testRecId2", props=True, cohorts=True, out="from_form")
    click_and_wait(form)
    data = output_data(form)
    assert data[0]["text/plain"].startswith("from_form = ProfileResult (recs 10×9, props 1×")
    from_form = shell.user_ns["from_form"]
    assert list(from_form) == ["recs", "props", "cohorts"]
    assert "cookie" in data[1]["text/html"]

    form.out_name.value = "from_cell"
    result = shell.run_cell(form.line)
    assert result.error_in_exec is None
    from_cell = shell.user_ns["from_cell"]
    for name in from_form:
        pd.testing.assert_frame_equal(from_form[name], from_cell[name])


def test_fetch_by_device(shell: Any, form: Any) -> None:
    """The identifier kind switches the lookup to device_id."""
    fill(form, kind="device", who="ffff-ffff-ffff-ffff", cohorts=True, out="by_device")
    click_and_wait(form)
    frame = shell.user_ns["by_device"]
    assert set(frame["device_id"]) == {"ffff-ffff-ffff-ffff"}
    assert len(frame) > 0


def test_busy_while_running_and_no_double_submit(shell: Any, emulator: Any, form: Any) -> None:
    """While a slow lookup runs the button is disabled and says so, repeated clicks send nothing, cells still run."""
    emulator.faults = Faults(latency=1.5)
    fill(form, who="12345", cohorts=True)
    before = emulator.request_count
    started = time.monotonic()
    form.fetch_button.click()
    assert time.monotonic() - started < 1.0, "the click handler must not wait for the lookup"
    assert form.busy
    assert form.fetch_button.disabled
    assert form.fetch_button.description == BUSY_LABEL
    assert form.fetch_button.icon == BUSY_ICON
    assert output_data(form) == [{"text/plain": "Fetching: %ampprofile user=12345 cohorts …"}]
    form.fetch_button.click()
    form.fetch()
    form.fields["props"].widget.value = True  # a change while busy must not re-enable the button
    assert form.fetch_button.disabled
    assert shell.run_cell("still_responsive = 6 * 7").success
    assert shell.user_ns["still_responsive"] == 42
    assert form.busy

    assert form.wait(timeout=30)
    assert emulator.request_count - before == 1
    assert_idle(form)
    assert "cohort_id" in output_data(form)[0]["text/html"]


def test_unknown_user_shows_the_magics_panel_and_form_stays_usable(magics: Any, form: Any) -> None:
    """An unknown user shows the same error panel as %ampprofile; the next Fetch works."""
    fill(form, who="nobody-at-all", recs="testRecId")
    click_and_wait(form)
    assert output_data(form) == [expected_panel(magics, "user=nobody-at-all recs=testRecId")]
    assert "Unknown user or device" in output_data(form)[0]["text/html"]
    assert "amp-profile-error" in output_data(form)[0]["text/html"]
    assert_idle(form)

    form.identity_value.value = "12345"
    click_and_wait(form)
    assert "cookie" in output_data(form)[0]["text/html"]


def test_plain_http_redirect_shows_the_panel(magics: Any, emulator: Any, form: Any) -> None:
    """The emulator's plain-HTTP redirect shows the magic's panel; once fixed, the same form fetches."""
    emulator.plain_http_redirect = True
    fill(form, who="12345", props=True)
    click_and_wait(form)
    panel = output_data(form)
    assert "Plain HTTP redirected" in panel[0]["text/plain"]
    assert panel == [expected_panel(magics, "user=12345 props")]
    assert_idle(form)

    emulator.plain_http_redirect = False
    click_and_wait(form)
    assert "<table" in output_data(form)[0]["text/html"]


@pytest.mark.usefixtures("restore_config")
def test_form_follows_the_kernels_client_settings(shell: Any, emulator: Any, form: Any) -> None:
    """Settings changed after the form was shown (%config key, %ampprofile_emulator) apply to its next Fetch."""
    fill(form, who="12345", cohorts=True)
    shell.run_line_magic("config", "ProfileClient.api_key = 'not-the-key'")
    click_and_wait(form)
    assert "Invalid secret key" in output_data(form)[0]["text/plain"]

    before = emulator.request_count
    shell.run_line_magic("ampprofile_emulator", "")
    try:
        click_and_wait(form)
        assert "cohort_id" in output_data(form)[0]["text/html"]
        assert emulator.request_count == before, "the bundled emulator, not the session's, answered"
    finally:
        shell.run_line_magic("ampprofile_emulator", "--stop")


@pytest.mark.usefixtures("restore_config")
def test_display_max_rows_config_applies(shell: Any, form: Any) -> None:
    """%config AmpProfileMagics.display_max_rows limits the tables the form shows, as it does for the magic."""
    shell.run_line_magic("config", "AmpProfileMagics.display_max_rows = 2")
    fill(form, who="12345", recs="testRecId,testRecId2", cohorts=True)
    click_and_wait(form)
    html = output_data(form)[0]["text/html"]
    assert "…" in html or "..." in html
    assert html.count("<tr>") < 10


def test_unexpected_error_is_shown_and_form_recovers(magics: Any, form: Any, monkeypatch: Any) -> None:
    """A bug-like exception inside the lookup thread is shown in the output, not lost, and the form stays usable."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(magics.client, "lookup_many", broken)
    fill(form, who="12345", props=True)
    click_and_wait(form)
    assert output_data(form) == [{"text/plain": "✖ Unexpected error: RuntimeError: boom"}]
    assert_idle(form)


def test_foreground_mode_runs_inline(shell: Any, magics: Any) -> None:
    """With background=False the click returns after the lookup, with the table already shown."""
    form = ProfileForm(magics, line="user=12345 recs=testRecId -o inline", background=False)
    form.fetch_button.click()
    assert not form.busy
    assert "cookie" in output_data(form)[1]["text/html"]
    assert shell.user_ns["inline"]["item"].iloc[0] == "cookie"


def test_a_lookup_that_needed_retries_says_so_in_one_line(form: Any, emulator: Any) -> None:
    """When the API answers 503 twice before the profile, the form's one status line counts the retries."""
    form.magics.client.store = "off"
    form.magics.client.max_retries = 30
    emulator.faults = Faults(error_rate=0.6)
    lines = []
    for user in emulator.dataset.user_ids[:8]:
        fill(form, who=user, cohorts=True)
        click_and_wait(form)
        lines.append(output_data(form)[-1]["text/plain"])
    assert all(line.startswith("fetched in ") for line in lines)
    retried = [line for line in lines if "retr" in line]
    assert retried, lines
    assert all(" · 1 profile · " in line for line in retried)

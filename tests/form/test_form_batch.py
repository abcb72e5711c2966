"""Batches in the form: pasted ids or a variable of ids, a progress bar, the summary, failures, and Stop."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError

from amp_profile_magic import _invoke
from amp_profile_magic._form import IDLE_LABEL
from amp_profile_magic._form_batch import STOP_LABEL, STOPPING_LABEL, id_variables
from amp_profile_magic.emulator import Emulator, Faults

from .conftest import click_and_wait, fill, output_data

API_PATH = "/v1/userprofile"


def paste(form: Any, ids: list[str], *, kind: str = "user", out: str = "", **controls: Any) -> None:
    """Switch the form to pasted ids and type them one per line, as a user pasting a column would."""
    fill(form, kind=kind, out=out, **controls)
    form.batch.mode.value = "paste"
    form.batch.pasted.value = "\n".join(ids) + "\n"


def pick(form: Any, name: str, *, kind: str = "user", out: str = "", **controls: Any) -> None:
    """Switch the form to a variable of ids and pick ``name`` in its list."""
    fill(form, kind=kind, out=out, **controls)
    form.batch.mode.value = "variable"
    form.batch.variable.value = name


def asked(emulator: Emulator, key: str = "user_id") -> list[str]:
    """The ids the emulator was asked about, in the order the requests arrived."""
    return [entry.params[key] for entry in emulator.requests if entry.path == API_PATH]


def assert_idle(form: Any) -> None:
    """Fetch is usable again and Stop is not."""
    assert not form.busy
    assert not form.fetch_button.disabled
    assert form.fetch_button.description == IDLE_LABEL
    assert form.batch.stop_button.disabled
    assert form.batch.stop_button.description == STOP_LABEL


def wait_for(condition: Any, timeout: float = 30) -> None:
    """Poll ``condition`` until true (the batch runs on the form's thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_pasted_ids_fetch_every_user_and_show_the_magics_summary(shell: Any, emulator: Emulator, form: Any) -> None:
    """Three pasted user ids: one request each, the bar full, the summary line the result holds, the table bound."""
    ids = ["12345", "user-00001", "user-00002"]
    paste(form, ids, props=True, out="res")
    assert form.line == "%%ampprofile props -o res\n12345\nuser-00001\nuser-00002"
    assert "(3 user ids)" in form.line_view.value
    emulator.reset()
    click_and_wait(form)

    assert sorted(asked(emulator)) == sorted(ids)
    res = shell.user_ns["res"]
    assert list(res["user_id"]) == ids
    data = output_data(form)
    assert data[0]["text/plain"] == res.attrs["summary"] == "3 profiles"
    assert data[1]["text/plain"] == f"res = DataFrame (3 rows × {res.shape[1]} columns)"
    assert "<table" in data[-1]["text/html"]
    assert form.batch.progress.value == form.batch.progress.max == 3
    assert form.batch.progress_label.value.startswith("3 of 3 · done in ")
    assert form.batch.progress.bar_style == "success"
    assert_idle(form)


def test_pasted_device_ids_go_out_as_device_ids(shell: Any, emulator: Emulator, form: Any) -> None:
    """With the kind set to device, each pasted line is a device id, in the shown cell and in the requests."""
    paste(form, ["ffff-ffff-ffff-ffff", "it's a device"], kind="device", cohorts=True, out="by_device")
    assert form.line == "%%ampprofile cohorts -o by_device\ndevice=ffff-ffff-ffff-ffff\ndevice='it''s a device'"
    emulator.reset()
    click_and_wait(form)
    assert sorted(asked(emulator, "device_id")) == ["ffff-ffff-ffff-ffff", "it's a device"]
    assert set(shell.user_ns["by_device"]["device_id"]) == {"ffff-ffff-ffff-ffff"}
    assert output_data(form)[0]["text/plain"] == "1 profile · 1 failed: unknown_user ×1"


def test_a_variable_of_ids_is_read_like_users_name(shell: Any, emulator: Emulator, form: Any) -> None:
    """A Series of mixed ints and strings is read as --users reads it; the list comes from the namespace."""
    shell.run_cell("import pandas as pd\nwho = pd.Series([12345, 'user-00003'], dtype=object)\n_hidden = [1]")
    form.batch.mode.value = "variable"
    names = [name for _, name in form.batch.variable.options]
    assert "who" in names
    assert "_hidden" not in names
    assert "In" not in names  # IPython's own history list
    assert form.error == "pick the variable that holds the user ids"
    pick(form, "who", recs="testRecId", out="recs")
    assert form.line == "%ampprofile --users who recs=testRecId -o recs"
    emulator.reset()
    click_and_wait(form)
    assert sorted(asked(emulator)) == ["12345", "user-00003"]
    assert set(shell.user_ns["recs"]["user_id"]) == {"12345", "user-00003"}
    assert output_data(form)[0]["text/plain"] == "2 profiles"


def test_the_variable_is_read_when_fetch_is_pressed(shell: Any, emulator: Emulator, form: Any) -> None:
    """A variable changed after it was picked: Fetch sends what it holds then, as the line would when run."""
    shell.run_cell("ids = ['12345']")
    pick(form, "ids", cohorts=True)
    shell.user_ns["ids"].append("user-00004")  # no cell ran: only Fetch can see it
    emulator.reset()
    click_and_wait(form)
    assert sorted(asked(emulator)) == ["12345", "user-00004"]


def test_a_variable_gone_bad_before_fetch_replaces_the_last_result_with_the_error(
    shell: Any, emulator: Emulator, form: Any
) -> None:
    """Rebound to a number with no cell run, the variable's complaint is what the output shows, not the old table."""
    shell.run_cell("ids = ['12345', 'user-00001']")
    pick(form, "ids", cohorts=True)
    click_and_wait(form)
    assert output_data(form)[0]["text/plain"] == "2 profiles"
    shell.user_ns["ids"] = 7  # a thread or a widget callback, say: no cell ran
    emulator.reset()
    click_and_wait(form)
    assert asked(emulator) == []
    shown = output_data(form)
    assert len(shown) == 1
    assert shown[0]["text/plain"].startswith("✖ ")
    assert "ids" in shown[0]["text/plain"]


def test_the_list_follows_the_namespace_after_each_cell(shell: Any, form: Any) -> None:
    """A cell defining ids adds them to the list; the choice stays while it exists and goes when it is deleted."""
    fill(form, cohorts=True)
    form.batch.mode.value = "variable"
    shell.run_cell("later = ('12345', 'user-00001')")
    assert ("later (tuple, 2)", "later") in form.batch.variable.options
    form.batch.variable.value = "later"
    assert form.line is not None
    assert "(2 user ids)" in form.line_view.value
    shell.run_cell("another = ['x']\nlater = later + ('user-00002',)")
    assert form.batch.variable.value == "later"
    assert "(3 user ids)" in form.line_view.value
    shell.run_cell("del later")
    assert form.batch.variable.value is None
    assert form.line is None
    assert form.fetch_button.disabled


def test_bad_ids_in_a_variable_get_the_magics_one_line_error(shell: Any, form: Any) -> None:
    """A missing id in the variable disables Fetch with the message %ampprofile --users gives for it."""
    shell.run_cell("bad = ['12345', None]")
    pick(form, "bad", props=True)
    assert form.line is None
    assert form.fetch_button.disabled
    with pytest.raises(UsageError) as raised:
        shell.run_line_magic("ampprofile", "--users bad props")
    assert form.error == str(raised.value).removeprefix("%ampprofile: ")
    assert "position 1 is missing" in form.error


def test_nothing_pasted_says_what_to_do(form: Any) -> None:
    """An empty or blank paste box explains itself and disables Fetch."""
    paste(form, ["", "   "], props=True)
    assert form.error == "paste user ids, one per line"
    assert form.fetch_button.disabled


def test_failures_are_summarised_by_kind_and_listed(shell: Any, emulator: Emulator, form: Any) -> None:
    """Unknown users: the summary counts them by kind, the failures table lists every one, as the magic's cell does."""
    form.magics.client.store = "off"  # the cell below would otherwise be answered from the store, and say so
    ids = ["12345", "nobody-1", "user-00001", "nobody-2", "user-00002"]
    paste(form, ids, props=True, cohorts=True, out="both")
    click_and_wait(form)
    both = shell.user_ns["both"]
    data = output_data(form)
    summary = data[0]["text/plain"]
    assert summary == both.summary == "3 profiles · 2 failed: unknown_user ×2"
    failures = data[2]
    assert failures["text/plain"].startswith("failures (2)\n")
    assert "amp-failures" in failures["text/html"]
    assert list(both.failures["user_id"]) == ["nobody-1", "nobody-2"]
    assert "failures" not in data[-1]["text/html"]  # listed once, above the tables
    assert form.batch.progress.bar_style == "warning"

    # The same summary line as the magic prints for the cell the form shows.
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        assert shell.run_cell(form.line).success
    assert captured.outputs[0].data["text/plain"] == summary


def test_a_whole_batch_failing_on_the_setup_shows_the_panel(shell: Any, form: Any, restore_config: Any) -> None:
    """A wrong key fails every user alike: the form shows the magic's panel once, and Fetch works again after."""
    paste(form, ["12345", "user-00001"], props=True)
    shell.run_line_magic("config", "ProfileClient.api_key = 'not-the-key'")
    click_and_wait(form)
    assert "Invalid secret key" in output_data(form)[0]["text/plain"]
    assert form.batch.progress.bar_style == "danger"
    assert_idle(form)


def test_progress_label_shows_the_retries_note(shell: Any, emulator: Emulator, form: Any) -> None:
    """With 503s the label counts the retries as they happen, and keeps the count when the batch is done."""
    magics = form.magics
    magics.client.store = "off"
    magics.client.max_retries = 30
    emulator.faults = Faults(error_rate=0.5)
    labels: list[str] = []
    form.batch.progress_label.observe(lambda change: labels.append(change["new"]), names="value")
    paste(form, list(emulator.dataset.user_ids[:12]), props=True)
    click_and_wait(form)
    assert any("retr" in label and "done" not in label for label in labels), labels
    assert form.batch.progress_label.value.startswith("12 of 12 · done in ")
    assert "retr" in form.batch.progress_label.value
    assert " retr" in output_data(form)[0]["text/plain"]


@pytest.mark.parametrize("out", ["", "kept"])
def test_stop_keeps_what_finished_and_accounts_for_every_user(
    shell: Any, emulator: Emulator, form: Any, out: str
) -> None:
    """Stop mid-batch: fetched users are bound (-o or _ampprofile_partial), the rest are failures; Fetch works after."""
    magics = form.magics
    magics.client.store = "off"
    magics.client.requests_per_minute = 600  # ten a second: 30 users take about three
    emulator.faults = Faults(latency=0.2)
    ids = list(emulator.dataset.user_ids[:30])
    paste(form, ids, props=True, out=out)
    assert form.batch.stop_button.disabled
    form.fetch_button.click()
    assert form.busy
    assert not form.batch.stop_button.disabled
    form.fetch_button.click()  # no double submit
    wait_for(lambda: form.batch.progress.value >= 5)
    form.batch.stop_button.click()
    assert form.batch.stop_button.disabled
    assert form.batch.stop_button.description == STOPPING_LABEL
    assert form.wait(timeout=30)

    name = out or _invoke.PARTIAL_RESULT_NAME
    kept = shell.user_ns[name]
    fetched = list(kept["user_id"])
    missing = [record["user_id"] for record in kept.attrs["failures"]]
    assert 5 <= len(fetched) < len(ids)
    assert sorted(fetched + missing) == sorted(ids), "every user is either fetched or listed as missing"
    assert {record["kind"] for record in kept.attrs["failures"]} == {"not_fetched"}
    data = output_data(form)
    assert data[0]["text/plain"].startswith(f"Interrupted: {len(fetched)} of 30 fetched, {len(missing)} missing")
    assert data[1]["text/plain"].startswith(f"{name} = DataFrame ({len(fetched)} rows")
    assert data[2]["text/plain"] == (
        f"{len(missing)} of 30 users not fetched; the {len(fetched)} fetched are in {name} "
        "(its failures list the missing ones)"
    )
    assert len(asked(emulator)) < len(ids)
    assert form.batch.progress.bar_style == "warning"
    assert "stopped after" in form.batch.progress_label.value
    assert_idle(form)

    emulator.faults = Faults()
    paste(form, ["12345"], props=True, out="again")
    click_and_wait(form)
    assert list(shell.user_ns["again"]["user_id"]) == ["12345"]


def test_the_stop_button_shows_only_for_batches(form: Any) -> None:
    """Stop, the paste box and the variable list appear only in their modes; the id box only for one id."""
    assert form.batch.stop_button.layout.display == "none"
    assert form.batch.widget.layout.display == "none"
    form.batch.mode.value = "paste"
    assert form.batch.stop_button.layout.display is None
    assert form.batch.pasted.layout.display is None
    assert form.batch.variable_row.layout.display == "none"
    assert form.identity_value.layout.display == "none"
    form.batch.mode.value = "one"
    assert form.identity_value.layout.display is None


def test_prefill_with_users_picks_the_variable(shell: Any) -> None:
    """%ampprofile_form --users NAME opens the form on that variable, ready to fetch."""
    shell.run_cell("ids = ['12345', 'user-00001']")
    form = shell.run_line_magic("ampprofile_form", "--users ids recs=testRecId -o recs")
    assert form.batch.mode.value == "variable"
    assert form.batch.variable.value == "ids"
    assert form.line == "%ampprofile --users ids recs=testRecId -o recs"
    shell.run_cell("devs = ['ffff-ffff-ffff-ffff']")
    form = shell.run_line_magic("ampprofile_form", "--devices devs cohorts")
    assert form.identity_kind.value == "device"
    assert form.line == "%ampprofile --devices devs cohorts"


def test_id_variables_lists_what_users_takes(shell: Any) -> None:
    """Lists, tuples, Series, Index and 1-D arrays are offered; strings, frames, mappings and hidden names are not."""
    namespace = {
        "a_list": ["1"],
        "a_tuple": ("1", "2"),
        "series": pd.Series(["1"]),
        "index": pd.Index(["1", "2", "3"]),
        "array": np.array([1, 2]),
        "matrix": np.zeros((2, 2)),
        "text": "12345",
        "frame": pd.DataFrame({"user_id": ["1"]}),
        "mapping": {"a": 1},
        "_private": ["1"],
        "In": ["hidden"],
    }
    found = id_variables(namespace, {"In": namespace["In"]})
    assert found == [
        ("a_list (list, 1)", "a_list"),
        ("a_tuple (tuple, 2)", "a_tuple"),
        ("array (ndarray, 2)", "array"),
        ("index (Index, 3)", "index"),
        ("series (Series, 1)", "series"),
    ]


def hold(form: Any, seconds: float) -> None:
    """A throttle hold on the client's budget, as after a 429 with Retry-After."""
    form.magics.client._budget().throttled(seconds, None, adaptive=False)


def test_progress_label_says_the_batch_waits_on_a_throttle_hold(form: Any) -> None:
    """While the kernel's budget is held, the label counts the hold down; the batch then finishes."""
    labels: list[str] = []
    form.batch.progress_label.observe(lambda change: labels.append(change["new"]), names="value")
    paste(form, ["12345", "user-00001", "user-00002"], props=True)
    hold(form, 1.5)
    click_and_wait(form)
    assert "0 of 3 · waiting on a throttle hold, 2s left" in labels
    assert form.batch.progress_label.value.startswith("3 of 3 · done in ")


def test_stop_ends_a_throttle_hold_at_once(shell: Any, form: Any) -> None:
    """Stop during a 30 s hold ends the batch within about a second; nothing fetched, every user listed missing."""
    paste(form, ["12345", "user-00001", "user-00002"], props=True)
    hold(form, 30)
    form.fetch_button.click()
    wait_for(lambda: "waiting on a throttle hold" in form.batch.progress_label.value)
    started = time.monotonic()
    form.batch.stop_button.click()
    assert form.wait(timeout=5)
    assert time.monotonic() - started < 1.5
    assert output_data(form)[0]["text/plain"] == "Interrupted: 0 of 3 fetched, 3 missing (kept what finished)"
    partial = shell.user_ns[_invoke.PARTIAL_RESULT_NAME]
    assert len(partial) == 0
    assert [record["user_id"] for record in partial.attrs["failures"]] == ["12345", "user-00001", "user-00002"]
    assert_idle(form)


def test_a_variable_is_read_once_per_change_not_per_keystroke(
    shell: Any, emulator: Emulator, form: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typing elsewhere and running cells reuse the ids read; a new or resized variable, or Fetch, reads again."""
    reads: list[str | None] = []
    real = _invoke.ids_from

    def counted(host: Any, option: str, expression: str | None, local_ns: Any = None) -> Any:
        reads.append(expression)
        return real(host, option, expression, local_ns)

    monkeypatch.setattr(_invoke, "ids_from", counted)
    shell.run_cell("ids = ['12345', 'user-00001']")
    pick(form, "ids", props=True)
    assert reads == ["ids"]
    for text in ("t", "te", "testRecId"):
        form.fields["recs"].widget.value = text
    shell.run_cell("unrelated = 1")
    assert reads == ["ids"]
    shell.run_cell("ids.append('user-00002')")  # a new length: read again, and the note follows
    assert reads == ["ids", "ids"]
    assert "(3 user ids)" in form.line_view.value
    shell.user_ns["ids"][0] = "user-00009"  # same object, same length: only Fetch sees it
    emulator.reset()
    click_and_wait(form)
    assert reads == ["ids", "ids", "ids"]
    assert sorted(asked(emulator)) == ["user-00001", "user-00002", "user-00009"]

"""The form's equivalent line or cell, pasted into a cell, sends exactly the requests the form's Fetch sent."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amp_profile_magic._grammar import Identity, parse_body, parse_line
from amp_profile_magic._words import LINE_BREAKS, quote
from amp_profile_magic.emulator import Emulator

from .conftest import click_and_wait, fill

API_PATH = "/v1/userprofile"

AWKWARD_IDS = [
    "a b",
    "  ab  ",
    "o'brien",
    'say "hi"',
    'it\'s "both"',
    "a\\b",
    "trailing\\",
    "{x}",
    "$x",
    "$$",
    "{{",
    "}",
    "50%",
    "1,2",
    "#hash",
    "a=b",
    "-o",
    "--users",
    "ends?",
    "semi;",
    "Жé漢",
    "no\u00a0break",
    "tab\there",
]


def sent(emulator: Emulator) -> list[dict[str, str]]:
    """The query parameters of every API request the emulator answered, oldest first."""
    return [entry.params for entry in emulator.requests if entry.path == API_PATH]


def magics_of(shell: Any) -> Any:
    """The shell's AmpProfileMagics."""
    return next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")


def assert_round_trip(shell: Any, emulator: Emulator, form: Any) -> list[dict[str, str]]:
    """Fetch with the form, then run its line as a cell: both must send the same requests. Returns them."""
    # The local store would answer the line's lookup with the form's answer and send nothing to compare.
    magics_of(shell).client.store = "off"
    emulator.reset()
    click_and_wait(form)
    by_form = sent(emulator)
    assert by_form, form.error
    line = form.line
    assert line is not None
    emulator.reset()
    result = shell.run_cell(line)
    assert result.error_in_exec is None, result.error_in_exec
    assert sent(emulator) == by_form, line
    return by_form


@pytest.mark.parametrize("user_id", AWKWARD_IDS)
def test_pasted_line_sends_what_the_form_sent(shell: Any, emulator: Emulator, form: Any, user_id: str) -> None:
    """For ids with quotes, spaces, $, braces, commas, #, = or backslashes, the line's request is the form's."""
    shell.user_ns["x"] = "EXPANDED"
    magics_of(shell).raise_errors = False
    fill(form, who=user_id, cohorts=True)
    assert assert_round_trip(shell, emulator, form) == [{"user_id": user_id, "get_cohort_ids": "true"}]


def test_pasted_line_keeps_list_ids_and_the_out_name(shell: Any, emulator: Emulator, form: Any) -> None:
    """Rec ids with spaces or $ and a device id round-trip through the line, which keeps the -o name."""
    magics_of(shell).raise_errors = False
    fill(form, who="it's me", kind="device", recs="testRecId, a b ,$x", out="res")
    by_form = assert_round_trip(shell, emulator, form)
    assert by_form == [{"device_id": "it's me", "get_recs": "true", "rec_id": "testRecId,a b,$x"}]
    assert form.line == "%ampprofile device='it''s me' recs=testRecId,'a b','$x' -o res"


def test_a_line_break_cannot_be_written_on_a_line(form: Any) -> None:
    """An id with a line break has no equivalent line: the form says so and cannot fetch rather than send another."""
    fill(form, who="a\nb", cohorts=True)
    assert form.line is None
    assert form.error is not None
    assert "line break" in form.error
    assert form.fetch_button.disabled


#: Any text a line can carry: no lone surrogates (not UTF-8), no line breaks, not blank.
LINE_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="".join(sorted(LINE_BREAKS))), min_size=1
).filter(str.strip)


@settings(max_examples=300, deadline=None)
@given(text=LINE_TEXT)
def test_quote_reads_back_as_exactly_the_text(text: str) -> None:
    """quote() of any text a line can carry is read back by the grammar as exactly that text, as one id."""
    for key in ("user", "device"):
        identity = parse_line(f"{key}={quote(text)} cohorts").identity
        assert identity is not None
        assert (identity.user_id if key == "user" else identity.device_id) == text


def _requests_key(params: dict[str, str]) -> str:
    return json.dumps(params, sort_keys=True)


def assert_batch_round_trip(shell: Any, emulator: Emulator, form: Any) -> list[dict[str, str]]:
    """Fetch a batch with the form, then run its cell or line: the same requests (a batch sends them in any order)
    and the same bound frame, failures and summary. Returns the requests."""
    magics_of(shell).client.store = "off"
    emulator.reset()
    click_and_wait(form)
    by_form = sorted(sent(emulator), key=_requests_key)
    from_form = shell.user_ns.pop("res")
    source = form.line
    assert source is not None, form.error
    emulator.reset()
    result = shell.run_cell(source)
    assert result.error_in_exec is None, result.error_in_exec
    assert sorted(sent(emulator), key=_requests_key) == by_form, source
    from_cell = shell.user_ns["res"]
    pd.testing.assert_frame_equal(from_form, from_cell)
    assert from_form.attrs["failures"] == from_cell.attrs["failures"]
    assert from_form.attrs["summary"] == from_cell.attrs["summary"]
    return by_form


@pytest.mark.parametrize("kind", ["user", "device"])
def test_pasted_cell_sends_what_the_form_sent(shell: Any, emulator: Emulator, form: Any, kind: str) -> None:
    """Awkward pasted ids (quotes, spaces, $, braces, #, =) reach the API the same from the form and its cell."""
    known = "12345" if kind == "user" else "ffff-ffff-ffff-ffff"
    ids = [known, *AWKWARD_IDS]
    fill(form, kind=kind, cohorts=True, out="res")
    form.batch.mode.value = "paste"
    form.batch.pasted.value = "\n".join(ids)
    assert form.line is not None
    assert form.line.startswith("%%ampprofile cohorts -o res\n")
    by_form = assert_batch_round_trip(shell, emulator, form)
    assert sorted(params[f"{kind}_id"] for params in by_form) == sorted(ids)


@pytest.mark.parametrize("kind", ["user", "device"])
def test_users_line_sends_what_the_form_sent(shell: Any, emulator: Emulator, form: Any, kind: str) -> None:
    """A variable of ints and awkward strings: the form and its --users/--devices line send the same ids."""
    known = "12345" if kind == "user" else "ffff-ffff-ffff-ffff"
    shell.user_ns["picked"] = pd.Series([known, 42, 7.0, *AWKWARD_IDS], dtype=object)
    fill(form, kind=kind, recs="testRecId", out="res")
    form.batch.mode.value = "variable"
    form.batch.variable.value = "picked"
    assert form.line == f"%ampprofile --{kind}s picked recs=testRecId -o res"
    by_form = assert_batch_round_trip(shell, emulator, form)
    assert sorted(params[f"{kind}_id"] for params in by_form) == sorted([known, "42", "7", *AWKWARD_IDS])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(LINE_TEXT, min_size=1, max_size=5), kind=st.sampled_from(["user", "device"]))
def test_any_pasted_ids_are_what_the_shown_cell_reads(form: Any, ids: list[str], kind: str) -> None:
    """Whatever is pasted (one id a line), the shown cell's body reads back as exactly those ids, nothing sent."""
    fill(form, kind=kind, props=True)
    form.batch.mode.value = "paste"
    form.batch.pasted.value = "\n".join(ids)
    assert form.line is not None, form.error
    body = form.line.split("\n", 1)[1]
    wanted = [Identity(**{f"{kind}_id": text}) for text in ids]
    assert parse_body(body) == wanted
    assert form._identities == wanted

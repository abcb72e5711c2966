"""Property-based fuzzing of the %ampprofile grammar through a real IPython shell.

Any line gives a result or a ``UsageError`` (never another exception), and a line the grammar refuses sends
nothing (the emulator's request counter does not move). Any text in a variable, or quoted on the line, reaches
the server exactly, or is refused for a reason the text itself gives (see ``must_refuse``). Lines are built
from the grammar's own words, values that are valid, nearly valid and junk, option names and namespace
variables, so most examples are near misses.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from amp_profile_magic._words import LINE_BREAKS, quote
from amp_profile_magic.emulator import Emulator

from .conftest import magics_of

KEYWORDS = ("recs", "rec_type", "props", "cohorts", "comps", "propensity", "propensity_type", "user", "device")
OPTIONS = ("-o", "--out", "--users", "--devices", "--sections", "-x", "--", "-", "--users=ids", "-o=")
NAMES = ("ids", "few", "pairs", "text", "frame", "nums", "empty", "mapping", "undefined_name", "ids[:1]", "frame.uid")
VALUES = (
    "12345",
    "user-00001",
    "ffff-ffff-ffff-ffff",
    "testRecId",
    "testRecId,testRecId2",
    "0x10x",
    "0x10x,0x11x",
    "c0mp001",
    "model",
    "random",
    "score",
    "pct",
    "nobody",
    "",
    ",",
    "a,,b",
    " ",
    "{uid}",
    "$uid",
    "{missing}",
)
# No parentheses, operators or '*': a junk token must never evaluate to a call or a huge power via {…} or --users.
JUNK = st.text(alphabet="abcxyz019_-.,=:'\"{}$#%! \tЖé漢\u00a0", min_size=1, max_size=12)
VALUE = st.one_of(st.sampled_from(VALUES), JUNK)
TOKEN = st.one_of(
    st.builds("{}={}".format, st.sampled_from(KEYWORDS), VALUE),
    st.sampled_from(KEYWORDS),
    st.sampled_from(OPTIONS),
    st.sampled_from(NAMES),
    JUNK,
)
WHO = st.sampled_from(
    (
        "user=12345",
        "user=user-00004",
        "device=ffff-ffff-ffff-ffff",
        "user=12345 device=ffff-ffff-ffff-ffff",
        "--users ids",
        "--users few",
        "--devices pairs",
        "--users ids[:1]",
        "--users frame.uid",
        "user={uid}",
    )
)
SECTION = st.sampled_from(
    (
        "recs=testRecId",
        "recs=testRecId,testRecId2 rec_type=random",
        "props",
        "cohorts",
        "comps",
        "comps=c0mp001",
        "propensity=0x10x",
        "propensity=0x10x,0x11x propensity_type=pct",
    )
)
OUT = st.sampled_from(("", "-o res", "--out=res", "-o 1bad"))


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    """A valid line (who, sections, -o), then perhaps one token inserted or one dropped."""
    tokens = [draw(WHO), *draw(st.lists(SECTION, min_size=1, max_size=3, unique=True)), draw(OUT)]
    tokens = " ".join(tokens).split()
    mutation = draw(st.sampled_from(("none", "none", "insert", "drop")))
    if mutation == "insert":
        tokens.insert(draw(st.integers(0, len(tokens))), draw(TOKEN))
    elif mutation == "drop":
        del tokens[draw(st.integers(0, len(tokens) - 1))]
    return " ".join(tokens)


LINE = st.one_of(near_valid(), st.lists(TOKEN, max_size=7).map(" ".join))
BODY_LINE = st.one_of(
    st.sampled_from(("12345", "user-00002", "nobody", "# comment", "", "user=12345 device=ffff-ffff-ffff-ffff")),
    st.builds("{}={}".format, st.sampled_from(("user", "device", "props", "x")), VALUE),
    JUNK,
)
BODY = st.lists(BODY_LINE, max_size=5).map("\n".join)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def _no_store(shell: Any) -> None:
    """The fuzz compares what the server received; the local store would answer a repeated id instead."""
    magics_of(shell).client.store = "off"


def namespace() -> dict[str, Any]:
    """The variables a fuzzed line may name: valid, empty, wrongly typed and partly missing id collections."""
    return {
        "uid": "12345",
        "ids": ["user-00001", "user-00002", "12345"],
        "few": ("12345",),
        "pairs": ["ffff-ffff-ffff-ffff"],
        "text": "12345",
        "frame": pd.DataFrame({"uid": ["12345", "user-00003"]}),
        "nums": [1, 2.0, None],
        "empty": [],
        "mapping": {"12345": 1},
    }


def run_fuzzed(shell: Any, emulator: Emulator, call: Any) -> None:
    """Run ``call`` in the shell; assert it returns or raises UsageError, and that a UsageError sent nothing."""
    shell.user_ns.update(namespace())
    before = emulator.request_count
    try:
        with capture_output():
            call()
    except UsageError as error:
        event("refused")
        message = str(error)
        # IPython itself refuses a %%ampprofile call with an empty body before the magic runs.
        assert message.startswith(("%ampprofile", "%%ampprofile")), message
        assert "\n" not in message.strip(), message
        assert emulator.request_count == before, f"a refused line sent requests: {message}"
    else:
        event("ran, sent requests" if emulator.request_count > before else "ran, sent nothing")


@FUZZ
@given(line=LINE)
def test_any_line_gives_a_result_or_a_usage_error(shell: Any, emulator: Emulator, line: str) -> None:
    """%ampprofile LINE returns or raises UsageError, and a refused line sends no request."""
    magics_of(shell).raise_errors = False  # an API failure shows its panel and returns None
    run_fuzzed(shell, emulator, lambda: shell.run_line_magic("ampprofile", line))


@FUZZ
@given(line=LINE, body=BODY)
def test_any_cell_gives_a_result_or_a_usage_error(shell: Any, emulator: Emulator, line: str, body: str) -> None:
    """%%ampprofile LINE with any body returns or raises UsageError, and a refused cell sends no request."""
    magics_of(shell).raise_errors = False
    run_fuzzed(shell, emulator, lambda: shell.run_cell_magic("ampprofile", line, body))


# -- variable expansion: arbitrary text in a variable is sent exactly, or refused --------------------------------

#: Any text; now and then with a lone surrogate, which has no UTF-8 form and so cannot be sent.
ANY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(max_size=40),
    st.text(max_size=40),
    st.tuples(st.text(max_size=10), st.characters(categories=["Cs"])).map("".join),
)

#: How a variable's value can reach the line, and which query parameter should then carry exactly what text.
PLACES = {
    "user={v} cohorts": ("user_id", "{}"),
    "user=$v cohorts": ("user_id", "{}"),
    "device={v} cohorts": ("device_id", "{}"),
    "user=a-{v}-$v cohorts": ("user_id", "a-{0}-{0}"),
    "user=12345 recs={v}": ("rec_id", "{}"),
    "user=12345 propensity=$v": ("prediction_id", "{}"),
    "user=12345 comps={v}": ("comp_id", "{}"),
    "--users ids cohorts": ("user_id", "{}"),
    "--users ids --devices ids cohorts": ("device_id", "{}"),
}


LIST_PARAMETERS = ("rec_id", "prediction_id", "comp_id")


def must_refuse(parameter: str, text: str) -> bool:
    """Whether ``text`` cannot be sent exactly as ``parameter``: the only reasons the grammar may refuse it."""
    if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        return True  # no UTF-8 form
    if parameter in LIST_PARAMETERS:
        # Commas separate list ids, and the section's list reading drops spaces around an id.
        return "," in text or not text.strip() or text != text.strip()
    return not text.strip()


@FUZZ
@given(text=ANY_TEXT, line=st.sampled_from(sorted(PLACES)))
def test_any_text_in_a_variable_is_sent_exactly_or_refused(
    shell: Any, emulator: Emulator, text: str, line: str
) -> None:
    """Whatever a variable holds, the server receives exactly that text, or a UsageError says why it cannot."""
    magics_of(shell).raise_errors = False
    shell.user_ns.update(v=text, ids=[text])
    parameter, template = PLACES[line]
    refusable = must_refuse(parameter, template.format(text))
    before = emulator.request_count
    try:
        with capture_output():
            shell.run_line_magic("ampprofile", line)
    except UsageError as error:
        event(f"{line}: refused")
        message = str(error)
        assert "\n" not in message
        assert emulator.request_count == before, f"a refused line sent requests: {message}"
        assert refusable, f"{line!r} with v={text!r} was refused though it can be sent exactly: {message}"
        return
    event(f"{line}: sent")
    assert not refusable, f"{line!r} with v={text!r} should have been refused"
    received = [entry.params for entry in emulator.requests[before:] if entry.path == "/v1/userprofile"]
    assert received, f"{line!r} with v={text!r} neither sent nor refused"
    assert received[0][parameter] == template.format(text)
    # Nothing beyond what the line asked for: a value never adds parameters of its own.
    assert set(received[0]) <= {"user_id", "device_id", "get_cohort_ids", "get_recs", "rec_id"} | {
        "get_propensity",
        "prediction_id",
        "propensity_type",
        "get_computations",
        "comp_id",
    }


@FUZZ
@given(text=ANY_TEXT.filter(lambda text: not set(text) & LINE_BREAKS))
def test_any_quoted_literal_is_sent_exactly_or_refused(shell: Any, emulator: Emulator, text: str) -> None:
    """user=<text quoted as the form quotes it> sends exactly ``text``; only unsendable text is refused."""
    magics_of(shell).raise_errors = False
    before = emulator.request_count
    try:
        with capture_output():
            shell.run_line_magic("ampprofile", f"user={quote(text)} cohorts")
    except UsageError as error:
        message = str(error)
        assert emulator.request_count == before, f"a refused line sent requests: {message}"
        assert must_refuse("user_id", text), f"{text!r} was refused though it can be sent exactly: {message}"
        return
    received = [entry.params for entry in emulator.requests[before:] if entry.path == "/v1/userprofile"]
    assert received == [{"user_id": text, "get_cohort_ids": "true"}]

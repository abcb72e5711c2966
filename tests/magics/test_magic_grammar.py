"""The ``%ampprofile`` line grammar through a real shell: what each token sends, and what is refused unsent."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError

from amp_profile_magic.emulator import Emulator

from .helpers import api_requests


def _sent(emulator: Emulator) -> list[dict[str, str]]:
    return [entry.params for entry in api_requests(emulator)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("user=12345 cohorts", {"user_id": "12345", "get_cohort_ids": "true"}),
        ("device=ffff-ffff-ffff-ffff cohorts", {"device_id": "ffff-ffff-ffff-ffff", "get_cohort_ids": "true"}),
        (
            "user=12345 device=ffff-ffff-ffff-ffff cohorts",
            {"user_id": "12345", "device_id": "ffff-ffff-ffff-ffff", "get_cohort_ids": "true"},
        ),
        (
            "user=12345 recs=testRecId,testRecId2",
            {"user_id": "12345", "get_recs": "true", "rec_id": "testRecId,testRecId2"},
        ),
        (
            "user=12345 recs=testRecId rec_type=random",
            {"user_id": "12345", "get_recs": "true", "rec_id": "testRecId", "rec_type": "random"},
        ),
        ("user=12345 props", {"user_id": "12345", "get_amp_props": "true"}),
        ("user=12345 comps", {"user_id": "12345", "get_computations": "true"}),
        (
            "user=12345 comps=c0mp001,t14bqib",
            {"user_id": "12345", "get_computations": "true", "comp_id": "c0mp001,t14bqib"},
        ),
        (
            "user=12345 propensity=0x10x,0x11x",
            {"user_id": "12345", "get_propensity": "true", "prediction_id": "0x10x,0x11x", "propensity_type": "score"},
        ),
        (
            "user=12345 propensity=0x10x propensity_type=pct",
            {"user_id": "12345", "get_propensity": "true", "prediction_id": "0x10x", "propensity_type": "pct"},
        ),
        (
            "user=12345 recs=testRecId cohorts propensity=0x10x",
            {
                "user_id": "12345",
                "get_recs": "true",
                "rec_id": "testRecId",
                "get_cohort_ids": "true",
                "get_propensity": "true",
                "prediction_id": "0x10x",
                "propensity_type": "score",
            },
        ),
    ],
)
def test_each_keyword_sends_its_documented_parameters(
    shell: Any, emulator: Emulator, line: str, expected: dict[str, str]
) -> None:
    """Every keyword turns into exactly the API's documented query parameters, in one request."""
    shell.run_line_magic("ampprofile", line)
    assert _sent(emulator) == [expected]


def test_props_with_comps_costs_two_requests(shell: Any, emulator: Emulator) -> None:
    """props together with comps sends two requests (the API merges both into amp_props); anything else one."""
    shell.run_line_magic("ampprofile", "user=12345 props comps cohorts")
    assert _sent(emulator) == [
        {"user_id": "12345", "get_amp_props": "true", "get_cohort_ids": "true"},
        {"user_id": "12345", "get_computations": "true"},
    ]


@pytest.mark.parametrize("option", ["-o", "--out"])
def test_out_binds_the_result_and_shows_a_summary(shell: Any, run: Any, option: str) -> None:
    """-o NAME / --out NAME binds the DataFrame in the namespace and displays a one-line summary, not the table."""
    done = run(f"%ampprofile user=12345 cohorts {option} member")
    assert done.result.success
    assert done.result.result is None
    frame = shell.user_ns["member"]
    assert list(frame["cohort_id"]) == ["cohort1", "cohort3", "cohort7"]
    assert done.texts() == ["member = DataFrame (3 rows × 3 columns)"]
    assert "cohort3" not in done.everything


def test_assignment_form_returns_the_frame(shell: Any, run: Any) -> None:
    """``df = %ampprofile ...`` assigns the DataFrame, as any line magic can."""
    done = run("df = %ampprofile user=12345 props")
    assert done.result.success, done.everything
    frame = shell.user_ns["df"]
    assert frame.loc[0, "number_property"] == 12


def test_braces_and_dollar_expand_from_the_namespace(shell: Any, run: Any, emulator: Emulator) -> None:
    """{expr} and $name on the line are expanded from the user's namespace, each into one value."""
    shell.user_ns.update(uid="12345", dev="ffff-ffff-ffff-ffff", pred="0x11x")
    assert run("a = %ampprofile user={uid} device=$dev propensity={pred}").result.success
    assert run("b = %ampprofile user=$uid recs={'testRecId'}").result.success
    assert _sent(emulator) == [
        {
            "user_id": "12345",
            "device_id": "ffff-ffff-ffff-ffff",
            "get_propensity": "true",
            "prediction_id": "0x11x",
            "propensity_type": "score",
        },
        {"user_id": "12345", "get_recs": "true", "rec_id": "testRecId"},
    ]
    assert shell.user_ns["a"].loc[0, "propensity"] == pytest.approx(0.612345)


@pytest.mark.parametrize(
    "value",
    [
        ["12345", "user-00001", "user-00002"],
        ("12345", "user-00001", "user-00002"),
        pd.Series(["12345", "user-00001", "user-00002"]),
        pd.Index(["12345", "user-00001", "user-00002"]),
    ],
    ids=["list", "tuple", "Series", "Index"],
)
def test_users_batch_from_a_namespace_value(shell: Any, emulator: Emulator, value: object) -> None:
    """--users VAR takes ids from a list, tuple, Series or Index and looks each one up."""
    shell.user_ns["ids"] = value
    frame = shell.run_line_magic("ampprofile", "--users ids cohorts")
    assert sorted(entry["user_id"] for entry in _sent(emulator)) == ["12345", "user-00001", "user-00002"]
    assert set(frame["user_id"]) <= {"12345", "user-00001", "user-00002"}
    assert "12345" in set(frame["user_id"])
    assert frame.attrs["failures"] == []


@pytest.mark.parametrize("expression", ["people.user_id", "people['user_id']", "\"people['user_id']\""])
def test_users_batch_from_a_dataframe_column(shell: Any, emulator: Emulator, expression: str) -> None:
    """--users takes a DataFrame column written as people.user_id or people['user_id'] (quoted or not)."""
    shell.user_ns["people"] = pd.DataFrame({"user_id": ["12345", "user-00003"], "score": [1, 2]})
    frame = shell.run_line_magic("ampprofile", f"--users {expression} props")
    assert list(frame["user_id"]) == ["12345", "user-00003"]
    assert sorted(entry["user_id"] for entry in _sent(emulator)) == ["12345", "user-00003"]


def test_devices_pair_with_users_position_by_position(shell: Any, emulator: Emulator) -> None:
    """--users A --devices B sends user i with device i; --devices alone sends device ids only."""
    shell.user_ns.update(us=["12345", "user-00001"], ds=["ffff-ffff-ffff-ffff", "dev-x"])
    shell.run_line_magic("ampprofile", "--users us --devices ds cohorts")
    pairs = sorted((entry["user_id"], entry["device_id"]) for entry in _sent(emulator))
    assert pairs == [("12345", "ffff-ffff-ffff-ffff"), ("user-00001", "dev-x")]
    emulator.reset()
    shell.user_ns["only"] = ["ffff-ffff-ffff-ffff"]
    frame = shell.run_line_magic("ampprofile", "--devices only cohorts")
    assert _sent(emulator) == [{"device_id": "ffff-ffff-ffff-ffff", "get_cohort_ids": "true"}]
    assert list(frame["cohort_id"]) == ["cohort1", "cohort3", "cohort7"]


BAD_LINES = [
    ("user=12345 cohort", "'cohort'"),
    ("user=12345 bogus=1 cohorts", "'bogus'"),
    ("user=12345", "nothing to fetch"),
    ("cohorts", "user=ID"),
    ("user= cohorts", "user="),
    ("user=12345 recs", "recs="),
    ("user=12345 recs=a,,b", "recs=a,,b"),
    ("user=12345 recs=a rec_type=best", "rec_type=best"),
    ("user=12345 rec_type=model cohorts", "rec_type"),
    ("user=12345 propensity=0x10x propensity_type=rank", "propensity_type=rank"),
    ("user=12345 propensity_type=pct cohorts", "propensity_type"),
    ("user=12345 props=yes", "props=yes"),
    ("user=12345 cohorts=1", "cohorts=1"),
    ("user=12345 cohorts -o 1x", "1x"),
    ("user=12345 cohorts -o class", "class"),
    ("user=12345 cohorts -o", "-o"),
    ("user=12345 cohorts --output x", "--output"),
    ("user=12345 cohorts -o get_ipython", "-o 'get_ipython': the kernel needs that name"),
    ("user=12345 cohorts -o __builtins__", "-o '__builtins__': the kernel needs that name"),
    ("user=12345 cohorts -o Out", "the kernel needs that name"),
    ("user=12345 cohorts -o _oh", "-o '_oh': IPython keeps its input and output history in that name"),
    ("user=12345 cohorts -o _dh", "IPython keeps its input and output history"),
    ("user=12345 cohorts -o _i3", "IPython keeps its input and output history"),
    ("user=12345 cohorts -o _", "IPython keeps its input and output history"),
    ("user=12345 cohorts cohorts", "'cohorts' given twice; give it once"),
    ("user=12345 user=1 cohorts", "user= given twice: one lookup per line; several ids go in --users"),
    ("user=12345 recs=a recs=b", "'recs' given twice; give it once, with several ids separated by commas: recs=a,b"),
    ("user=12345 recs=a rec_type=model rec_type=random", "'rec_type' given twice; give it once"),
    ("=12345 cohorts", "=12345: a keyword is missing before the =, e.g. user=12345"),
    ("user=12345 COHORTS", "keywords are lower case: 'cohorts'"),
    ("user=\u200b12345 cohorts", "holds U+200B, an invisible character"),
    ("user=12345\ufeff cohorts", "holds U+FEFF, an invisible character"),
    ("user=1,2 cohorts", "comma"),
    ("user='12345 cohorts", "quote"),
    ("user=12345 --users ids cohorts", "not both"),
]


@pytest.mark.parametrize(("line", "named"), BAD_LINES, ids=[line for line, _ in BAD_LINES])
def test_bad_lines_raise_usage_error_naming_the_token_and_send_nothing(
    shell: Any, emulator: Emulator, line: str, named: str
) -> None:
    """Unknown keys, missing ids and bad values raise one-line UsageErrors naming the token; nothing is sent."""
    shell.user_ns["ids"] = ["12345"]
    with pytest.raises(UsageError) as raised:
        shell.run_line_magic("ampprofile", line)
    message = str(raised.value)
    assert named in message
    assert "\n" not in message
    assert api_requests(emulator) == []


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("12345", "is a string"),
        (pd.DataFrame({"user_id": ["12345"]}), "is a DataFrame"),
        (["12345", float("nan")], "ids: the id at position 1 is missing"),
        (pd.Series(["12345", None]), "ids: the id at position 1 is missing"),
        ([], "is empty"),
        ({"a": 1}, "is a mapping"),
        (42, "is an int"),
        (["12345", 3.5], "position 1 = 3.5 is not a whole number"),
        (np.array("1"), "ids could not be read as a list of ids: TypeError: iteration over a 0-d array"),
        ((1 // 0 for _ in range(1)), "ids could not be read as a list of ids: ZeroDivisionError"),
        ([Fraction(10**400)], "position 0 = Fraction(1000"),
    ],
    ids=["str", "DataFrame", "NaN", "None-in-Series", "empty", "dict", "int", "float", "0-d", "raising", "huge"],
)
def test_unusable_batches_are_refused_before_sending(shell: Any, emulator: Emulator, value: object, named: str) -> None:
    """A str, a whole DataFrame, NaN/None ids, an empty list or a mapping is a UsageError; nothing is sent."""
    shell.user_ns["ids"] = value
    with pytest.raises(UsageError) as raised:
        shell.run_line_magic("ampprofile", "--users ids cohorts")
    assert named in str(raised.value)
    assert api_requests(emulator) == []


def test_undefined_variable_and_length_mismatch_are_usage_errors(shell: Any, emulator: Emulator) -> None:
    """--users of an undefined name, or --users/--devices of different lengths, fail before any request."""
    with pytest.raises(UsageError, match="--users nowhere: NameError"):
        shell.run_line_magic("ampprofile", "--users nowhere cohorts")
    shell.user_ns.update(us=["a", "b"], ds=["x"])
    with pytest.raises(UsageError, match="--users has 2 ids but --devices has 1"):
        shell.run_line_magic("ampprofile", "--users us --devices ds cohorts")
    assert api_requests(emulator) == []


def test_run_cell_reports_usage_errors_without_a_traceback(run: Any, emulator: Emulator) -> None:
    """Through run_cell (as in a notebook) a bad line ends the cell in error with one UsageError line."""
    done = run("%ampprofile user=12345 cohrts")
    assert done.result.success is False
    assert isinstance(done.result.error_in_exec, UsageError)
    assert "did you mean 'cohorts'?" in done.stderr
    assert "Traceback" not in done.everything
    assert api_requests(emulator) == []

"""One bad profile never loses the batch: each unreadable value fails its user only, naming the field and the reason.

Every test drives the real magic in a real IPython shell against a scripted API on loopback, which answers every
user with a well-formed profile except the one given a crafted body.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from amp_profile_magic._result import FAILURE_COLUMNS

from .conftest import GOOD_LAST_UPDATED, Answer, ScriptedApi, good_user_data, user_data_answer

BATCH = [f"user-{index:03d}" for index in range(200)]
BAD = "user-117"


def rec(**overrides: Any) -> dict[str, Any]:
    """A well-formed recommendation ``r1`` with some fields replaced."""
    return {
        "rec_id": "r1",
        "child_rec_id": "r1",
        "items": ["cookie"],
        "is_control": False,
        "recommendation_source": "model",
        "last_updated": GOOD_LAST_UPDATED,
        **overrides,
    }


def body_with(**fields: Any) -> Answer:
    """A 200 whose userData is well-formed for every section except ``fields``."""
    data = good_user_data(
        {
            "user_id": BAD,
            "get_recs": "true",
            "rec_id": "r1",
            "get_amp_props": "true",
            "get_cohort_ids": "true",
            "get_propensity": "true",
            "prediction_id": "p1",
        }
    )
    return user_data_answer({**data, **fields})


DEEP = "[" * 100_000 + "]" * 100_000

# (sections asked, the crafted answer, the field named, words of the reason)
CASES = {
    "last_updated NaN": ("recs=r1", body_with(recommendations=[rec(last_updated=float("nan"))]), "is NaN"),
    "last_updated Infinity": ("recs=r1", body_with(recommendations=[rec(last_updated=float("inf"))]), "Infinity"),
    "last_updated 1e300": ("recs=r1", body_with(recommendations=[rec(last_updated=1e300)]), "outside the timestamps"),
    "last_updated string": ("recs=r1", body_with(recommendations=[rec(last_updated="yesterday")]), "'yesterday'"),
    "last_updated true": ("recs=r1", body_with(recommendations=[rec(last_updated=True)]), "is true, not epoch"),
    "is_control yes": ("recs=r1", body_with(recommendations=[rec(is_control="yes")]), "'yes', not true, false"),
    "is_control 2": ("recs=r1", body_with(recommendations=[rec(is_control=2)]), "is 2, not true, false"),
    "item null": ("recs=r1", body_with(recommendations=[rec(items=["a", None])]), "is null, not a string"),
    "huge propensity": (
        "propensity=p1",
        Answer(200, json.dumps({"userData": {**good_user_data({}), "propensity": 10**400}}).encode()),
        "is an integer of 401 digits, not a propensity",
    ),
    "propensity out of range": (
        "propensity=p1",
        body_with(propensities=[{"pred_id": "p1", "prop": 1e200}]),
        "not a propensity",
    ),
    "user_id an object": ("cohorts", body_with(user_id={"id": 1}), "is an object, not a string or integer id"),
    "property NaN": ("cohorts", body_with(amp_props={"score": float("nan")}), "NaN, which is not a JSON number"),
    "property too deep": (
        "cohorts",
        body_with(amp_props={"tree": json.loads("[" * 40 + "]" * 40)}),
        "nested more than",
    ),
}
FIELDS = {
    "last_updated NaN": "recommendations[0].last_updated",
    "last_updated Infinity": "recommendations[0].last_updated",
    "last_updated 1e300": "recommendations[0].last_updated",
    "last_updated string": "recommendations[0].last_updated",
    "last_updated true": "recommendations[0].last_updated",
    "is_control yes": "recommendations[0].is_control",
    "is_control 2": "recommendations[0].is_control",
    "item null": "recommendations[0].items[1]",
    "huge propensity": "propensity",
    "propensity out of range": "propensities[0].prop",
    "user_id an object": "user_id",
    "property NaN": "amp_props['score']",
    "property too deep": "amp_props['tree']",
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_bad_value_fails_only_its_user_in_a_200_user_batch(
    case: str, run: Any, api_shell: Any, scripted_api: ScriptedApi
) -> None:
    """A 200-user batch with one unreadable value binds -o with 199 users' rows and one failure naming field+reason."""
    sections, answer, reason = CASES[case]
    scripted_api.answers[BAD] = answer
    api_shell.user_ns["ids"] = BATCH
    done = run(f"%ampprofile --users ids {sections} props -o res")
    assert done.result.error_in_exec is None, done.everything
    res = api_shell.user_ns["res"]
    assert list(res.failures.columns) == list(FAILURE_COLUMNS)
    assert len(res.failures) == 1, res.failures.to_string()
    failure = res.failures.iloc[0]
    assert (failure["user_id"], failure["kind"], failure["status"]) == (BAD, "malformed_response", 200)
    assert failure["field"] == FIELDS[case]
    assert f"{FIELDS[case]} " in failure["message"]
    assert reason in failure["message"]
    assert list(res.props["user_id"]) == [user for user in BATCH if user != BAD]
    assert "199 profiles · 1 failed: malformed_response ×1" in done.texts()


def test_json_nested_100000_deep_fails_only_its_user(run: Any, api_shell: Any, scripted_api: ScriptedApi) -> None:
    """A body nested 100,000 deep is a malformed answer for that user (no RecursionError), the rest is bound."""
    scripted_api.answers[BAD] = Answer(200, ('{"userData": {"amp_props": {"x": ' + DEEP + "}}}").encode())
    api_shell.user_ns["ids"] = BATCH
    done = run("%ampprofile --users ids props -o res")
    assert done.result.error_in_exec is None, done.everything
    frame = api_shell.user_ns["res"]
    assert len(frame) == 199
    [failure] = frame.attrs["failures"]
    assert failure["user_id"] == BAD
    assert failure["kind"] == "malformed_response"
    assert "nested too deeply" in failure["message"]


def test_single_bad_lookup_shows_the_panel_and_fails_the_cell(run: Any, scripted_api: ScriptedApi) -> None:
    """A single lookup whose answer is unreadable shows the error panel with the field, and the cell ends in error."""
    scripted_api.answers[BAD] = body_with(recommendations=[rec(last_updated=float("nan"))])
    done = run(f"%ampprofile user={BAD} recs=r1")
    assert done.result.error_in_exec is not None
    assert type(done.result.error_in_exec).__name__ == "CellFailed"
    panel = done.texts()[0]
    assert panel.startswith("✖ Unreadable response (HTTP 200)")
    assert "recommendations[0].last_updated is NaN" in panel
    assert "Traceback" not in done.everything


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1608670720, "2020-12-22 20:58:40+00:00"),
        (1.60867072e9, "2020-12-22 20:58:40+00:00"),
        (1608670720.25, "2020-12-22 20:58:40.250000+00:00"),
        (-86400, "1969-12-31 00:00:00+00:00"),
        ("2020-12-22T20:58:40Z", "2020-12-22 20:58:40+00:00"),
        ("2020-12-22T21:58:40+01:00", "2020-12-22 20:58:40+00:00"),
        ("2020-12-22 20:58:40", "2020-12-22 20:58:40+00:00"),
        (None, None),
    ],
)
def test_last_updated_parses_epoch_numbers_and_iso_strings(
    value: object, expected: str | None, run: Any, api_shell: Any, scripted_api: ScriptedApi
) -> None:
    """Epoch seconds (int, float, exponent form) and ISO 8601 strings become the same UTC time; null stays NaT."""
    scripted_api.answers[BAD] = body_with(recommendations=[rec(last_updated=value)])
    done = run(f"%ampprofile user={BAD} recs=r1 -o recs")
    assert done.result.error_in_exec is None, done.everything
    column = api_shell.user_ns["recs"]["last_updated"]
    assert str(column.dtype) == "datetime64[ns, UTC]"
    if expected is None:
        assert column.isna().all()
    else:
        assert (column == pd.Timestamp(expected)).all()


@pytest.mark.parametrize("value", [-1e11, 1e11, "0001-01-01T00:00:00+05:00", "9999-12-31", "1608670720", [1608670720]])
def test_last_updated_outside_pandas_range_or_unparseable_is_reported(
    value: object, run: Any, api_shell: Any, scripted_api: ScriptedApi
) -> None:
    """A time pandas cannot hold, a numeric string or a list is a failure naming last_updated, never NaT or a wrap."""
    scripted_api.answers[BAD] = body_with(recommendations=[rec(last_updated=value)])
    api_shell.user_ns["ids"] = [BAD, "fine"]
    done = run("%ampprofile --users ids recs=r1 -o recs")
    assert done.result.error_in_exec is None, done.everything
    frame = api_shell.user_ns["recs"]
    assert set(frame["user_id"]) == {"fine"}
    [failure] = frame.attrs["failures"]
    assert failure["field"] == "recommendations[0].last_updated"


def test_rows_keep_the_asked_identity_where_the_response_omits_it(
    run: Any, api_shell: Any, scripted_api: ScriptedApi
) -> None:
    """The response's ids win; an id it leaves null, empty or absent is the query's, so each row traces to its input."""
    scripted_api.answers["u-null"] = user_data_answer({"user_id": None, "device_id": None, "cohort_ids": ["c1"]})
    scripted_api.answers["u-absent"] = user_data_answer({"cohort_ids": ["c2"]})
    scripted_api.answers["u-empty"] = user_data_answer({"user_id": "", "device_id": "d-from-api", "cohort_ids": ["c3"]})
    scripted_api.answers["dev-only"] = user_data_answer({"user_id": "u-from-api", "cohort_ids": ["c4"]})
    scripted_api.answers["u-int"] = user_data_answer({"user_id": 42, "cohort_ids": [7]})
    done = run("%%ampprofile cohorts -o res\nuser=u-null\nuser=u-absent\nuser=u-empty\ndevice=dev-only\nuser=u-int")
    assert done.result.error_in_exec is None, done.everything
    frame = api_shell.user_ns["res"]
    assert frame.attrs["failures"] == []
    rows = [
        tuple(None if pd.isna(value) else value for value in row)
        for row in frame[["user_id", "device_id", "cohort_id"]].itertuples(index=False, name=None)
    ]
    assert rows == [
        ("u-null", None, "c1"),
        ("u-absent", None, "c2"),
        ("u-empty", "d-from-api", "c3"),
        ("u-from-api", "dev-only", "c4"),
        ("42", None, "7"),
    ]


def test_property_named_like_an_identity_column_keeps_every_value(
    run: Any, api_shell: Any, scripted_api: ScriptedApi
) -> None:
    """Properties named user_id, device_id or prop:user_id each get their own column; none overwrites another."""
    props = {"user_id": "x", "prop:user_id": "y", "device_id": "z", "prop_user_id": "w", "plan": "pro"}
    scripted_api.answers["u1"] = user_data_answer({"user_id": "u1", "amp_props": props})
    done = run("%ampprofile user=u1 props -o props")
    assert done.result.error_in_exec is None, done.everything
    frame = api_shell.user_ns["props"]
    assert list(frame.columns) == [
        "user_id",
        "device_id",
        "prop:user_id",
        "prop:prop:user_id",
        "prop:device_id",
        "prop_user_id",
        "plan",
    ]
    assert frame.iloc[0].tolist() == ["u1", None, "x", "y", "z", "w", "pro"]


def test_computation_named_like_an_identity_column_keeps_every_value(
    run: Any, api_shell: Any, scripted_api: ScriptedApi
) -> None:
    """Computations use the same collision-free naming, with the comp: prefix."""
    comps = {"user_id": "5", "comp:user_id": "6", "device_id": "7"}
    scripted_api.answers["u1"] = user_data_answer({"user_id": "u1", "amp_props": comps})
    done = run("%ampprofile user=u1 comps -o comps")
    assert done.result.error_in_exec is None, done.everything
    frame = api_shell.user_ns["comps"]
    assert list(frame.columns) == ["user_id", "device_id", "comp:user_id", "comp:comp:user_id", "comp:device_id"]
    assert frame.iloc[0].tolist() == ["u1", None, 5.0, 6.0, 7.0]


def test_computations_turn_numeric_strings_into_numbers_and_nothing_else(
    run: Any, api_shell: Any, scripted_api: ScriptedApi
) -> None:
    """'3' becomes 3.0; 'nan', '1e400', true, objects and integers a float cannot hold exactly stay as they came
    (never NaN, inf, 1.0 or a neighbouring number)."""
    wide = {"order": "12345678901234567890123", "near": str(2**53 + 1), "exact": 2**64 + 1}
    scripted_api.answers["a"] = user_data_answer(
        {"user_id": "a", "amp_props": {"n": "3", "t": "nan", "big": "1e400", "flag": True, "obj": {"k": 1}, **wide}}
    )
    scripted_api.answers["b"] = user_data_answer(
        {
            "user_id": "b",
            "amp_props": {"n": "4.5", "t": "1", "big": "2", "flag": "1", "obj": "2", "order": "7", "near": "1.5"},
        }
    )
    api_shell.user_ns["ids"] = ["a", "b"]
    done = run("%ampprofile --users ids comps -o comps")
    assert done.result.error_in_exec is None, done.everything
    frame = api_shell.user_ns["comps"]
    assert frame["n"].tolist() == [3.0, 4.5]
    assert frame["t"].tolist() == ["nan", "1"]
    assert frame["big"].tolist() == ["1e400", "2"]
    assert frame["flag"].tolist() == [True, "1"]
    assert frame["obj"].tolist() == [{"k": 1}, "2"]
    assert frame["order"].tolist() == ["12345678901234567890123", "7"]
    assert frame["near"].tolist() == [str(2**53 + 1), "1.5"]
    assert frame["exact"].tolist()[0] == 2**64 + 1


def test_properties_keep_integers_too_large_for_int64(run: Any, api_shell: Any, scripted_api: ScriptedApi) -> None:
    """An integer property beyond int64, beside a missing one, stays an exact Python int (no OverflowError)."""
    scripted_api.answers["a"] = user_data_answer({"user_id": "a", "amp_props": {"big": 10**30, "small": 1}})
    scripted_api.answers["b"] = user_data_answer({"user_id": "b", "amp_props": {}})
    api_shell.user_ns["ids"] = ["a", "b"]
    done = run("%ampprofile --users ids props -o props")
    assert done.result.error_in_exec is None, done.everything
    frame = api_shell.user_ns["props"]
    assert frame["big"].tolist() == [10**30, None]
    assert str(frame["small"].dtype) == "Int64"


def test_a_batch_where_every_user_has_a_bad_value_is_still_a_result(
    run: Any, api_shell: Any, scripted_api: ScriptedApi
) -> None:
    """When each user of a batch has an unreadable value of its own, the cell still binds -o with every user's
    failure and field (each is about its user, like an unknown user), instead of failing with the first one."""
    bad = {
        "nan": rec(last_updated=float("nan")),
        "control": rec(is_control="yes"),
        "old": rec(last_updated="1500-01-01T00:00:00"),
    }
    for user, recommendation in bad.items():
        scripted_api.answers[user] = body_with(user_id=user, recommendations=[recommendation])
    api_shell.user_ns["ids"] = list(bad)
    done = run("%ampprofile --users ids recs=r1 -o res")
    assert done.result.error_in_exec is None, done.everything
    failures = api_shell.user_ns["res"].attrs["failures"]
    assert [failure["user_id"] for failure in failures] == list(bad)
    assert {failure["kind"] for failure in failures} == {"malformed_response"}
    assert all(failure["field"].startswith("recommendations[0].") for failure in failures)
    assert "0 profiles · 3 failed: malformed_response ×3" in done.texts()

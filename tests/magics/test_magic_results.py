"""Result shapes: each section's exact columns, dtypes and the documented values for user 12345."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from amp_profile_magic._models import Profile
from amp_profile_magic._result import ProfileResult
from amp_profile_magic.sections.props import PropsSection

DOC_ITEMS = ["cookie", "cracker", "chocolate milk", "donut", "croissant"]
DOC_ITEMS_2 = ["bulgogi", "bibimbap", "kimchi", "croffles", "samgyeopsal"]


def _text(series: pd.Series) -> bool:
    """Whether every non-missing value is a str (pandas may store text as str or object)."""
    return all(isinstance(value, str) for value in series.dropna())


def test_recs_frame_matches_the_documented_example(shell: Any) -> None:
    """recs=testRecId,testRecId2 gives one row per item, 1-based int rank, boolean is_control, UTC timestamps."""
    frame = shell.run_line_magic("ampprofile", "user=12345 recs=testRecId,testRecId2")
    assert list(frame.columns) == [
        "user_id",
        "device_id",
        "rec_id",
        "child_rec_id",
        "rank",
        "item",
        "is_control",
        "recommendation_source",
        "last_updated",
    ]
    assert str(frame["rank"].dtype) == "int64"
    assert str(frame["is_control"].dtype) == "boolean"
    assert isinstance(frame["last_updated"].dtype, pd.DatetimeTZDtype)
    assert str(frame["last_updated"].dt.tz) == "UTC"
    for column in ("user_id", "device_id", "rec_id", "child_rec_id", "item", "recommendation_source"):
        assert _text(frame[column]), column
    assert list(frame["item"]) == DOC_ITEMS + DOC_ITEMS_2
    assert list(frame["rank"]) == [1, 2, 3, 4, 5] * 2
    assert list(frame["rec_id"]) == ["testRecId"] * 5 + ["testRecId2"] * 5
    assert list(frame["child_rec_id"]) == ["testRecId"] * 5 + ["testRecId2"] * 5
    assert list(frame["recommendation_source"]) == ["model"] * 5 + ["model2"] * 5
    assert not frame["is_control"].any()
    assert set(frame["user_id"]) == {"12345"}
    assert set(frame["device_id"]) == {"ffff-ffff-ffff-ffff"}
    assert frame.loc[0, "last_updated"] == pd.Timestamp(1608670720, unit="s", tz="UTC")
    assert frame.loc[5, "last_updated"] == pd.Timestamp(1608670658, unit="s", tz="UTC")


def test_props_frame_keeps_native_types(shell: Any) -> None:
    """props gives one row per profile with the documented properties as int, bool and str."""
    frame = shell.run_line_magic("ampprofile", "user=12345 props")
    assert list(frame.columns) == [
        "user_id",
        "device_id",
        "library",
        "first_used",
        "last_used",
        "number_property",
        "boolean_property",
    ]
    assert len(frame) == 1
    row = frame.iloc[0]
    assert (row["library"], row["first_used"], row["last_used"]) == ("http/1.0", "2020-01-13", "2021-03-24")
    assert str(frame["number_property"].dtype) == "int64"
    assert row["number_property"] == 12
    assert str(frame["boolean_property"].dtype) == "bool"
    assert bool(row["boolean_property"]) is True


def test_props_batch_keeps_ints_and_bools_when_some_profiles_lack_them() -> None:
    """A property missing for some profiles stays a (nullable) int or bool column instead of turning float."""
    profiles = [
        Profile("a", None, properties={"visits": 12, "paid": True, "name": "x", "ratio": 0.5}),
        Profile("b", None, properties={"name": None}),
        Profile("c", None, properties={"visits": 3, "paid": False, "ratio": 1}),
    ]
    frame = PropsSection().frame(profiles)
    assert list(frame.columns) == ["user_id", "device_id", "visits", "paid", "name", "ratio"]
    assert str(frame["visits"].dtype) == "Int64"
    assert frame["visits"].tolist() == [12, pd.NA, 3]
    assert str(frame["paid"].dtype) == "boolean"
    assert frame["paid"].tolist() == [True, pd.NA, False]
    assert frame.loc[0, "name"] == "x"
    assert pd.isna(frame.loc[1, "name"])
    assert str(frame["ratio"].dtype) == "float64"


def test_cohorts_frame_one_row_per_membership(shell: Any) -> None:
    """cohorts gives user_id, device_id, cohort_id with one row per documented cohort."""
    frame = shell.run_line_magic("ampprofile", "user=12345 cohorts")
    assert list(frame.columns) == ["user_id", "device_id", "cohort_id"]
    assert frame.values.tolist() == [
        ["12345", "ffff-ffff-ffff-ffff", "cohort1"],
        ["12345", "ffff-ffff-ffff-ffff", "cohort3"],
        ["12345", "ffff-ffff-ffff-ffff", "cohort7"],
    ]
    assert all(_text(frame[column]) for column in frame.columns)


def test_cohorts_frame_skips_profiles_without_cohorts() -> None:
    """A profile that holds no cohort ids (not asked, or none) adds no row; the others keep theirs, in order."""
    from amp_profile_magic.sections.cohorts import CohortsSection

    profiles = [Profile("a", None), Profile("b", "d", cohort_ids=("c1", "c2")), Profile("c", None, cohort_ids=())]
    frame = CohortsSection().frame(profiles)
    assert frame.values.tolist() == [["b", "d", "c1"], ["b", "d", "c2"]]
    assert CohortsSection().frame([]).columns.tolist() == ["user_id", "device_id", "cohort_id"]


def test_comps_frame_turns_numeric_strings_into_numbers(shell: Any) -> None:
    """comps gives the documented computations as numbers: "5000000.0" → 5000000.0 and "3" → 3."""
    frame = shell.run_line_magic("ampprofile", "user=12345 comps")
    assert list(frame.columns) == ["user_id", "device_id", "computed-prop-1", "computed-prop-2"]
    assert str(frame["computed-prop-1"].dtype) == "float64"
    assert frame.loc[0, "computed-prop-1"] == 5000000.0
    assert pd.api.types.is_integer_dtype(frame["computed-prop-2"])
    assert frame.loc[0, "computed-prop-2"] == 3
    only = shell.run_line_magic("ampprofile", "user=12345 comps=t14bqib")
    assert list(only.columns) == ["user_id", "device_id", "computed-prop-2"]
    assert only.loc[0, "computed-prop-2"] == 3


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("propensity=0x10x", [("0x10x", "score", 0.500001)]),
        ("propensity=0x10x propensity_type=pct", [("0x10x", "pct", 83.0)]),
        ("propensity=0x10x,0x11x propensity_type=pct", [("0x10x", "pct", 83.0), ("0x11x", "pct", 85.0)]),
    ],
)
def test_propensity_frame_matches_the_documented_examples(
    shell: Any, line: str, expected: list[tuple[str, str, float]]
) -> None:
    """propensity gives one float row per prediction, typed as requested (score by default)."""
    frame = shell.run_line_magic("ampprofile", f"user=12345 {line}")
    assert list(frame.columns) == ["user_id", "device_id", "prediction_id", "propensity_type", "propensity"]
    assert str(frame["propensity"].dtype) == "float64"
    rows = list(zip(frame["prediction_id"], frame["propensity_type"], frame["propensity"], strict=True))
    assert [(pid, kind) for pid, kind, _ in rows] == [(pid, kind) for pid, kind, _ in expected]
    assert [value for *_, value in rows] == pytest.approx([value for *_, value in expected])
    assert set(frame["user_id"]) == {"12345"}


def test_several_sections_give_a_mapping_with_attribute_access(shell: Any) -> None:
    """Several sections give a ProfileResult: res['recs'] is res.recs, sections in documented order."""
    res = shell.run_line_magic("ampprofile", "user=12345 propensity=0x10x cohorts recs=testRecId props comps")
    assert isinstance(res, ProfileResult)
    assert list(res) == ["recs", "props", "cohorts", "comps", "propensity"]
    assert res["recs"] is res.recs
    assert list(res.recs["item"]) == DOC_ITEMS
    assert res.props.loc[0, "number_property"] == 12
    # Asked together, props and comps come from separate requests and stay apart.
    assert "computed-prop-1" not in res.props.columns
    assert "library" not in res.comps.columns
    assert res.propensity.loc[0, "propensity"] == pytest.approx(0.500001)
    assert res.failures.empty
    with pytest.raises(AttributeError, match="no section 'nope'"):
        _ = res.nope


def test_profile_result_html_shows_each_table(shell: Any) -> None:
    """The ProfileResult's HTML repr has the summary and one titled table per section."""
    res = shell.run_line_magic("ampprofile", "user=12345 recs=testRecId cohorts")
    markup = res._repr_html_()
    assert "1 profile" in markup
    assert markup.count("<table") == 2
    for text in (">recs <", ">cohorts <", "croissant", "cohort7"):
        assert text in markup


def test_display_max_rows_limits_the_html_tables(shell: Any, magics: Any) -> None:
    """With AmpProfileMagics.display_max_rows = 4, each table in the HTML shows at most 4 rows."""
    magics.display_max_rows = 4
    shell.user_ns["ids"] = [f"user-{n:05d}" for n in range(6)]
    res = shell.run_line_magic("ampprofile", "--users ids recs=r1 cohorts")
    assert len(res.recs) == 60
    markup = res._repr_html_()
    recs_table = markup.split("<table")[1]
    assert recs_table.count("<tr>") <= 4 + 2  # header row, four data rows and the "..." row
    assert "item-" in recs_table
    assert "60 rows" in markup


def test_displayed_single_frame_goes_to_out(run: Any) -> None:
    """A one-section line returns its DataFrame, so the notebook shows it as the cell's Out."""
    done = run("%ampprofile user=12345 cohorts")
    assert done.result.success
    assert isinstance(done.result.result, pd.DataFrame)
    assert "cohort7" in done.stdout  # printed as Out[n] by the display hook

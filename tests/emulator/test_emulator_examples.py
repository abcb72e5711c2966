"""The documented examples of the User Profile API, answered verbatim by the emulator."""

from __future__ import annotations

from collections.abc import Callable

import httpx

GetProfile = Callable[..., httpx.Response]

DOC_ITEMS = ["cookie", "cracker", "chocolate milk", "donut", "croissant"]
KOREAN_ITEMS = ["bulgogi", "bibimbap", "kimchi", "croffles", "samgyeopsal"]
DOC_PROPS = {
    "library": "http/1.0",
    "first_used": "2020-01-13",
    "last_used": "2021-03-24",
    "number_property": 12,
    "boolean_property": True,
}


def user_data(**sections: object) -> dict[str, object]:
    """The documented envelope for user 12345 with every section null unless given."""
    data: dict[str, object] = {
        "recommendations": None,
        "user_id": "12345",
        "device_id": "ffff-ffff-ffff-ffff",
        "amp_props": None,
        "cohort_ids": None,
    }
    data.update(sections)
    return {"userData": data}


def rec(rec_id: str, items: list[str], source: str, last_updated: int) -> dict[str, object]:
    return {
        "rec_id": rec_id,
        "child_rec_id": rec_id,
        "items": items,
        "is_control": False,
        "recommendation_source": source,
        "last_updated": last_updated,
    }


def test_single_recommendation(get_profile: GetProfile) -> None:
    """get_recs with rec_id=testRecId answers the documented items, control flag, source and timestamp."""
    response = get_profile(user_id="12345", get_recs="true", rec_id="testRecId")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == user_data(recommendations=[rec("testRecId", DOC_ITEMS, "model", 1608670720)])


def test_recommendation_98765(get_profile: GetProfile) -> None:
    """rec_id 98765 answers the documented single-recommendation response body exactly."""
    response = get_profile(user_id="12345", get_recs="true", rec_id="98765")
    assert response.json() == user_data(recommendations=[rec("98765", DOC_ITEMS, "model", 1608670720)])


def test_multiple_recommendations_as_in_the_vendor_example(get_profile: GetProfile) -> None:
    """The vendor's multi-rec query (testRecId,testRecID2) answers both documented recommendations in order."""
    response = get_profile(user_id="12345", get_recs="true", rec_id="testRecId,testRecID2")
    assert response.json() == user_data(
        recommendations=[
            rec("testRecId", DOC_ITEMS, "model", 1608670720),
            rec("testRecId2", KOREAN_ITEMS, "model2", 1608670658),
        ]
    )


def test_user_properties(get_profile: GetProfile) -> None:
    """get_amp_props answers the documented properties with native JSON types and nothing else."""
    response = get_profile(user_id="12345", get_amp_props="true")
    assert response.json() == user_data(amp_props=DOC_PROPS)


def test_cohort_ids(get_profile: GetProfile) -> None:
    """get_cohort_ids answers the documented cohort list."""
    response = get_profile(user_id="12345", get_cohort_ids="true")
    assert response.json() == user_data(cohort_ids=["cohort1", "cohort3", "cohort7"])


def test_lookup_by_device_id(get_profile: GetProfile) -> None:
    """Looking up the documented device id finds the documented user, with its user id."""
    response = get_profile(device_id="ffff-ffff-ffff-ffff", get_amp_props="true", get_cohort_ids="true")
    assert response.json() == user_data(amp_props=DOC_PROPS, cohort_ids=["cohort1", "cohort3", "cohort7"])


def test_all_computations(get_profile: GetProfile) -> None:
    """get_computations answers every computation in amp_props, keyed by name, values as strings."""
    response = get_profile(user_id="12345", get_computations="true")
    assert response.json() == user_data(amp_props={"computed-prop-1": "5000000.0", "computed-prop-2": "3"})


def test_computation_by_id(get_profile: GetProfile) -> None:
    """comp_id=t14bqib answers just that computation, as documented."""
    response = get_profile(user_id="12345", get_computations="true", comp_id="t14bqib")
    assert response.json() == user_data(amp_props={"computed-prop-2": "3"})


def test_computations_by_several_ids_with_unknown_and_missing(get_profile: GetProfile) -> None:
    """Several comp ids answer in amp_props; a catalogued one the user lacks and an unknown id are null."""
    response = get_profile(user_id="12345", get_computations="true", comp_id="c0mp001,k9x2aa,nosuch")
    assert response.json()["userData"]["amp_props"] == {
        "computed-prop-1": "5000000.0",
        "purchases-30d": None,
        "nosuch": None,
    }


def test_an_unknown_comp_id_never_replaces_a_value(get_profile: GetProfile) -> None:
    """An unknown comp id spelled like a computation's name or a property adds nothing over the value there."""
    either_order = ("t14bqib,computed-prop-2", "computed-prop-2,t14bqib")
    for comp_ids in either_order:
        response = get_profile(user_id="12345", get_computations="true", comp_id=comp_ids)
        assert response.json()["userData"]["amp_props"] == {"computed-prop-2": "3"}
    merged = get_profile(user_id="12345", get_amp_props="true", get_computations="true", comp_id="library")
    assert merged.json()["userData"]["amp_props"]["library"] == DOC_PROPS["library"]


def test_comp_id_without_get_computations_is_ignored(get_profile: GetProfile) -> None:
    """comp_id alone does not ask for computations, so amp_props stays null."""
    response = get_profile(user_id="12345", comp_id="t14bqib")
    assert response.json() == user_data()


def test_properties_and_computations_merge(get_profile: GetProfile) -> None:
    """Asking for properties and computations together answers one merged amp_props dict."""
    response = get_profile(user_id="12345", get_amp_props="true", get_computations="true")
    assert response.json() == user_data(amp_props={**DOC_PROPS, "computed-prop-1": "5000000.0", "computed-prop-2": "3"})


def test_single_propensity_score(get_profile: GetProfile) -> None:
    """One prediction id answers the score both as the scalar propensity and as the one-entry list."""
    response = get_profile(user_id="12345", get_propensity="true", prediction_id="0x10x", propensity_type="score")
    assert response.json() == user_data(
        propensity=0.500001, propensities=[{"prop": 0.500001, "pred_id": "0x10x", "prop_type": "score"}]
    )


def test_single_propensity_pct(get_profile: GetProfile) -> None:
    """propensity_type=pct answers the documented percentile 83 as an integer."""
    body = get_profile(user_id="12345", get_propensity="true", prediction_id="0x10x", propensity_type="pct").json()
    assert body["userData"]["propensity"] == 83
    assert body["userData"]["propensities"] == [{"prop": 83, "pred_id": "0x10x", "prop_type": "pct"}]


def test_multiple_propensities(get_profile: GetProfile) -> None:
    """Several prediction ids answer a null scalar and one list entry per id, in request order."""
    body = get_profile(
        user_id="12345", get_propensity="true", prediction_id="0x11x,0x10x", propensity_type="pct"
    ).json()
    assert body["userData"]["propensity"] is None
    assert body["userData"]["propensities"] == [
        {"prop": 85, "pred_id": "0x11x", "prop_type": "pct"},
        {"prop": 83, "pred_id": "0x10x", "prop_type": "pct"},
    ]


def test_unknown_prediction_id_is_null(get_profile: GetProfile) -> None:
    """An unknown prediction id answers prop null in its list entry (and as the scalar when alone)."""
    body = get_profile(user_id="12345", get_propensity="true", prediction_id="nosuch", propensity_type="score").json()
    assert body["userData"]["propensity"] is None
    assert body["userData"]["propensities"] == [{"prop": None, "pred_id": "nosuch", "prop_type": "score"}]


def test_unrequested_sections_are_null_and_propensity_keys_absent(get_profile: GetProfile) -> None:
    """A bare lookup answers every section null and carries no propensity keys at all."""
    body = get_profile(user_id="12345").json()
    assert body == user_data()
    assert "propensity" not in body["userData"]
    assert "propensities" not in body["userData"]


def test_false_flags_leave_sections_null(get_profile: GetProfile) -> None:
    """Flags set to the string false ask for nothing."""
    body = get_profile(
        user_id="12345", get_recs="false", rec_id="testRecId", get_amp_props="false", get_cohort_ids="false"
    ).json()
    assert body == user_data()


def test_every_section_at_once(get_profile: GetProfile) -> None:
    """All sections requested together answer together, each as documented."""
    body = get_profile(
        user_id="12345",
        get_recs="true",
        rec_id="testRecId",
        get_amp_props="true",
        get_cohort_ids="true",
        get_propensity="true",
        prediction_id="0x10x",
        propensity_type="score",
    ).json()["userData"]
    assert body["recommendations"] == [rec("testRecId", DOC_ITEMS, "model", 1608670720)]
    assert body["amp_props"] == DOC_PROPS
    assert body["cohort_ids"] == ["cohort1", "cohort3", "cohort7"]
    assert body["propensity"] == 0.500001
    assert list(body) == [
        "recommendations",
        "user_id",
        "device_id",
        "amp_props",
        "cohort_ids",
        "propensity",
        "propensities",
    ]

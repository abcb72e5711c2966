"""Every parameter and combination, against the emulator: the exact query strings sent and the typed profiles."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from amp_profile_magic import InvalidQuery, Profile, ProfileClient, ProfileQuery, Propensity, Recommendation
from amp_profile_magic.emulator import EXAMPLE_DEVICE_ID, EXAMPLE_USER_ID, Emulator
from tests.client.conftest import FAST, expect_failure
from tests.magics.helpers import api_requests

Pairs = list[tuple[str, str]]

# -- the combinations ---------------------------------------------------------------------------------------------

RECS: list[dict[str, Any]] = [
    {},
    {"rec_ids": ["testRecId"]},
    {"rec_ids": ["recA", "recB", "recC"]},
    {"rec_ids": ["recA", "recB"], "rec_type": "model"},
    {"rec_ids": ["recA"], "rec_type": "random"},
]
PROPS: list[dict[str, Any]] = [{}, {"props": True}]
COHORTS: list[dict[str, Any]] = [{}, {"cohorts": True}]
COMPS: list[dict[str, Any]] = [
    {},
    {"comps": True},
    {"comp_ids": ["t14bqib"]},
    {"comps": True, "comp_ids": ["c0mp001", "k9x2aa", "no-such-comp"]},
]
PROPENSITY: list[dict[str, Any]] = [
    {},
    {"prediction_ids": ["0x10x"]},
    {"prediction_ids": ["0x10x", "0x11x", "0x12x"], "propensity_type": "pct"},
    {"prediction_ids": ["0x13x", "no-such-prediction"], "propensity_type": "score"},
]
SECTIONS = [
    {**recs, **props, **cohorts, **comps, **propensity}
    for recs, props, cohorts, comps, propensity in itertools.product(RECS, PROPS, COHORTS, COMPS, PROPENSITY)
]


def identities(emulator: Emulator) -> list[dict[str, str]]:
    """Who to look up: the documented user, a synthetic user, a device, a device with no user, and both ids."""
    dataset = emulator.dataset
    users = dataset.user_ids
    return [
        {"user_id": EXAMPLE_USER_ID},
        {"user_id": users[1]},
        {"device_id": dataset.device_id_of(2)},
        {"device_id": dataset.device_only_ids[0]},
        {"user_id": users[3], "device_id": dataset.device_id_of(3)},
    ]


# -- independent oracles: what the API documentation says should be sent, and what the emulator holds -------------


def expected_requests(params: dict[str, Any]) -> list[Pairs]:
    """The documented query parameters for a lookup, in the order the client sends them."""
    identity: Pairs = [(name, params[name]) for name in ("user_id", "device_id") if name in params]
    main = list(identity)
    if params.get("rec_ids"):
        main += [("get_recs", "true"), ("rec_id", ",".join(params["rec_ids"]))]
        if params.get("rec_type"):
            main.append(("rec_type", params["rec_type"]))
    if params.get("props"):
        main.append(("get_amp_props", "true"))
    if params.get("cohorts"):
        main.append(("get_cohort_ids", "true"))
    if params.get("prediction_ids"):
        main += [
            ("get_propensity", "true"),
            ("prediction_id", ",".join(params["prediction_ids"])),
            ("propensity_type", params.get("propensity_type", "score")),
        ]
    comps: Pairs = []
    if params.get("comps") or params.get("comp_ids"):
        comps.append(("get_computations", "true"))
        if params.get("comp_ids"):
            comps.append(("comp_id", ",".join(params["comp_ids"])))
    if params.get("props") and comps:
        return [main, identity + comps]
    return [main + comps]


def expected_profile(emulator: Emulator, params: dict[str, Any]) -> Profile:
    """The profile the emulator's dataset implies for these parameters."""
    dataset = emulator.dataset
    who = dataset.lookup(user_id=params.get("user_id"), device_id=params.get("device_id"))
    assert who is not None
    recommendations = None
    if params.get("rec_ids"):
        emulated = [dataset.recommendation(who, rec_id, params.get("rec_type")) for rec_id in params["rec_ids"]]
        recommendations = tuple(
            Recommendation(
                rec_id=rec.rec_id,
                child_rec_id=rec.child_rec_id,
                items=tuple(rec.items),
                is_control=rec.is_control,
                recommendation_source=rec.recommendation_source,
                # The emulator serves epoch seconds; the typed profile holds them as a UTC datetime.
                last_updated=datetime.fromtimestamp(rec.last_updated, UTC),
            )
            for rec in emulated
        )
    computations = None
    if params.get("comps") or params.get("comp_ids"):
        names = dataset.computations
        if params.get("comp_ids"):
            computations = {names.get(cid, cid): who.computations.get(cid) for cid in params["comp_ids"]}
        else:
            computations = {names[cid]: value for cid, value in who.computations.items()}
    propensities = None
    scalar = None
    if params.get("prediction_ids"):
        kind = params.get("propensity_type", "score")
        values = []
        for pid in params["prediction_ids"]:
            prediction = who.predictions.get(pid)
            value = None if prediction is None else (prediction.score if kind == "score" else prediction.pct)
            values.append(None if value is None else float(value))
        propensities = tuple(
            Propensity(prediction_id=pid, propensity_type=kind, value=value)
            for pid, value in zip(params["prediction_ids"], values, strict=True)
        )
        scalar = values[0] if len(values) == 1 else None
    return Profile(
        user_id=who.user_id,
        device_id=who.device_id,
        recommendations=recommendations,
        properties=dict(who.properties) if params.get("props") else None,
        cohort_ids=tuple(who.cohort_ids) if params.get("cohorts") else None,
        computations=computations,
        propensities=propensities,
        propensity=scalar,
    )


def sent(emulator: Emulator) -> list[Pairs]:
    """The query parameters of every request the emulator logged, in order, as ordered pairs."""
    return [list(entry.params.items()) for entry in emulator.requests]


# -- every combination --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_client(emulator: Emulator) -> Iterator[ProfileClient]:
    """One keep-alive client for the hundreds of combination cases (building one per case costs more than the case)."""
    profile_client = ProfileClient(endpoint=emulator.url, api_key=emulator.api_key, **FAST)
    yield profile_client
    profile_client.close()


@pytest.mark.parametrize("index", range(len(SECTIONS)))
def test_every_combination_sends_the_documented_query_and_returns_the_typed_profile(
    emulator: Emulator, shared_client: ProfileClient, index: int
) -> None:
    """Each combination of sections (cycling through five kinds of identity) sends exactly the documented
    parameters, one request — two only when props and computations are both asked — and yields the
    dataset's profile as typed objects."""
    params = {**identities(emulator)[index % 5], **SECTIONS[index]}
    emulator.reset()
    profile = shared_client.lookup(**params)
    expected = expected_requests(params)
    assert sent(emulator) == expected
    assert len(expected) == (2 if params.get("props") and (params.get("comps") or params.get("comp_ids")) else 1)
    assert all(entry.status == 200 and entry.path == "/v1/userprofile" for entry in emulator.requests)
    assert profile == expected_profile(emulator, params)
    assert ProfileQuery(**params).requests == tuple(tuple(pairs) for pairs in expected)


@pytest.mark.parametrize("identity", range(5))
def test_each_identity_with_everything_asked_for(
    emulator: Emulator, make_client: Callable[..., ProfileClient], identity: int
) -> None:
    """Users, devices, device-only ids and user+device pairs each get every section in two requests."""
    params = {
        **identities(emulator)[identity],
        "rec_ids": ["r1", "r2"],
        "rec_type": "model",
        "props": True,
        "cohorts": True,
        "comp_ids": ["c0mp001", "ltv4u2"],
        "prediction_ids": ["0x10x", "0x12x"],
        "propensity_type": "pct",
    }
    client = make_client()
    emulator.reset()
    profile = client.lookup(**params)
    assert sent(emulator) == expected_requests(params)
    assert emulator.request_count == 2
    assert profile == expected_profile(emulator, params)
    assert profile.properties is not None
    assert profile.computations is not None
    # The split keeps user properties and computations apart, although the API merges them into amp_props.
    assert not set(profile.properties) & set(profile.computations)


def test_a_query_object_and_keyword_parameters_send_the_same_request(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """lookup(ProfileQuery(...)) and lookup(**fields) are the same lookup; mixing both is refused."""
    client = make_client()
    emulator.reset()
    query = ProfileQuery(user_id=EXAMPLE_USER_ID, cohorts=True)
    assert client.lookup(query) == client.lookup(user_id=EXAMPLE_USER_ID, cohorts=True)
    assert sent(emulator) == [[("user_id", "12345"), ("get_cohort_ids", "true")]] * 2
    with pytest.raises(TypeError, match="not both"):
        client.lookup(query, cohorts=True)
    assert emulator.request_count == 2


def test_ids_given_as_a_comma_separated_string_are_split_trimmed_and_deduplicated(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """'a, b,a' asks for a and b once each, joined with bare commas as the API documents."""
    client = make_client()
    emulator.reset()
    profile = client.lookup(user_id="12345", rec_ids="testRecId, testRecId2,testRecId", comp_ids=("t14bqib",))
    assert sent(emulator) == [
        [
            ("user_id", "12345"),
            ("get_recs", "true"),
            ("rec_id", "testRecId,testRecId2"),
            ("get_computations", "true"),
            ("comp_id", "t14bqib"),
        ]
    ]
    assert profile.recommendations is not None
    assert [rec.rec_id for rec in profile.recommendations] == ["testRecId", "testRecId2"]


# -- the documentation's examples, verbatim -----------------------------------------------------------------------

DOC_ITEMS = ("cookie", "cracker", "chocolate milk", "donut", "croissant")


def test_documented_single_recommendation(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """user_id=12345&get_recs=true&rec_id=testRecId answers the documented recommendation, typed."""
    client = make_client()
    emulator.reset()
    profile = client.lookup(user_id="12345", rec_ids=["testRecId"])
    assert sent(emulator) == [[("user_id", "12345"), ("get_recs", "true"), ("rec_id", "testRecId")]]
    assert profile == Profile(
        user_id="12345",
        device_id="ffff-ffff-ffff-ffff",
        recommendations=(
            Recommendation(
                "testRecId", "testRecId", DOC_ITEMS, False, "model", datetime.fromtimestamp(1608670720, UTC)
            ),
        ),
    )
    assert profile.properties is None
    assert profile.cohort_ids is None


def test_documented_multiple_recommendations(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """rec_id=testRecId,testRecId2 answers both documented lists in order."""
    client = make_client()
    emulator.reset()
    profile = client.lookup(user_id="12345", rec_ids=["testRecId", "testRecId2"])
    assert sent(emulator) == [[("user_id", "12345"), ("get_recs", "true"), ("rec_id", "testRecId,testRecId2")]]
    assert profile.recommendations == (
        Recommendation("testRecId", "testRecId", DOC_ITEMS, False, "model", datetime.fromtimestamp(1608670720, UTC)),
        Recommendation(
            "testRecId2",
            "testRecId2",
            ("bulgogi", "bibimbap", "kimchi", "croffles", "samgyeopsal"),
            False,
            "model2",
            datetime.fromtimestamp(1608670658, UTC),
        ),
    )


def test_documented_user_properties(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """get_amp_props=true answers the documented properties with their JSON types kept."""
    client = make_client()
    emulator.reset()
    profile = client.lookup(user_id="12345", props=True)
    assert sent(emulator) == [[("user_id", "12345"), ("get_amp_props", "true")]]
    assert profile.properties == {
        "library": "http/1.0",
        "first_used": "2020-01-13",
        "last_used": "2021-03-24",
        "number_property": 12,
        "boolean_property": True,
    }
    assert type(profile.properties["number_property"]) is int
    assert profile.recommendations is None
    assert profile.computations is None


def test_documented_cohort_ids(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """get_cohort_ids=true answers the documented cohorts as a tuple of strings."""
    client = make_client()
    emulator.reset()
    profile = client.lookup(user_id="12345", cohorts=True)
    assert sent(emulator) == [[("user_id", "12345"), ("get_cohort_ids", "true")]]
    assert profile.cohort_ids == ("cohort1", "cohort3", "cohort7")


def test_documented_computations(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """get_computations=true answers every computation as the documented strings; comp_id narrows to one."""
    client = make_client()
    emulator.reset()
    everything = client.lookup(user_id="12345", comps=True)
    one = client.lookup(user_id="12345", comp_ids=["t14bqib"])
    assert sent(emulator) == [
        [("user_id", "12345"), ("get_computations", "true")],
        [("user_id", "12345"), ("get_computations", "true"), ("comp_id", "t14bqib")],
    ]
    assert everything.computations == {"computed-prop-1": "5000000.0", "computed-prop-2": "3"}
    assert one.computations == {"computed-prop-2": "3"}
    assert everything.properties is None


def test_documented_propensities(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """0x10x score is 0.500001, 0x10x pct is 83, and 0x10x,0x11x pct is 83 and 85 with no scalar."""
    client = make_client()
    emulator.reset()
    score = client.lookup(user_id="12345", prediction_ids=["0x10x"], propensity_type="score")
    pct = client.lookup(user_id="12345", prediction_ids=["0x10x"], propensity_type="pct")
    both = client.lookup(user_id="12345", prediction_ids=["0x10x", "0x11x"], propensity_type="pct")
    prefix = [("user_id", "12345"), ("get_propensity", "true")]
    assert sent(emulator) == [
        [*prefix, ("prediction_id", "0x10x"), ("propensity_type", "score")],
        [*prefix, ("prediction_id", "0x10x"), ("propensity_type", "pct")],
        [*prefix, ("prediction_id", "0x10x,0x11x"), ("propensity_type", "pct")],
    ]
    assert score.propensity == 0.500001
    assert score.propensities == (Propensity("0x10x", "score", 0.500001),)
    assert pct.propensity == 83
    assert pct.propensities == (Propensity("0x10x", "pct", 83.0),)
    assert both.propensity is None
    assert both.propensities == (Propensity("0x10x", "pct", 83.0), Propensity("0x11x", "pct", 85.0))


def test_documented_device_lookup(emulator: Emulator, make_client: Callable[..., ProfileClient]) -> None:
    """device_id=ffff-ffff-ffff-ffff alone finds the documented user 12345."""
    client = make_client()
    emulator.reset()
    profile = client.lookup(device_id=EXAMPLE_DEVICE_ID, props=True, cohorts=True)
    assert sent(emulator) == [
        [("device_id", "ffff-ffff-ffff-ffff"), ("get_amp_props", "true"), ("get_cohort_ids", "true")]
    ]
    assert (profile.user_id, profile.device_id) == ("12345", "ffff-ffff-ffff-ffff")
    assert profile.cohort_ids == ("cohort1", "cohort3", "cohort7")


def test_documented_props_and_computations_cost_exactly_two_requests(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """props plus computations sends two requests, so each lands in its own field instead of one merged dict."""
    client = make_client()
    emulator.reset()
    profile = client.lookup(user_id="12345", props=True, comps=True)
    assert sent(emulator) == [
        [("user_id", "12345"), ("get_amp_props", "true")],
        [("user_id", "12345"), ("get_computations", "true")],
    ]
    assert profile.properties is not None
    assert "computed-prop-1" not in profile.properties
    assert profile.computations == {"computed-prop-1": "5000000.0", "computed-prop-2": "3"}


# -- invalid combinations: refused before anything is sent ---------------------------------------------------------

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no identity", {}, "user_id"),
    ("both identities None", {"user_id": None, "device_id": None}, "user_id"),
    ("empty user id", {"user_id": ""}, "user_id"),
    ("blank device id", {"device_id": "   "}, "device_id"),
    ("blank user id (a tab)", {"user_id": "\t"}, "user_id"),
    ("lone surrogate in a device id", {"device_id": "dev\ud800"}, "device_id"),
    ("boolean user id", {"user_id": True}, "user_id"),
    ("float user id", {"user_id": 1.5}, "user_id"),
    ("recs without rec ids (empty string)", {"user_id": "12345", "rec_ids": ""}, "rec_id"),
    ("recs with an empty rec id", {"user_id": "12345", "rec_ids": ["testRecId", " "]}, "rec_id"),
    ("empty id inside a rec id list", {"user_id": "12345", "rec_ids": "a,,b"}, "rec_id"),
    ("comma inside a rec id", {"user_id": "12345", "rec_ids": ["a,b"]}, "rec_id"),
    ("rec ids as a number", {"user_id": "12345", "rec_ids": 7}, "rec_id"),
    ("rec_type without recs", {"user_id": "12345", "rec_type": "model"}, "rec_type"),
    ("unknown rec_type", {"user_id": "12345", "rec_ids": ["a"], "rec_type": "popular"}, "rec_type"),
    ("rec_type in the wrong case", {"user_id": "12345", "rec_ids": ["a"], "rec_type": "MODEL"}, "rec_type"),
    ("empty comp id", {"user_id": "12345", "comp_ids": [""]}, "comp_id"),
    ("comma inside a comp id", {"user_id": "12345", "comp_ids": ["x,y"]}, "comp_id"),
    ("empty prediction id", {"user_id": "12345", "prediction_ids": ["0x10x", ""]}, "prediction_id"),
    ("comma inside a prediction id", {"user_id": "12345", "prediction_ids": ["p,q"]}, "prediction_id"),
    (
        "unknown propensity_type",
        {"user_id": "12345", "prediction_ids": ["0x10x"], "propensity_type": "percent"},
        "propensity_type",
    ),
    ("propensity_type without prediction ids", {"user_id": "12345", "propensity_type": "pct"}, "propensity_type"),
    ("a flag given as a string", {"user_id": "12345", "props": "false"}, "props"),
]


@pytest.mark.parametrize(("params", "parameter"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_parameters_fail_before_any_request_naming_the_parameter(
    emulator: Emulator, make_client: Callable[..., ProfileClient], params: dict[str, Any], parameter: str
) -> None:
    """An invalid lookup raises InvalidQuery naming the bad parameter, and the emulator sees zero requests."""
    client = make_client()
    emulator.reset()
    error = expect_failure(InvalidQuery, lambda: client.lookup(**params))
    assert error.parameter == parameter
    assert str(error).startswith(f"{parameter}: ")
    assert isinstance(error, ValueError)
    with pytest.raises(InvalidQuery):
        ProfileQuery(**params)
    assert emulator.request_count == 0


def test_an_integer_id_too_long_to_print_is_an_invalid_query() -> None:
    """An integer id past Python's printing limit is an InvalidQuery naming the parameter, not a raw error."""
    with pytest.raises(InvalidQuery, match="user_id: an integer id too long to print"):
        ProfileQuery(user_id=10**5000, props=True)


def test_lookup_many_and_plan_name_an_item_that_is_not_a_query(
    emulator: Emulator, make_client: Callable[..., ProfileClient]
) -> None:
    """Passing ids where queries belong is a TypeError that shows the query to write; nothing is sent."""
    client = make_client(store="off")
    before = len(api_requests(emulator))
    with pytest.raises(TypeError, match=r"lookup_many\(\) takes ProfileQuery objects, not str; for an id: "):
        client.lookup_many(["12345"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"plan\(\) takes ProfileQuery objects, not dict$"):
        client.plan([{"user_id": "12345"}])  # type: ignore[list-item]
    assert len(api_requests(emulator)) == before


def test_an_empty_plan_still_says_where_the_store_is(make_client: Callable[..., ProfileClient], tmp_path: Any) -> None:
    """plan([]) names the configured store rather than calling it off."""
    assert make_client(store=str(tmp_path)).plan([]).store == str(tmp_path / "profiles.sqlite3")

"""Property-based: arbitrary JSON in every field of ``userData`` never loses a user and never escapes the magic.

Each example serves three users a generated body from a scripted API on loopback (plus one well-formed user) and
runs the real ``%ampprofile`` in a real shell, asking for every section. Every input must come out either as a
row of ``props`` (one row per profile, so a successful user always shows there) or as one failure record that
names the field, and the result must display.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from amp_profile_magic._result import ProfileResult

from .conftest import Answer, ScriptedApi

DEEP_MARK = "\u0000deep\u0000"
DEEP = "[" * 100_000 + "]" * 100_000

# Leaves include what json.loads reads but a frame builder must not get: NaN, infinities, 1e400 (read as inf),
# integers past int64 and float range, the API's own error phrases and timestamps in several spellings.
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 10**30, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, -1e300, 1.60867072e9, 5e-324]),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "User id and device id not seen before",
            "Number of requests per minute exceeds system limit",
            "2020-12-22T20:58:40Z",
            "2020-12-22 20:58:40+05:00",
            "9999-12-31",
            "1608670720",
            "nan",
            "1e400",
            "true",
            DEEP_MARK,
        ]
    ),
)
JSON = st.recursive(
    LEAF,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)
# Nesting past the model's depth limit but within what the parser reads.
NESTED = st.integers(min_value=1, max_value=60).map(lambda depth: json.loads("[" * depth + "]" * depth))
ANY = st.one_of(JSON, NESTED)


def either(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value for a field three times in four, else arbitrary JSON: so that one user's body often gets
    past its first fields and the later ones are exercised too."""
    # one_of() would treat repeated branches as one, so the weighting is an explicit draw.
    return st.integers(min_value=0, max_value=3).flatmap(lambda pick: plausible if pick else ANY)


TIMESTAMP = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes().map(lambda when: when.isoformat()),
)
RECOMMENDATION = st.fixed_dictionaries(
    {"rec_id": either(st.sampled_from(["r1", "r2"]))},
    optional={
        "child_rec_id": either(st.text(max_size=5)),
        "items": either(st.lists(st.text(max_size=5), max_size=3)),
        "is_control": either(st.booleans()),
        "recommendation_source": either(st.text(max_size=5)),
        "last_updated": either(TIMESTAMP),
    },
)
PROPERTY_KEYS = st.one_of(
    st.sampled_from(["user_id", "device_id", "prop:user_id", "comp:device_id", "plan"]), st.text()
)
PROPENSITY = st.fixed_dictionaries(
    {"pred_id": either(st.sampled_from(["p1", "p2"]))},
    optional={
        "prop": either(st.floats(min_value=0, max_value=100)),
        "prop_type": ANY,
    },
)
USER_DATA = st.fixed_dictionaries(
    {},
    optional={
        "user_id": either(st.one_of(st.none(), st.text(max_size=8), st.integers())),
        "device_id": either(st.one_of(st.none(), st.text(max_size=8))),
        "recommendations": either(st.lists(RECOMMENDATION, max_size=3)),
        "amp_props": either(st.dictionaries(PROPERTY_KEYS, ANY, max_size=5)),
        "cohort_ids": either(st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3)),
        "propensity": either(st.floats(min_value=0, max_value=1)),
        "propensities": either(st.lists(PROPENSITY, max_size=3)),
    },
)
# Mostly {"userData": ...}; sometimes a body of another shape altogether.
BODY = either(USER_DATA.map(lambda data: {"userData": data}))

INDEX = re.compile(r"\[.*?\]")  # recommendations[2].items[0] and amp_props['x'] counted as one place each
USERS = ("gen-0", "gen-1", "gen-2")
GOOD = "well-formed"


def encode(body: object) -> bytes:
    """The body as the API would send it, NaN and Infinity spelt as Python's json writes them, the deep mark
    replaced by JSON nested 100,000 levels."""
    return json.dumps(body).replace(json.dumps(DEEP_MARK), DEEP).encode()


@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(bodies=st.tuples(BODY, BODY, BODY))
def test_any_user_data_gives_rows_or_a_failure_record(
    bodies: tuple[object, object, object], run: Any, api_shell: Any, scripted_api: ScriptedApi
) -> None:
    """Every user is a props row or one failure naming the field; nothing escapes the magic; the result displays."""
    for user, body in zip(USERS, bodies, strict=True):
        scripted_api.answers[user] = Answer(200, encode(body))
    api_shell.user_ns["ids"] = [*USERS, GOOD]
    done = run("%ampprofile --users ids recs=r1 props cohorts comps propensity=p1,p2 -o res")
    assert done.result.error_in_exec is None, done.everything
    assert done.result.error_before_exec is None, done.everything
    res = api_shell.user_ns.pop("res")
    assert isinstance(res, ProfileResult)
    failures = res.failures
    failed = list(failures["user_id"])
    assert len(set(failed)) == len(failed), failures.to_string()
    assert GOOD not in failed
    assert len(res.props) + len(failures) == len(USERS) + 1, (res.props.to_string(), failures.to_string())
    for failure in failures.itertuples(index=False):
        assert failure.kind == "malformed_response", failure
        assert "could not be read" not in failure.message, failure  # the client's net: validation missed a case
        named = isinstance(failure.field, str)  # a missing field is NaN in the frame
        assert named or "is not JSON" in failure.message, failure
        assert "\n" not in failure.message
        event("failed at " + (INDEX.sub("[]", failure.field) if named else "parsing"))
    event(f"{len(failed)} of {len(USERS)} generated users failed")
    # Displaying the result (as the cell would) must not fail either.
    repr(res)
    res._repr_html_()
    for frame in res.values():
        frame.to_string()

"""The bulk path of a cached re-run gives exactly what the one-query-at-a-time path gives."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amp_profile_magic import InvalidQuery, ProfileQuery
from amp_profile_magic import _store as store_module
from amp_profile_magic._client import _distinct, _request_keys
from amp_profile_magic._store import ProfileStore, params_key

ids = st.one_of(
    st.text(min_size=1, max_size=12).filter(lambda text: text.strip() and "," not in text),
    st.integers(min_value=0, max_value=10**12),
    st.sampled_from(["{0}", "}{", "a{1}b", "{{}}", "'\"{"]),  # format fields in the ids: the keys are format strings
)
LOOKUPS = [
    {"cohorts": True},
    {"props": True, "comps": True, "rec_ids": ["r1", "r'2"]},
    {"rec_ids": ["a"], "rec_type": "random", "prediction_ids": ["p1"], "cohorts": True},
]


def _requests(lookup: dict[str, object]) -> tuple[object, ...]:
    return ProfileQuery(user_id="x", **lookup)._sections


@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(st.one_of(st.none(), ids), st.one_of(st.none(), ids)), min_size=1, max_size=8))
def test_each_builds_the_queries_one_by_one_construction_builds(pairs: list[tuple[object, object]]) -> None:
    """``ProfileQuery.each`` gives equal, equally hashed queries with the same requests as constructing each one,
    and raises the same error for the first identity that cannot be sent."""
    for lookup in LOOKUPS:
        requests = _requests(lookup)
        expected: list[ProfileQuery] = []
        error = None
        for user, device in pairs:
            try:
                expected.append(ProfileQuery(user_id=user, device_id=device, requests=requests))
            except InvalidQuery as caught:
                error = str(caught)
                break
        if error is not None:
            with pytest.raises(InvalidQuery) as raised:
                ProfileQuery.each(pairs, requests=requests)
            assert str(raised.value) == error
            continue
        built = ProfileQuery.each(pairs, requests=requests)
        assert built == expected
        assert [hash(query) for query in built] == [hash(query) for query in expected]
        assert [query.requests for query in built] == [query.requests for query in expected]


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(ids, st.one_of(st.none(), ids)), min_size=1, max_size=6))
def test_store_keys_from_templates_equal_params_key(pairs: list[tuple[object, object]]) -> None:
    """The store keys spliced from a template per plan are exactly ``params_key`` of each request's pairs, for any
    ids (quotes, backslashes, braces, non-ASCII, integers)."""
    for lookup in LOOKUPS:
        queries = ProfileQuery.each(pairs, requests=_requests(lookup))
        keys = _request_keys(queries)
        assert len(keys) == len(queries)
        for query, query_keys in zip(queries, keys, strict=True):
            assert query_keys == tuple(params_key(params) for params in query.requests)


@settings(max_examples=100, deadline=None)
@given(column=st.lists(ids, min_size=1, max_size=6), side=st.sampled_from(["user_id", "device_id"]))
def test_store_keys_of_a_one_column_batch_equal_params_key(column: list[object], side: str) -> None:
    """A batch of user ids only, or of device ids only (the keys spliced in bulk), gets exactly ``params_key`` of
    each request's pairs, whatever the ids hold."""
    pairs = [(value, None) if side == "user_id" else (None, value) for value in column]
    for lookup in LOOKUPS[:1]:  # one request per query: the bulk path
        queries = ProfileQuery.each(pairs, requests=_requests(lookup))
        keys = _request_keys(queries)
        assert keys == [tuple(params_key(params) for params in query.requests) for query in queries]


def test_distinct_queries_with_equal_hashes_are_both_kept() -> None:
    """Queries are told apart by equality, not by their hashes alone: two different queries that happen to share a
    hash are both looked up, and a repeated query once, first one kept."""
    first, second = ProfileQuery(user_id="a", cohorts=True), ProfileQuery(user_id="b", cohorts=True)
    object.__setattr__(second, "_hash", first._hash)  # a hash collision, forced
    again = ProfileQuery(user_id="a", cohorts=True)
    assert _distinct([first, second]) == [first, second]
    kept = _distinct([first, second, again, second])
    assert kept == [first, second]
    assert kept[0] is first


@pytest.mark.parametrize("others", [0, 2_000], ids=["one-project", "many-others"])
@pytest.mark.parametrize("scan_from", [1, 10**9], ids=["scan", "chunks"])
def test_get_many_walk_and_chunked_lookups_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scan_from: int, others: int
) -> None:
    """Walking the project's answers (many keys wanted) and chunked lookups return the same fresh answers for the
    wanted keys: other projects, other endpoints and stale entries are left out either way, and the walk brings no
    more unwanted answers than wanted ones, also when other projects' answers outnumber the wanted ones."""
    monkeypatch.setattr(store_module, "_SCAN_FROM", scan_from)
    store = ProfileStore(tmp_path / "store", max_bytes=1 << 30)
    now = time.time()
    for index in range(others):
        store.put(project="q", endpoint="e", params=f"u{index}", kind="ok", status=200, body="another project")
    for index in range(1_500):
        age = 7_200 if index % 7 == 0 else 10
        store.put(project="p", endpoint="e", params=f"u{index}", kind="ok", status=200, body=f"{index}",
                  fetched_at=now - age)  # fmt: skip
    store.put(project="other", endpoint="e", params="u1", kind="ok", status=200, body="other project")
    store.put(project="p", endpoint="other", params="u2", kind="ok", status=200, body="other endpoint")
    wanted = [f"u{index}" for index in range(0, 1_500, 2)] + ["missing"]
    found = store.get_many(project="p", endpoint="e", params=wanted, max_age=3_600, now=now)
    expected = {f"u{index}" for index in range(0, 1_500, 2) if index % 7 != 0}
    assert {key for key in found if key in wanted} == expected
    assert all(found[key].body == key[1:] for key in found)
    assert all(int(key[1:]) % 7 != 0 for key in found)  # nothing stale, nothing of another project or endpoint
    assert len(set(found) - expected) <= len(wanted)
    store.close()

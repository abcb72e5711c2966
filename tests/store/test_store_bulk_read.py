"""A cached re-run reads its stored bodies in bulk, and gets exactly what reading them one at a time gets."""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amp_profile_magic import ProfileClient, ProfileQuery
from amp_profile_magic._batch import Outcome
from amp_profile_magic._exceptions import MalformedResponse
from amp_profile_magic._gcpause import paused, resumed
from amp_profile_magic._models import Profile
from amp_profile_magic._query import profile_from_responses, profiles_from_bodies
from amp_profile_magic._store import load_bodies, load_body

#: JSON values json could write, including what orjson reads differently (long integers, NaN, lone surrogates).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["\ud800", "cohort1", "", " "]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
#: Bodies as the store may hold them: JSON text, or text that is not JSON at all (a damaged entry).
texts = st.one_of(values.map(json.dumps), st.sampled_from(["", "{", "nan", "[1,]", "null", "1" * 25]))

#: userData shaped like the API's, with any value where the API puts one: what the bulk reading must check.
ids = st.one_of(st.none(), st.text(max_size=6), st.integers(min_value=-5, max_value=10**20), st.booleans(), st.floats())
user_data = st.fixed_dictionaries(
    {},
    optional={
        "user_id": ids,
        "device_id": ids,
        "cohort_ids": st.one_of(st.none(), st.lists(ids, max_size=3), values),
        "amp_props": st.one_of(st.none(), st.dictionaries(st.text(max_size=4), values, max_size=3), values),
    },
)
bodies = st.one_of(st.fixed_dictionaries({"userData": st.one_of(user_data, values)}), values)


def _one_or_none(query: ProfileQuery, body: object) -> Profile | None:
    try:
        return profile_from_responses(query, (body,))
    except (MalformedResponse, ArithmeticError, LookupError, RecursionError, TypeError, ValueError):
        return None


def _load_or_none(text: str) -> object:
    try:
        return load_body(text)
    except (ValueError, RecursionError):
        return None


@settings(max_examples=200, deadline=None)
@given(batch=st.lists(texts, max_size=12))
def test_load_bodies_reads_each_body_as_load_body_does(batch: list[str]) -> None:
    """Parsing a batch of stored bodies at once gives each one's value exactly as load_body reads it alone (types,
    long integers and NaN included), and None for each one that does not parse, whatever its neighbours are."""
    assert repr(load_bodies(batch)) == repr([_load_or_none(text) for text in batch])


@pytest.mark.parametrize("lookup", [{"cohorts": True}, {"props": True}, {"cohorts": True, "props": True}])
@settings(max_examples=150, deadline=None)
@given(batch=st.lists(bodies, min_size=1, max_size=10))
def test_bulk_reading_equals_reading_one_query_at_a_time(lookup: dict[str, bool], batch: list[object]) -> None:
    """For any bodies a store could hold (hostile ids, cohort lists and properties included), the profiles read in
    bulk for a cell's queries equal those read one query at a time, raw userData included, and a body that cannot
    be read gives None for that user alone."""
    queries = ProfileQuery.each([(f"u{index}", None) for index in range(len(batch))], requests=_requests(lookup))
    bulk = profiles_from_bodies(queries, batch)
    alone = [_one_or_none(query, body) for query, body in zip(queries, batch, strict=True)]
    assert bulk == alone
    for built, expected in zip(bulk, alone, strict=True):
        if expected is not None:
            assert built is not None
            assert built.raw == expected.raw


def _requests(lookup: dict[str, bool]) -> Any:
    return ProfileQuery(user_id="x", **lookup)._sections


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    """Each test starts with the collector enabled, and leaves it enabled whatever it did."""
    gc.enable()
    yield
    gc.enable()


def test_resumed_lets_the_collector_run_inside_a_pause_and_pauses_it_again() -> None:
    """Inside a pause, resumed() turns the collector on for its block and off again after; outside any pause, or
    with a collector the user turned off, it changes nothing."""
    with resumed():
        assert gc.isenabled()
    with paused():
        assert not gc.isenabled()
        with resumed():
            assert gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    with paused(), resumed():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_a_thread_waiting_on_the_network_keeps_the_collector_on_while_another_pauses() -> None:
    """While one thread is inside resumed() (a batch waiting on the network), another thread's pause, and the end
    of a third's resumed block, leave the collector on; it is off again only when no block waits."""
    inside, leave = threading.Event(), threading.Event()

    def waiting_batch() -> None:
        with paused(), resumed():
            inside.set()
            leave.wait(5)

    worker = threading.Thread(target=waiting_batch)
    worker.start()
    assert inside.wait(5)
    with paused():
        assert gc.isenabled()
        with resumed():
            assert gc.isenabled()
        assert gc.isenabled()  # the other thread still waits on the network
        leave.set()
        worker.join(5)
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_paused_call_collects_while_it_fetches_and_not_while_it_reads_the_store(make_client: Any) -> None:
    """Inside a paused call (as %ampprofile makes one), answers fetched from the API arrive with the collector on,
    and those answered by the local store with it off; it is on again when the call ends."""
    stored = [f"user-{index:05d}" for index in range(1, 11)]
    fetched = [f"user-{index:05d}" for index in range(11, 21)]
    client: ProfileClient = make_client()
    client.lookup_many(ProfileQuery.each([(user, None) for user in stored], requests=_requests({"cohorts": True})))
    seen: dict[str, bool] = {}

    def record(outcome: Outcome) -> None:
        seen[str(outcome.query.user_id)] = gc.isenabled()

    queries = ProfileQuery.each([(user, None) for user in stored + fetched], requests=_requests({"cohorts": True}))
    with paused():
        batch = client.lookup_many(queries, on_outcome=record)
    assert not batch.failures
    assert [seen[user] for user in stored] == [False] * len(stored)
    assert [seen[user] for user in fetched] == [True] * len(fetched)
    assert gc.isenabled()


@pytest.mark.parametrize("wrong", [lambda slices: slices[:-1], lambda slices: [tuple(s.items()) for s in slices]])
def test_a_read_many_that_breaks_its_contract_is_read_one_query_at_a_time(
    monkeypatch: pytest.MonkeyPatch, wrong: Any
) -> None:
    """A section's read_many that gives too few slices, or slices that are not dicts, does not fail the batch: each
    query is read with read alone, as if read_many were not there."""
    from amp_profile_magic.sections.cohorts import CohortsSection

    good = CohortsSection.read_many
    monkeypatch.setattr(CohortsSection, "read_many", lambda self, *args: wrong(good(self, *args)))
    batch = [{"userData": {"user_id": f"u{index}", "cohort_ids": [f"c{index}"]}} for index in range(4)]
    queries = ProfileQuery.each([(f"u{index}", None) for index in range(4)], requests=_requests({"cohorts": True}))
    profiles = profiles_from_bodies(queries, batch)
    assert [profile.cohort_ids if profile else None for profile in profiles] == [("c0",), ("c1",), ("c2",), ("c3",)]

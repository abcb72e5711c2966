"""The synthetic dataset: deterministic per seed, well-typed, and consistent between lookups."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from amp_profile_magic.emulator import Dataset, Emulator

MakeEmulator = Callable[..., tuple[Emulator, httpx.Client]]
EVERYTHING = {
    "get_recs": "true",
    "rec_id": "home,cart",
    "get_amp_props": "true",
    "get_cohort_ids": "true",
    "get_computations": "true",
    "get_propensity": "true",
    "prediction_id": "0x10x,0x12x",
    "propensity_type": "score",
}


def test_same_seed_same_data_different_seed_different_data() -> None:
    """Two datasets with one seed build identical profiles and recommendations; another seed differs."""
    a, b, c = Dataset(seed=3), Dataset(seed=3), Dataset(seed=4)
    for index in (0, 17, 4999):
        user_id = a.user_ids[index]
        assert a.user(user_id) == b.user(user_id)
        assert a.device_id_of(index) == b.device_id_of(index)
        pa, pb = a.user(user_id), b.user(user_id)
        assert pa is not None
        assert pb is not None
        assert a.recommendation(pa, "home") == b.recommendation(pb, "home")
    differing = [a.user(uid) != c.user(uid) for uid in a.user_ids[:20]]
    assert all(differing)
    assert a.device_id_of(5) != c.device_id_of(5)


def test_same_seed_same_answers_over_http(make_emulator: MakeEmulator) -> None:
    """Two emulators with the same seed answer byte-identical bodies; a different seed answers differently."""
    _, first = make_emulator(seed=11)
    _, second = make_emulator(seed=11)
    _, other = make_emulator(seed=12)
    for user_id in ("user-00000", "user-01234", "user-04999"):
        params = {"user_id": user_id, **EVERYTHING}
        body = first.get("/v1/userprofile", params=params).content
        assert second.get("/v1/userprofile", params=params).content == body
        assert other.get("/v1/userprofile", params=params).content != body


def test_documented_user_is_the_same_for_every_seed() -> None:
    """The documentation's example user answers the documented data whatever the seed."""
    for seed in (0, 1, 99):
        profile = Dataset(seed=seed).user("12345")
        assert profile is not None
        assert profile.device_id == "ffff-ffff-ffff-ffff"
        assert profile.cohort_ids == ("cohort1", "cohort3", "cohort7")
        assert dict(profile.computations) == {"c0mp001": "5000000.0", "t14bqib": "3"}


def test_user_ids_and_device_ids() -> None:
    """There are `users` synthetic ids, each with a distinct uuid-like device id that maps back to it."""
    dataset = Dataset(users=300)
    assert len(dataset.user_ids) == 300
    assert dataset.user_ids[0] == "user-00000"
    assert dataset.user_ids[-1] == "user-00299"
    devices = [dataset.device_id_of(i) for i in range(300)]
    assert len(set(devices)) == 300
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", d) for d in devices)
    for index in (0, 150, 299):
        profile = dataset.device(devices[index])
        assert profile is not None
        assert profile.user_id == dataset.user_ids[index]
        assert profile is dataset.user(dataset.user_ids[index])  # memoised: one profile per user


@pytest.mark.parametrize("user_id", ["user-00300", "user-0001", "user-x", "user-", "12346", "", "device-only-0001"])
def test_unknown_user_ids(user_id: str) -> None:
    """Ids outside the dataset, in the wrong format or belonging to device-only profiles are unknown."""
    assert Dataset(users=300).user(user_id) is None


def test_device_ids_of_other_seeds_and_garbage_are_unknown() -> None:
    """A device id is known only to the seed and size that produced it."""
    dataset = Dataset(seed=1, users=100)
    assert dataset.device(Dataset(seed=2, users=100).device_id_of(5)) is None
    assert dataset.device(Dataset(seed=1, users=1000).device_id_of(500)) is None
    assert dataset.device("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz") is None
    assert dataset.device("") is None


def test_device_only_ids() -> None:
    """Device-only ids have profiles without a user id."""
    dataset = Dataset()
    assert dataset.device_only_ids
    for device_id in dataset.device_only_ids:
        profile = dataset.device(device_id)
        assert profile is not None
        assert profile.user_id is None
        assert profile.device_id == device_id


def test_lookup_prefers_known_user_id() -> None:
    """lookup() uses the user id when known, the device id otherwise, and answers None for neither."""
    dataset = Dataset()
    other_device = dataset.device_id_of(7)
    assert dataset.lookup(user_id="user-00001", device_id=other_device) is dataset.user("user-00001")
    assert dataset.lookup(user_id="nobody", device_id=other_device) is dataset.user("user-00007")
    assert dataset.lookup(user_id="nobody", device_id="nothing") is None
    assert dataset.lookup() is None


def test_profile_contents_have_native_types() -> None:
    """Synthetic profiles carry the documented property types, cohorts, string computations and predictions."""
    dataset = Dataset(seed=5)
    for user_id in dataset.user_ids[:200]:
        profile = dataset.user(user_id)
        assert profile is not None
        props = profile.properties
        assert set(props) >= {"library", "first_used", "last_used", "number_property", "boolean_property"}
        assert isinstance(props["number_property"], int)
        assert isinstance(props["boolean_property"], bool)
        assert str(props["first_used"]) <= str(props["last_used"])
        assert set(profile.cohort_ids) <= set(dataset.cohorts)
        assert set(profile.computations) == set(dataset.computations)
        assert all(isinstance(value, str) for value in profile.computations.values())
        float(profile.computations["c0mp001"])
        assert set(profile.predictions) == set(dataset.prediction_ids)
        for prediction in profile.predictions.values():
            assert 0 < prediction.score < 1
            assert round(prediction.score, 6) == prediction.score
            assert 1 <= prediction.pct <= 100
    assert any(not dataset.user(uid).cohort_ids for uid in dataset.user_ids[:200])  # type: ignore[union-attr]


def test_profiles_are_read_only() -> None:
    """A profile's mappings cannot be modified, so cached answers cannot be corrupted by callers."""
    profile = Dataset().user("user-00001")
    assert profile is not None
    with pytest.raises(TypeError):
        profile.properties["plan"] = "hacked"  # type: ignore[index]


def test_recommendations_for_any_rec_id() -> None:
    """Any rec id yields rec_items items, echoing the rec id, with about one pair in ten in control."""
    dataset = Dataset(rec_items=7)
    profiles = [dataset.user(uid) for uid in dataset.user_ids[:100]]
    recs = [dataset.recommendation(p, f"rec-{n}") for p in profiles if p is not None for n in range(10)]
    assert len(recs) == 1000
    for rec in recs[:50]:
        assert len(rec.items) == 7
        assert len(set(rec.items)) == 7
        assert all(re.fullmatch(r"item-\d{4}", item) for item in rec.items)
        assert rec.child_rec_id == rec.rec_id
        assert rec.recommendation_source == "model"
        assert 1_600_000_000 <= rec.last_updated < 1_700_000_000
    control_share = sum(rec.is_control for rec in recs) / len(recs)
    assert 0.05 <= control_share <= 0.15


def test_rec_type_overrides_control_and_source() -> None:
    """rec_type=random answers random-source items; rec_type=model modeled ones; neither is in control."""
    dataset = Dataset()
    profile = dataset.user("user-00002")
    assert profile is not None
    modeled = dataset.recommendation(profile, "home", "model")
    random_recs = dataset.recommendation(profile, "home", "random")
    assert modeled.recommendation_source == "model"
    assert random_recs.recommendation_source == "random"
    assert random_recs.items != modeled.items
    assert not any(dataset.recommendation(profile, f"r{n}", "model").is_control for n in range(100))
    documented = dataset.user("12345")
    assert documented is not None
    assert dataset.recommendation(documented, "testRecId", "model").items[0] == "cookie"
    assert dataset.recommendation(documented, "testRecId", "random").recommendation_source == "random"


@pytest.mark.parametrize("kwargs", [{"users": -1}, {"rec_items": 0}, {"rec_items": 101}, {"seed": "x"}, {"seed": 1.5}])
def test_dataset_rejects_nonsense(kwargs: dict[str, object]) -> None:
    """Negative sizes, more than the API's 100 items and non-integer seeds are refused."""
    with pytest.raises((ValueError, TypeError)):
        Dataset(**kwargs)  # type: ignore[arg-type]

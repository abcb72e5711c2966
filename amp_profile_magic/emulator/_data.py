"""Deterministic synthetic User Profile data, including the API documentation's examples verbatim."""

from __future__ import annotations

import hashlib
import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from types import MappingProxyType

__all__ = ["Dataset", "Prediction", "Profile", "Recommendation"]

#: The documentation's example user and device.
EXAMPLE_USER_ID = "12345"
EXAMPLE_DEVICE_ID = "ffff-ffff-ffff-ffff"

_COHORTS = tuple(f"cohort{n}" for n in range(1, 10))
_COMPUTATIONS = {
    "c0mp001": "computed-prop-1",
    "t14bqib": "computed-prop-2",
    "k9x2aa": "purchases-30d",
    "s7d3mq": "sessions-7d",
    "ltv4u2": "lifetime-value",
}
_PREDICTION_IDS = ("0x10x", "0x11x", "0x12x", "0x13x")
_LIBRARIES = ("http/1.0", "amplitude-js/8.21.9", "amplitude-ios/8.17.1", "amplitude-android/2.39.0")
_PLATFORMS = ("Web", "iOS", "Android")
_COUNTRIES = ("United States", "Germany", "Japan", "Brazil", "India", "France", "South Korea", "Canada")
_PLANS = ("free", "starter", "pro", "enterprise")
_DEVICE_ONLY_COUNT = 3
_ITEM_SPACE = 10_000
# Recommendations are keyed by client-chosen rec ids, so their cache must not grow without bound.
_REC_CACHE_LIMIT = 65_536
_MAX_REC_ITEMS = 100  # the API's documented maximum per recommendation


@dataclass(frozen=True)
class Prediction:
    """One prediction's propensity for one user: the raw ``score`` in (0, 1) and the percentile ``pct``."""

    score: float
    pct: int


@dataclass(frozen=True)
class Recommendation:
    """One recommendation result, with the fields and meaning of the API's response objects."""

    rec_id: str
    child_rec_id: str
    items: tuple[str, ...]
    is_control: bool
    recommendation_source: str
    last_updated: int

    def as_json(self) -> dict[str, object]:
        """The recommendation as the API serialises it (key order as documented)."""
        return {
            "rec_id": self.rec_id,
            "child_rec_id": self.child_rec_id,
            "items": list(self.items),
            "is_control": self.is_control,
            "recommendation_source": self.recommendation_source,
            "last_updated": self.last_updated,
        }


@dataclass(frozen=True)
class Profile:
    """Everything the emulator knows about one user (or one device without a user id).

    ``properties`` are user properties with native JSON values; ``computations`` maps computation id
    to its value as a string (as the API returns them); ``predictions`` maps prediction id to its
    propensity. The mappings are read-only.
    """

    user_id: str | None
    device_id: str
    properties: Mapping[str, object]
    cohort_ids: tuple[str, ...]
    computations: Mapping[str, str]
    predictions: Mapping[str, Prediction]


_DOC_ITEMS = ("cookie", "cracker", "chocolate milk", "donut", "croissant")
# The documented recommendations of the example user, keyed by lower-cased rec id: the vendor's own
# multi-rec example asks for `testRecID2` and answers `testRecId2`, so these match case-insensitively
# and answer with the documented spelling.
_DOC_RECS = {
    rec.rec_id.lower(): rec
    for rec in (
        Recommendation("98765", "98765", _DOC_ITEMS, False, "model", 1608670720),
        Recommendation("testRecId", "testRecId", _DOC_ITEMS, False, "model", 1608670720),
        Recommendation(
            "testRecId2",
            "testRecId2",
            ("bulgogi", "bibimbap", "kimchi", "croffles", "samgyeopsal"),
            False,
            "model2",
            1608670658,
        ),
    )
}
_DOC_PROFILE = Profile(
    user_id=EXAMPLE_USER_ID,
    device_id=EXAMPLE_DEVICE_ID,
    properties=MappingProxyType(
        {
            "library": "http/1.0",
            "first_used": "2020-01-13",
            "last_used": "2021-03-24",
            "number_property": 12,
            "boolean_property": True,
        }
    ),
    cohort_ids=("cohort1", "cohort3", "cohort7"),
    computations=MappingProxyType({"c0mp001": "5000000.0", "t14bqib": "3"}),
    predictions=MappingProxyType({"0x10x": Prediction(0.500001, 83), "0x11x": Prediction(0.612345, 85)}),
)


class Dataset:
    """Deterministic synthetic profiles: the same seed always yields the same users and answers.

    Known users are the documentation's example user ``12345`` (device ``ffff-ffff-ffff-ffff``, with
    the documented properties, cohorts, computations, predictions and recommendations verbatim),
    ``users`` synthetic users ``user-00000``, ``user-00001``, … each with a uuid-like device id, and a
    few devices with no user id (:attr:`device_only_ids`). Profiles are generated on first use from
    ``random.Random(f"{seed}:{id}")`` and memoised, so construction is instant whatever ``users`` is.

    Any rec id yields a recommendation for any known user: ``rec_items`` items drawn from
    ``item-0000``…``item-9999``, deterministic per (user, rec id, rec type).
    """

    def __init__(self, *, seed: int = 0, users: int = 5000, rec_items: int = 10) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if not isinstance(users, int) or users < 0:
            raise ValueError(f"users must be a non-negative int, got {users!r}")
        if not isinstance(rec_items, int) or not 1 <= rec_items <= _MAX_REC_ITEMS:
            raise ValueError(f"rec_items must be between 1 and {_MAX_REC_ITEMS}, got {rec_items!r}")
        self.seed = seed
        self.users = users
        self.rec_items = rec_items
        self._width = max(5, len(str(max(users - 1, 0))))
        # Device ids end in the user's index XOR a seed-derived mask, so a device id maps back to its
        # user without building an index of every device.
        self._mask = int.from_bytes(hashlib.blake2b(f"{seed}:device-mask".encode(), digest_size=6).digest())
        self._user_ids: tuple[str, ...] | None = None  # built on first use: users may be large
        self._device_only = tuple(f"device-only-{n:04d}" for n in range(1, _DEVICE_ONLY_COUNT + 1))
        # Keyed "u:<user id>" or "d:<device id>" (device-only profiles), so a user id can never hit a
        # device-only profile that happens to share its spelling.
        self._profiles: dict[str, Profile] = {f"u:{EXAMPLE_USER_ID}": _DOC_PROFILE}
        self._recs: dict[tuple[str, str, str | None], Recommendation] = {}
        # The server thread and the caller's threads may both look profiles up; the lock keeps two
        # threads from building one profile twice and the caches' size checks consistent.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Dataset(seed={self.seed}, users={self.users}, rec_items={self.rec_items})"

    # -- identities -------------------------------------------------------------------------------

    @property
    def user_ids(self) -> list[str]:
        """The synthetic user ids, ``users`` of them (the example user ``12345`` is extra); a fresh list."""
        if self._user_ids is None:
            self._user_ids = tuple(self._user_id(i) for i in range(self.users))
        return list(self._user_ids)

    @property
    def device_only_ids(self) -> list[str]:
        """Device ids with no user id: looking one up answers ``user_id: null``."""
        return list(self._device_only)

    @property
    def computations(self) -> dict[str, str]:
        """The computation catalogue: computation id → computation name (the key used in amp_props)."""
        return dict(_COMPUTATIONS)

    @property
    def prediction_ids(self) -> list[str]:
        """The prediction ids every synthetic user has a propensity for."""
        return list(_PREDICTION_IDS)

    @property
    def cohorts(self) -> list[str]:
        """The cohort ids users may belong to."""
        return list(_COHORTS)

    def device_id_of(self, index: int) -> str:
        """The device id of the synthetic user number ``index``."""
        digest = hashlib.blake2b(f"{self.seed}:device:{index}".encode(), digest_size=8).hexdigest()
        tail = (index ^ self._mask) & 0xFFFF_FFFF_FFFF
        return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[1:4]}-{tail:012x}"

    def _user_id(self, index: int) -> str:
        return f"user-{index:0{self._width}d}"

    def _user_index(self, user_id: str) -> int | None:
        digits = user_id.removeprefix("user-")
        # ASCII digits only, and not past any index: str.isdigit() also takes "²", which int() then refuses.
        if digits == user_id or not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
            return None
        index = int(digits)
        if index >= self.users or self._user_id(index) != user_id:
            return None
        return index

    def _device_index(self, device_id: str) -> int | None:
        parts = device_id.split("-")
        if len(parts) != 5 or len(parts[4]) != 12:
            return None
        try:
            index = int(parts[4], 16) ^ self._mask
        except ValueError:
            return None
        if index >= self.users or self.device_id_of(index) != device_id:
            return None
        return index

    # -- lookup -----------------------------------------------------------------------------------

    def user(self, user_id: str) -> Profile | None:
        """The profile of a known user id, else None."""
        profile = self._profiles.get(f"u:{user_id}")
        if profile is not None:
            return profile
        index = self._user_index(user_id)
        if index is None:
            return None
        return self._generate(user_id, self.device_id_of(index))

    def device(self, device_id: str) -> Profile | None:
        """The profile owning a known device id (``user_id`` None for device-only ids), else None."""
        if device_id == EXAMPLE_DEVICE_ID:
            return _DOC_PROFILE
        if device_id in self._device_only:
            return self._generate(None, device_id)
        index = self._device_index(device_id)
        if index is None:
            return None
        return self._generate(self._user_id(index), device_id)

    def lookup(self, *, user_id: str | None = None, device_id: str | None = None) -> Profile | None:
        """The API's lookup rule: the user id if given and known, else the device id if known."""
        if user_id:
            profile = self.user(user_id)
            if profile is not None:
                return profile
        if device_id:
            return self.device(device_id)
        return None

    # -- generation -------------------------------------------------------------------------------

    def _generate(self, user_id: str | None, device_id: str) -> Profile:
        key = f"u:{user_id}" if user_id is not None else f"d:{device_id}"
        cached = self._profiles.get(key)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._profiles.get(key)
            if cached is None:
                cached = self._profiles[key] = self._build(user_id, device_id)
            return cached

    def _build(self, user_id: str | None, device_id: str) -> Profile:
        rng = random.Random(f"{self.seed}:{user_id if user_id is not None else device_id}")
        first_used = date(2019, 1, 1) + timedelta(days=rng.randrange(1461))
        last_used = first_used + timedelta(days=rng.randrange(730))
        properties: dict[str, object] = {
            "library": rng.choice(_LIBRARIES),
            "first_used": first_used.isoformat(),
            "last_used": last_used.isoformat(),
            "platform": rng.choice(_PLATFORMS),
            "country": rng.choice(_COUNTRIES),
            "plan": rng.choice(_PLANS),
            "number_property": rng.randrange(100),
            "boolean_property": rng.random() < 0.5,
        }
        cohorts = tuple(cohort for cohort in _COHORTS if rng.random() < 0.3)
        computations = {
            "c0mp001": str(float(rng.randrange(10_000_000))),
            "t14bqib": str(rng.randrange(50)),
            "k9x2aa": str(rng.randrange(20)),
            "s7d3mq": str(rng.randrange(60)),
            "ltv4u2": f"{rng.uniform(0, 5000):.2f}",
        }
        predictions = {}
        for prediction_id in _PREDICTION_IDS:
            score = round(rng.uniform(0.000001, 0.999999), 6)
            # A percentile that rises with the score, as a real ranking would.
            predictions[prediction_id] = Prediction(score, min(100, max(1, math.ceil(score * 100))))
        return Profile(
            user_id=user_id,
            device_id=device_id,
            properties=MappingProxyType(properties),
            cohort_ids=cohorts,
            computations=MappingProxyType(computations),
            predictions=MappingProxyType(predictions),
        )

    def recommendation(self, profile: Profile, rec_id: str, rec_type: str | None = None) -> Recommendation:
        """The recommendation ``rec_id`` for ``profile``; ``rec_type`` is None, ``"model"`` or ``"random"``.

        Without ``rec_type`` about 10% of (user, rec id) pairs are in the control group. ``rec_type``
        overrides the experiment's control setting, so with it ``is_control`` is false; ``"random"``
        answers random items with ``recommendation_source`` ``"random"``.
        """
        if profile is _DOC_PROFILE and rec_type != "random":
            documented = _DOC_RECS.get(rec_id.lower())
            if documented is not None:
                return documented
        key = profile.user_id if profile.user_id is not None else profile.device_id
        cache_key = (f"{'u' if profile.user_id is not None else 'd'}:{key}", rec_id, rec_type)
        cached = self._recs.get(cache_key)
        if cached is not None:
            return cached
        rng = random.Random(f"{self.seed}:{key}:rec:{rec_id}:{rec_type or ''}")
        items = tuple(f"item-{n:04d}" for n in rng.sample(range(_ITEM_SPACE), self.rec_items))
        is_control = rng.random() < 0.10 and rec_type is None
        recommendation = Recommendation(
            rec_id=rec_id,
            child_rec_id=rec_id,
            items=items,
            is_control=is_control,
            recommendation_source="random" if rec_type == "random" else "model",
            last_updated=rng.randrange(1_600_000_000, 1_700_000_000),
        )
        with self._lock:
            if len(self._recs) >= _REC_CACHE_LIMIT:
                self._recs.clear()
            self._recs[cache_key] = recommendation
        return recommendation

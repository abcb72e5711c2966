"""ProfileQuery keeps ids exactly as given (the Python API as well as the magic), refusing what it cannot send."""

from __future__ import annotations

import numpy as np
import pytest

from amp_profile_magic import InvalidQuery, ProfileClient, UnknownUser
from amp_profile_magic._query import ProfileQuery
from amp_profile_magic.emulator import Emulator

from .helpers import api_requests


@pytest.mark.parametrize("user_id", ["  ab  ", "a,b", "x\ty", "nul\x00", "o'brien", "\u00a0nbsp"])
def test_lookup_sends_the_id_exactly(client: ProfileClient, emulator: Emulator, user_id: str) -> None:
    """client.lookup(user_id=…) sends the id unstripped; a comma is part of a user id (a single-valued parameter)."""
    with pytest.raises(UnknownUser):  # answered by the emulator, so the request went out
        client.lookup(user_id=user_id, cohorts=True)
    assert [entry.params for entry in api_requests(emulator)] == [{"user_id": user_id, "get_cohort_ids": "true"}]


def test_numpy_integer_ids_are_their_digits() -> None:
    """A numpy integer user id becomes its digits, as a Python int does."""
    assert ProfileQuery(user_id=np.int64(12345), cohorts=True).user_id == "12345"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"user_id": ""}, "user_id: empty id"),
        ({"user_id": "   "}, "user_id: blank id"),
        ({"device_id": "\ud800"}, "lone surrogate"),
        ({"user_id": "1", "rec_ids": ("a,b",)}, "rec_id: 'a,b' contains a comma"),
        ({"user_id": True}, "expected a string id, got bool"),
        ({"user_id": 1.0}, "expected a string id, got float"),
    ],
)
def test_unsendable_ids_are_refused(fields: dict[str, object], named: str) -> None:
    """Empty, blank, unencodable ids and commas inside list ids raise InvalidQuery naming the parameter."""
    with pytest.raises(InvalidQuery) as raised:
        ProfileQuery(cohorts=True, **fields)  # type: ignore[arg-type]
    assert named in str(raised.value)

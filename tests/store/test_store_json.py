"""Stored bodies are parsed with orjson where it reads them exactly as ``json.loads`` does, by ``json`` elsewhere."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amp_profile_magic._store import load_body

#: Every JSON value the API could send, and some it should not: integers past 64 bits, non-finite floats (json
#: writes NaN and Infinity), lone surrogates, control characters, deep-ish nesting.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(max_codepoint=0x1F)),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=30
)


@settings(max_examples=400, deadline=None)
@given(value=values, ensure_ascii=st.booleans())
def test_load_body_reads_every_body_as_json_does(value: object, ensure_ascii: bool) -> None:
    """For any body json could have written, load_body gives the same value with the same types (an integer stays an
    integer however long, -0.0 stays -0.0, NaN stays NaN)."""
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    assert repr(load_body(text)) == repr(json.loads(text))


@given(text=st.sampled_from(["1E400", "[-1e400]", "NaN", '{"a": 1, "a": 2}', "18446744073709551616", ' "\\ud800" ']))
def test_load_body_matches_json_on_the_edges_orjson_reads_differently(text: str) -> None:
    """Overflowing exponents, NaN, duplicate keys, an integer past 64 bits and a lone surrogate read as json does."""
    assert repr(load_body(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["", "{", "\ufeff[1]", "[1,]", "{'a': 1}"])
def test_load_body_refuses_what_json_refuses(text: str) -> None:
    """A body json cannot read is refused with json's own error (the store then fetches that user again)."""
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        load_body(text)

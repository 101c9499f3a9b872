"""keys.encoding: the one strict, canonical base64 decoder."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys.encoding import Base64Error, NonCanonicalBase64Error, b64decode_canonical


@given(st.binary(max_size=100))
def test_round_trips_every_canonical_encoding(raw: bytes) -> None:
    assert b64decode_canonical(base64.b64encode(raw).decode("ascii")) == raw


@pytest.mark.parametrize("text", ["not base64!", "AAA", "AA=A", "A\nAAA", "ÄAAA"])
def test_refuses_what_is_not_base64(text: str) -> None:
    with pytest.raises(Base64Error, match="bad base64") as info:
        b64decode_canonical(text)
    assert not isinstance(info.value, NonCanonicalBase64Error)


@pytest.mark.parametrize("text", ["AB==", "AAB=", "JnB="])
def test_refuses_unused_bits_set(text: str) -> None:
    with pytest.raises(NonCanonicalBase64Error, match="non-canonical base64"):
        b64decode_canonical(text)

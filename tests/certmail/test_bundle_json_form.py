"""The bundle's JSON-member check (certmail.bundle.layout.is_receipt_text) says exactly
what comparing with the one writer (receipt_text, the stdlib's indenting encoder) says:
for canonical texts, and for texts one whitespace or byte edit away from them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certmail.bundle.layout import is_receipt_text, json_member, receipt_text
from keys.errors import VerificationError

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_EDITS = st.sampled_from([b"\n", b" ", b"  ", b"\n  ", b"\t", b",", b"\r\n", b""])


def _same_verdict(data: bytes) -> None:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return
    try:
        expected = receipt_text(obj) == data
    except (TypeError, ValueError):
        expected = False
    assert is_receipt_text(data, obj) is expected, data


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_canonical_texts_pass(value: object) -> None:
    data = receipt_text({"v": value}) if not isinstance(value, dict) else receipt_text(value)
    assert is_receipt_text(data, json.loads(data))


@settings(max_examples=1500, deadline=None)
@given(_VALUES, st.integers(min_value=0), st.integers(min_value=0, max_value=3), _EDITS)
def test_edited_texts_as_the_writer_says(value: object, at: int, cut: int, insert: bytes) -> None:
    data = receipt_text(value if isinstance(value, dict) else {"v": value})
    at %= len(data) + 1
    _same_verdict(data[:at] + insert + data[at + cut :])


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}\n',  # one line: breaks missing
        b'{\n  "a": {\n  }\n}\n',  # an empty object over two lines
        b'{\n  "a": [\n  ]\n}\n',
        b'{\n  "a":\n  1\n}\n',  # a break after the key
        b'{\n  "a": \n1\n}\n',
        b'{\n "a": 1\n}\n',  # wrong indent
        b'{\n  "a": 1\n}',  # no final LF
        b'{\n  "a": 1,\n  "a": 1\n}\n',  # a duplicate key
        b'{\n  "b": 1,\n  "a": 2\n}\n',  # unsorted
        b'{\n  "a": "\xc3\xa9"\n}\n',  # not ASCII-escaped
        b'{\n  "a": [\n    1,\n    2\n  ],\n  "b": {}\n}\n',  # canonical
        b'{\n  "a": [\n    1,\n    2\n  ],\n  "b": {}\n}\n\n',
        b"[]\n",
        b"[\n]\n",
        b'"x"\n',
        b"1\n",
    ],
)
def test_named_cases(data: bytes) -> None:
    _same_verdict(data)


def test_json_member_refuses_a_reindented_receipt() -> None:
    good = receipt_text({"entry": "AAAA", "proof": "p\n", "tst": "BBBB"})
    assert json_member({"m.json": good}, "m.json")["entry"] == "AAAA"
    bad = good.replace(b'  "proof"', b'   "proof"')
    with pytest.raises(VerificationError, match="canonical form"):
        json_member({"m.json": bad}, "m.json")

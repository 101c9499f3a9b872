"""certmail.mime's header-block reader: the fast path (:func:`certmail.mime._simple_fields`)
gives the email package's answer (``BytesHeaderParser``, compat32) for every block,
folded lines, obs-fold, missing colons, mbox ``From `` lines and 8-bit bytes included."""

from __future__ import annotations

from email.message import Message
from email.parser import BytesHeaderParser

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from certmail import mime
from certmail.mime import header_block_message, parse_entity


def _state(msg: Message) -> dict[str, object]:
    """Everything a parsed header Message holds (the defects by type and text)."""
    out = dict(vars(msg))
    out["defects"] = [(type(d).__name__, str(d)) for d in msg.defects]
    out["policy"] = type(msg.policy).__name__
    return out


_NAMES = st.sampled_from(["From", "To", "Subject", "X-A", "content-type", "Ä", "", "From "])
_TEXT = st.lists(
    st.sampled_from([*"ab :;\t=?<>@,", "\r", "\n", "\r\n", "\x00", "é", "\x7f"]), max_size=12
).map("".join)
_LINE = st.one_of(
    st.builds(lambda n, v: f"{n}:{v}", _NAMES, _TEXT),  # a field
    st.builds(lambda sep, v: sep + v, st.sampled_from([" ", "\t", "  "]), _TEXT),  # folded
    _TEXT,  # anything: no colon, empty, a bare CR or LF
    st.just("From alice@example.org Mon Jan  1 00:00:00 2026"),  # an mbox From line
)


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(_LINE, min_size=1, max_size=8))
    raw = "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape")
    if draw(st.booleans()):  # 8-bit bytes that are not UTF-8
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at:]
    return raw


@settings(max_examples=400, deadline=None)
@given(header_blocks())
@example(b"From: a@example.org\r\nSubject: hi\r\n  there\r\n\tagain\r\n")
@example(b"Subject: \xe4\xff\r\nX-A:\r\n")
@example(b"Subject: x\r\nno colon here\r\nTo: b\r\n")
@example(b"Subject: x\r\n:nameless\r\n folded\r\n")
@example(b"From a@b Mon\r\nTo: b\r\n")
@example(b"To: a\rb\r\n")
@example(b"To: a\nb\r\n")
@example(b" folded first\r\nTo: b\r\n")
@example(b"Bad Name: x\r\n")
def test_fast_path_is_the_parser(block: bytes) -> None:
    """The same Message as BytesHeaderParser for any block, whichever path takes it."""
    want = BytesHeaderParser().parsebytes(block)
    assert _state(header_block_message(block)) == _state(want)


def test_common_block_takes_the_fast_path() -> None:
    """A CRLF block of fields and folded lines is split by the fast path (so the test
    above compares two paths, not one with itself); anything else is the parser's."""
    text = "From: a@example.org\r\nSubject: one\r\n two\r\n"
    assert mime._simple_fields(text) == [
        ["From: a@example.org\r\n"],
        ["Subject: one\r\n", " two\r\n"],
    ]
    for odd in ("To: a\nb\r\n", "no colon\r\n", "From a@b\r\n", ":x\r\n", " x\r\n", "To: a"):
        assert mime._simple_fields(odd) is None


@pytest.mark.parametrize("reference_only", ["", "1"])
def test_reference_only_switch(monkeypatch: pytest.MonkeyPatch, reference_only: str) -> None:
    """CERTMAIL_REFERENCE_ONLY=1 sends every block to the parser: the same entity."""
    monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", reference_only)
    calls: list[str] = []
    fast = mime._simple_fields
    monkeypatch.setattr(mime, "_simple_fields", lambda t: calls.append(t) or fast(t))
    e = parse_entity(b"From: a@example.org\r\nSubject: one\r\n two\r\n\r\nbody\r\n")
    assert e.headers["Subject"] == "one\r\n two"
    assert e.body == b"body\r\n"
    assert len(calls) == (0 if reference_only else 1)

"""The relay's block-wise DATA reader against a line-by-line reference (a property test).

:func:`notary.relay.incoming.receive` reads DATA in pieces that end at a ``.CRLF``
or wherever the stream's buffer ends, and handles whole lines of each piece with
``bytes`` methods. The reference below is the rule as docs/relay.md states it, one
line at a time, the way aiosmtpd's own reader goes: lines split at CRLF only; the
line ``.`` ends the data; a leading dot removed; a line longer than the limit once
it is removed refuses the message (500), so does more data than the size limit
(552); a CR or LF outside a CRLF pair is noted (LF first), so is a NUL; nothing
after the final dot is read. For random byte streams, fed in pieces of random
sizes, both must agree on the verdict and on the bytes taken.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notary.relay.headers import MAX_HEADER_BYTES
from notary.relay.incoming import TOO_LONG, TOO_MUCH, Receiver, receive


@dataclass
class Verdict:
    refusal: str | None
    content: bytes | None  # what a taken message holds (None when refused)
    bare: str | None
    nul: bool
    rest: bytes  # what stays in the stream after the final dot


def reference(wire: bytes, limit: int | None, line_limit: int) -> Verdict:
    """Line by line (see the module docstring); ``wire`` holds a final ``CRLF.CRLF``."""
    pos, lines = 0, []
    too_long = too_much = lf = cr = nul = False
    size = 0
    while True:
        cut = wire.index(b"\r\n", pos)
        line, pos = wire[pos:cut], cut + 2
        if line == b".":
            break
        if line.startswith(b"."):
            line = line[1:]
        too_long = too_long or len(line) > line_limit
        size += len(line) + 2
        too_much = too_much or bool(limit and size > limit)
        lf, cr, nul = lf or b"\n" in line, cr or b"\r" in line, nul or b"\0" in line
        lines.append(line + b"\r\n")
    refusal = TOO_LONG if too_long else TOO_MUCH if too_much else None
    if refusal is not None:  # refused as read: the line endings are not looked at
        return Verdict(refusal, None, None, False, wire[pos:])
    bare = "LF" if lf else "CR" if cr else None
    return Verdict(None, b"".join(lines), bare, nul, wire[pos:])


async def _block_reader(
    wire: bytes, cuts: list[int], limit: int | None, line_limit: int, buffer: int, directory: Path
) -> Verdict:
    reader = asyncio.StreamReader(limit=buffer)
    receiver = Receiver(directory, limit, line_limit)

    async def feed() -> None:
        for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            reader.feed_data(wire[a:b])
            await asyncio.sleep(0)  # the reader sees each piece on its own
        reader.feed_eof()

    task = asyncio.create_task(feed())
    await receive(reader, receiver)
    await task
    rest = await reader.read()
    refusal = receiver.refusal()
    if refusal is not None:
        receiver.discard()
        return Verdict(refusal, None, None, False, rest)
    got = receiver.finish()
    data = got.read()
    got.remove()
    assert got.size == len(data) and got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.head == data[: MAX_HEADER_BYTES + 4]
    return Verdict(None, data, got.bare, got.nul, rest)


#: Short runs that make line starts, dots, CR/LF pairs and bare ones likely.
_TOKENS = [b".", b"..", b"\r\n", b"\r\n.", b"\r", b"\n", b"\0", b"a", b"\r\n.\r\n", b"."]


def _line(dots: bytes, n: int) -> bytes:
    """A whole line of ``n`` octets as meant after ``dots`` on the wire."""
    return b"\r\n" + dots + b"x" * n + b"\r\n"


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, int]:
    """A stream holding at least one ``CRLF.CRLF``, and the line limit to check it with."""
    line_limit = draw(st.sampled_from([4, 9, 998]))
    near = st.builds(  # lines around the limit, stuffed or not
        _line,
        st.sampled_from([b"", b".", b".."]),
        st.integers(max(0, line_limit - 3), line_limit + 4),
    )
    parts = draw(
        st.lists(
            st.one_of(st.sampled_from(_TOKENS), near, st.binary(max_size=12)),
            max_size=60,
        )
    )
    start = draw(st.sampled_from([b"", b".\r\n", b"..", b"h: v\r\n\r\n"]))
    return start + b"".join(parts) + b"\r\n.\r\nQUIT\r\n", line_limit


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(streams(), st.one_of(st.none(), st.integers(1, 3000)), st.data())
def test_block_reader_takes_exactly_what_the_line_rules_take(
    stream: tuple[bytes, int], limit: int | None, data: st.DataObject
) -> None:
    wire, line_limit = stream
    # Pieces cut anywhere, and often right after a CR or a dot (a CRLF or a
    # ".CRLF" split in two), or in single bytes.
    # The reader hands on all but the last 2 bytes it holds (they may start a ".CRLF"),
    # so a cut 1 to 3 bytes after one makes a piece end just after it.
    marks = [i + d for i, c in enumerate(wire) if c in b"\r." for d in (1, 2, 3)]
    marks = [m for m in marks if m < len(wire)]
    pick = st.sampled_from(marks) if marks else st.nothing()
    where = st.one_of(pick, st.integers(1, len(wire) - 1))
    cuts = data.draw(
        st.one_of(st.just(list(range(1, len(wire)))), st.sets(where, max_size=40).map(sorted)),
        label="cuts",
    )
    # aiosmtpd's reader limit (1001), or one as small as the line limit (so that
    # short streams are read in pieces too: a piece ends at ".CRLF" or past the limit).
    buffer = data.draw(st.sampled_from([1001, line_limit + 3, 5]), label="buffer")
    want = reference(wire, limit, line_limit)
    with tempfile.TemporaryDirectory() as d:
        got = asyncio.run(_block_reader(wire, cuts, limit, line_limit, buffer, Path(d)))
        assert list(Path(d).iterdir()) == []  # nothing left staged
    assert got == want


@pytest.mark.parametrize("buffer", [5, 7])
def test_a_stuffed_line_at_the_limit_with_its_crlf_cut_is_taken(
    buffer: int, tmp_path: Path
) -> None:
    # The piece ends between the CR and the LF of ".xxxx": 6 bytes held, the limit
    # (4) plus the dot and the CR, not yet too long (a case the random cuts rarely hit).
    wire = b"h\r\n.xxxx\r\nabc\r\n.\r\nQUIT\r\n"
    got = asyncio.run(_block_reader(wire, [1, 11], None, 4, buffer, tmp_path))
    assert got == reference(wire, None, 4) and got.content == b"h\r\nxxxx\r\nabc\r\n"


def test_the_reference_sees_each_rule() -> None:
    """The reference itself (a test of the test): each rule changes its verdict."""
    end = b"\r\n.\r\nQUIT\r\n"
    ok = reference(b"a\r\n..b" + end, None, 998)
    assert ok == Verdict(None, b"a\r\n.b\r\n", None, False, b"QUIT\r\n")
    assert reference(b"a\nb" + end, None, 998).bare == "LF"
    assert reference(b"a\rb" + end, None, 998).bare == "CR"
    assert reference(b"a\0b" + end, None, 998).nul
    assert reference(b".xxxx" + end, None, 4).refusal is None  # the dot is not counted
    assert reference(b"xxxxx" + end, None, 4).refusal == TOO_LONG
    assert reference(b"xxxx" + end, 5, 998).refusal == TOO_MUCH  # 4 + CRLF = 6 > 5
    assert reference(b".\r\nQUIT\r\n", None, 998) == Verdict(None, b"", None, False, b"QUIT\r\n")

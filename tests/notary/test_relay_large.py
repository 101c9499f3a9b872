"""The relay's block-wise handling of large messages: DATA read in pieces of whole lines,
the armor checked with ``find`` (issue: CPU per 7 MB message).

The DATA reader must give the same result however the bytes arrive: every piece
boundary (a CRLF, the final ``.CRLF``, a transparency dot, an overlong line cut
in two) is exercised by feeding the reader in small, odd-sized pieces.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
from pathlib import Path

import pytest

from notary.relay.ciphertext import armored_openpgp_message
from notary.relay.incoming import TOO_LONG, TOO_MUCH, Receiver, receive


async def _read(wire: bytes, directory: Path, sizes: list[int], limit: int | None) -> Receiver:
    """Feed ``wire`` in pieces of ``sizes`` (cycled), yielding to the reader between them."""
    reader = asyncio.StreamReader(limit=1001)
    receiver = Receiver(directory, limit)

    async def feed() -> None:
        pos, k = 0, 0
        while pos < len(wire):
            n = sizes[k % len(sizes)]
            reader.feed_data(wire[pos : pos + n])
            pos, k = pos + n, k + 1
            await asyncio.sleep(0)
        reader.feed_eof()

    task = asyncio.create_task(feed())
    await receive(reader, receiver)
    await task
    assert await reader.read() == b"QUIT\r\n"  # nothing read beyond the final dot
    return receiver


@pytest.mark.parametrize("sizes", [[1, 2, 3], [7, 64, 1000], [65536], [1 << 20]])
def test_large_data_in_any_pieces_is_taken_exactly(tmp_path: Path, sizes: list[int]) -> None:
    rng = random.Random(7)
    lines = [
        rng.choice([b".", b"..", b"", b"x", b"."]) + b"q" * rng.randrange(0, 120)
        for _ in range(30_000 if sizes[0] > 100 else 2_000)
    ]
    body = b"h: v\r\n\r\n" + b"".join(ln + b"\r\n" for ln in lines)  # as the client means it
    wire = body.replace(b"\r\n.", b"\r\n..") + b".\r\nQUIT\r\n"  # dot-stuffed on the wire
    got = asyncio.run(_read(wire, tmp_path, sizes, None)).finish()
    assert got.read() == body and got.size == len(body)
    assert got.sha256 == hashlib.sha256(body).hexdigest()
    assert got.head == body[: len(got.head)] and got.bare is None and not got.nul
    got.remove()


@pytest.mark.parametrize("sizes", [[1, 5], [999, 3], [4096]])
def test_an_overlong_line_cut_in_pieces_is_refused_after_the_real_end(
    tmp_path: Path, sizes: list[int]
) -> None:
    # 1001 bytes is the longest line taken; the 1002-byte line ends with a dot and
    # ".\r\n" follows it: only the line after is the end.
    ok = b"h: v\r\n\r\n" + b"a" * 1001 + b"\r\n.\r\nQUIT\r\n"
    assert asyncio.run(_read(ok, tmp_path, sizes, None)).refusal() is None
    bad = b"h: v\r\n\r\n" + b"b" * 1001 + b".\r\n" + b"c" * 3000 + b"\r\n.\r\nQUIT\r\n"
    r = asyncio.run(_read(bad, tmp_path, sizes, None))
    assert r.refusal() == TOO_LONG
    r.discard()


def test_over_the_size_limit_in_pieces_reads_to_the_end(tmp_path: Path) -> None:
    wire = b"h: v\r\n\r\n" + (b"z" * 70 + b"\r\n") * 5000 + b".\r\nQUIT\r\n"
    r = asyncio.run(_read(wire, tmp_path, [333, 65536], 100_000))
    assert r.refusal() == TOO_MUCH
    r.discard()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("split", [b"\r\n", b"\n"], ids=["CRLF", "LF"])
def test_a_large_armor_is_read_as_ciphertext(split: bytes) -> None:
    pkesk = b"\x03" + os.urandom(8) + b"\x01" + os.urandom(130)
    seipd = b"\x01" + os.urandom(3_000_000)
    packets = bytes([0xC1, len(pkesk)]) + pkesk
    packets += b"\xd2\xff" + len(seipd).to_bytes(4, "big") + seipd
    b64 = base64.b64encode(packets)
    lines = [b64[k : k + 64] for k in range(0, len(b64), 64)]
    armor = (
        b"-----BEGIN PGP MESSAGE-----"
        + split
        + b"Comment: x"
        + split
        + split
        + split.join(lines)
        + split
        + b"=AAAA"
        + split
        + b"-----END PGP MESSAGE-----"
        + split
    )
    assert armored_openpgp_message(armor) is not None
    # Blanks at the ends of lines are white space to strip, as before.
    spaced = armor.replace(lines[5] + split, lines[5] + b" \t" + split)
    assert armored_openpgp_message(spaced) is not None
    # A blank inside a line, a line of junk, a truncated body: not ciphertext.
    assert (
        armored_openpgp_message(armor.replace(lines[5], lines[5][:30] + b" " + lines[5][30:]))
        is None
    )
    assert (
        armored_openpgp_message(armor.replace(lines[9] + split, lines[9] + split + b"!!" + split))
        is None
    )
    assert armored_openpgp_message(armor.replace(split.join(lines[-3:]), b"")) is None

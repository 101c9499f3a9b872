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
from typing import Any

import pytest

from notary.relay.ciphertext import armored_openpgp_message
from notary.relay.incoming import (
    LINE_LIMIT,
    TOO_LONG,
    TOO_MUCH,
    Receiver,
    _longest_over,
    receive,
)
from notary.relay.smtp_client import CHUNK
from tests.fixtures.notary import configure
from tests.notary.relay_helpers import (
    ALICE,
    BOB,
    RelayNotary,
    delivered_as_submitted,
    submit_accepted,
    wait_for,
)


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
    # 998 octets is the longest line taken (RFC 5321 §4.5.3.1.6); the 999-octet line
    # ends with a dot and ".\r\n" follows it: only the line after is the end.
    ok = b"h: v\r\n\r\n" + b"a" * LINE_LIMIT + b"\r\n.\r\nQUIT\r\n"
    assert asyncio.run(_read(ok, tmp_path, sizes, None)).refusal() is None
    bad = b"h: v\r\n\r\n" + b"b" * 998 + b".\r\n" + b"c" * 3000 + b"\r\n.\r\nQUIT\r\n"
    r = asyncio.run(_read(bad, tmp_path, sizes, None))
    assert r.refusal() == TOO_LONG
    r.discard()


@pytest.mark.parametrize("sizes", [[1, 5], [999, 3], [4096]])
@pytest.mark.parametrize(
    ("line", "taken"),
    [
        (b"d" * 999, False),  # one octet over, however it is cut
        (b"d" * 998 + b"\r", False),  # 999 octets, the last a CR before the CRLF
        (b"." + b"d" * 997, True),  # 998 as meant: 999 on the wire, stuffed
        (b".." + b"d" * 997, False),  # 999 as meant: ".." then 997 is "." then 997
        (b"." + b"d" * 998, False),  # 999 as meant
    ],
    ids=["999", "998+CR", "dot-998", "dot-999", "dot-999b"],
)
def test_the_limit_counts_the_line_as_meant_not_the_stuffing_dot(
    tmp_path: Path, sizes: list[int], line: bytes, taken: bool
) -> None:
    # ``line`` as the client means it; on the wire its leading dot is doubled.
    body = b"h: v\r\n\r\n" + line + b"\r\nend\r\n"
    wire = body.replace(b"\r\n.", b"\r\n..") + b".\r\nQUIT\r\n"
    r = asyncio.run(_read(wire, tmp_path, sizes, None))
    if taken:
        assert r.refusal() is None and r.finish().read() == body
    else:
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


def test_longest_line_check_matches_splitting_into_lines() -> None:
    rng = random.Random(11)
    for _ in range(200):
        lengths = [rng.choice([0, 1, 76, 999, 1000, 1001, 1002, 1003, rng.randrange(3000)])]
        lengths += [rng.randrange(0, 1100) for _ in range(rng.randrange(0, 30))]
        rng.shuffle(lengths)
        # Lines with a bare CR or LF inside (part of a line, as the CRLF split sees
        # them), one at the very end of some (a CR before the CRLF).
        lines = [bytearray(b"x" * n) for n in lengths]
        for ln in lines:
            if ln and rng.random() < 0.3:
                ln[rng.randrange(len(ln))] = rng.choice(b"\r\n.")
        block = b"".join(bytes(ln) + b"\r\n" for ln in lines)
        for limit in (1, 76, 998, 1001):
            want = max(map(len, block.split(b"\r\n"))) > limit
            assert _longest_over(block, limit) is want, (lengths, limit)


def _dotted_message(size: int) -> bytes:
    """A plain message of about ``size`` bytes whose every body line starts with a dot
    (so each piece the reader or the sender cuts begins with a transparency dot), with
    lines of one dot, of 998 bytes (RFC 5321 §4.5.3.1.6's longest) and empty ones."""
    head = (
        f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: dots\r\nMessage-ID: <dots@a.test>\r\n"
        "Date: Sat, 21 Nov 2026 12:00:00 +0000\r\n\r\n"
    ).encode()
    rng = random.Random(5)
    lines, n = [], len(head)
    while n < size:
        line = rng.choice([b".", b"..", b".a" + b"b" * rng.randrange(75), b"." + b"c" * 997, b""])
        lines.append(line + b"\r\n")
        n += len(line) + 2
    return head + b"".join(lines)


def test_a_multi_mb_dotted_message_is_delivered_byte_for_byte(
    notary_dir: Path, smtp_sink: Any
) -> None:
    # Through the relay's DATA reader (pieces as the TLS records bring them), the
    # staging file, the spool and the delivery in CHUNK pieces to aiosmtpd, whose own
    # reader removes the dots again: the recipient gets exactly the submitted bytes.
    data = _dotted_message(2 * CHUNK + 12345)
    assert data.count(b"\r\n.") > 2 * CHUNK // 1000
    configure(notary_dir, relay_retry_initial=0.2, relay_max_message_bytes=8 * CHUNK)
    relay = RelayNotary(notary_dir, smtp_sink.port)
    relay.start()
    try:
        with relay.connect() as s:
            s.login(ALICE, relay.token)
            submit_accepted(s, data)
        wait_for(lambda: smtp_sink.messages, what="the delivery")
    finally:
        relay.proc.stop()
    delivered_as_submitted(smtp_sink, data)

"""The armor reader on a range of the message, not a copy of it (CPU per large message).

:func:`notary.relay.ciphertext.armored_openpgp_message` reads the part body
``data[lo:hi]`` in place. Whatever lies around the range must not change what it
finds, and the base64 it gathers must be the armor's lines, each stripped of
white space, the checksum lines (``=``...) left out: a line-by-line reference here.
"""

from __future__ import annotations

import base64
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from notary.relay.ciphertext import _base64_text, armored_openpgp_message

_PIECES = [b"\r\n", b"\n", b"\r", b" ", b"\t", b"=", b"=AAAA", b"QUJD", b"\x0b", b"-", b"x"]


def per_line(body: bytes) -> bytes:
    """The reference: split at LF, strip each line, drop the checksum lines."""
    return b"".join(line.strip() for line in body.split(b"\n") if not line.startswith(b"="))


around = st.binary(max_size=8).map(lambda b: b.replace(b"=", b"x"))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES), max_size=40), st.binary(max_size=8), st.binary(max_size=8)
)
def test_base64_of_a_range_is_the_stripped_lines(
    pieces: list[bytes], before: bytes, after: bytes
) -> None:
    body = b"".join(pieces)
    text = before + body + after
    assert _base64_text(text, len(before), len(before) + len(body)) == per_line(body)


def _armor(crlf: bytes) -> bytes:
    pkesk = b"\x03" + os.urandom(8) + b"\x01" + os.urandom(130)
    seipd = b"\x01" + os.urandom(3000)
    packets = bytes([0xC1, len(pkesk)]) + pkesk + bytes([0xD2, 0xFF])
    packets += len(seipd).to_bytes(4, "big") + seipd
    b64 = base64.b64encode(packets)
    lines = crlf.join(b64[k : k + 64] for k in range(0, len(b64), 64))
    return (
        b"-----BEGIN PGP MESSAGE-----"
        + crlf
        + crlf
        + lines
        + crlf
        + b"=AAAA"
        + crlf
        + b"-----END PGP MESSAGE-----"
        + crlf
    )


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([b"\r\n", b"\n"]),
    st.sampled_from([b"", b"\r\n", b"-----BEGIN PGP MESSAGE-----", b"x", b"=A\r\n"]),
    st.sampled_from([b"", b"\r\n", b"-----END PGP MESSAGE-----\r\n", b"x", b"\r\n=A"]),
    st.sampled_from([b"", b"  \r\n", b"junk"]),
)
def test_the_armor_is_found_in_its_range_whatever_surrounds_it(
    crlf: bytes, before: bytes, after: bytes, inner: bytes
) -> None:
    part = inner + _armor(crlf)
    alone = armored_openpgp_message(part)
    assert (alone is not None) == (inner.strip() == b"")  # only white space may precede it
    lo = len(before)
    got = armored_openpgp_message(before + part + after, lo, lo + len(part))
    assert got == (None if alone is None else (alone[0] + lo, alone[1] + lo))
    if alone is not None:
        assert part[alone[0] : alone[1]].startswith(b"-----BEGIN PGP MESSAGE-----")

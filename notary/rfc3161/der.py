"""DER (ITU-T X.690 §8, §10) for RFC 3161: a small writer and a strict, bounded reader.

The writer encodes the few types a TimeStampResp needs (SEQUENCE, SET, INTEGER,
OBJECT IDENTIFIER, OCTET STRING, UTF8String, named-bit BIT STRING, context tags)
with minimal lengths. The reader reads one TLV at a time inside explicit bounds,
low tag numbers only, definite minimal lengths only, and raises
:class:`DerError` on anything else. The TSA's request parser, the token
template and the template check of tokens all use these, so there is one DER
reader and one writer in the RFC 3161 package.
"""

from __future__ import annotations

import functools

__all__ = [
    "DerError",
    "check_int",
    "children",
    "dotted",
    "integer",
    "length",
    "named_bit",
    "octets",
    "oid",
    "read",
    "seq",
    "tlv",
    "uint",
    "utf8",
]

#: Longest length field read, in octets (a TLV of up to 4 GiB; the callers bound far lower).
_MAX_LENGTH_OCTETS = 4


class DerError(Exception):
    """The bytes are not the DER this reader accepts (truncated, non-minimal, unexpected)."""


# --- writing -------------------------------------------------------------------------


def length(n: int) -> bytes:
    """The DER length octets of ``n`` content octets (X.690 §8.1.3, definite, minimal)."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    """One TLV with the one-octet ``tag``."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    if n < 0x100:
        return bytes((tag, 0x81, n)) + content
    if n < 0x10000:
        return bytes((tag, 0x82, n >> 8, n & 0xFF)) + content
    return bytes((tag,)) + length(n) + content


def seq(*parts: bytes) -> bytes:
    """A SEQUENCE of the given encoded parts."""
    return tlv(0x30, b"".join(parts))


def integer(n: int) -> bytes:
    """An INTEGER, two's complement, minimal (X.690 §8.3)."""
    size = n.bit_length() // 8 + 1  # room for the sign bit
    return tlv(0x02, n.to_bytes(size, "big", signed=True))


def oid(dotted_text: str) -> bytes:
    """An OBJECT IDENTIFIER from its dotted form (X.690 §8.19)."""
    arcs = [int(a) for a in dotted_text.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"not an object identifier: {dotted_text!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def octets(b: bytes) -> bytes:
    """An OCTET STRING."""
    return tlv(0x04, b)


def utf8(s: str) -> bytes:
    """A UTF8String."""
    return tlv(0x0C, s.encode())


def named_bit(bit: int) -> bytes:
    """A named-bit BIT STRING with the one bit ``bit`` set, trailing zero bits dropped
    (X.690 §11.2.2), as PKIFailureInfo needs."""
    nbytes = bit // 8 + 1
    body = bytearray(nbytes)
    body[bit // 8] = 0x80 >> (bit % 8)
    unused = nbytes * 8 - (bit + 1)
    return tlv(0x03, bytes((unused,)) + bytes(body))


# --- reading -------------------------------------------------------------------------


def read(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read one DER TLV at ``pos`` within ``end``: (tag, content start, content end)."""
    if pos + 2 > end:
        raise DerError("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag number")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        n = first
    else:
        k = first & 0x7F
        if k == 0 or k > _MAX_LENGTH_OCTETS or pos + k > end:
            raise DerError("bad length")
        n = int.from_bytes(buf[pos : pos + k], "big")
        if buf[pos] == 0 or n < 0x80:
            raise DerError("length not minimal")
        pos += k
    if pos + n > end:
        raise DerError("truncated")
    return tag, pos, pos + n


def children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, TLV start, content start, content end) of each TLV in ``buf[start:end]``."""
    out = []
    while start < end:
        t, s, e = read(buf, start, end)
        out.append((t, start, s, e))
        start = e
    return out


def check_int(buf: bytes, start: int, end: int) -> None:
    """Require the INTEGER content ``buf[start:end]`` to be non-empty and minimal."""
    if end == start:
        raise DerError("empty integer")
    if end - start > 1 and (
        (buf[start] == 0 and buf[start + 1] < 0x80)
        or (buf[start] == 0xFF and buf[start + 1] >= 0x80)
    ):
        raise DerError("integer not minimal")


def uint(buf: bytes, start: int, end: int) -> int:
    """The value of a non-negative INTEGER's content, minimal encoding only."""
    check_int(buf, start, end)
    if buf[start] & 0x80:
        raise DerError("negative integer")
    return int.from_bytes(buf[start:end], "big")


@functools.lru_cache(maxsize=256)
def dotted(content: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's content octets (minimal arcs only).

    Cached: a TSA issues under one or a few policies.
    """
    if not content or content[-1] & 0x80:
        raise DerError("bad object identifier")
    arcs: list[int] = []
    value, fresh = 0, True
    for b in content:
        if fresh and b == 0x80:
            raise DerError("object identifier arc not minimal")
        value = (value << 7) | (b & 0x7F)
        fresh = not b & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])

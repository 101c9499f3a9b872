"""Is a body really ciphertext? OpenPGP messages (RFC 9580 §§4, 5.1, 5.3, 6) and CMS
EnvelopedData / AuthEnvelopedData (RFC 5652 §6, RFC 5083).

The relay does not scan what it cannot read, and records ``encrypted: true``
in its evidence; a label (``Content-Type: multipart/encrypted``) is not
enough for either. These functions look at the bytes: an armored OpenPGP
message must decode and consist of one or more session-key packets (PKESK,
tag 1, or SKESK, tag 3; marker packets, tag 10, allowed) followed by exactly
one encrypted-data packet (SED 9, SEIPD 18, OCB 20) that ends where the data
ends. A CMS object must be a DER ContentInfo of type id-envelopedData or
id-ct-authEnvelopedData, with nothing after it.
"""

from __future__ import annotations

import binascii
from itertools import filterfalse
from operator import methodcaller

from asn1crypto import cms

_ESK_TAGS = (1, 3)
_MARKER = 10
_DATA_TAGS = (9, 18, 20)
_BEGIN = b"-----BEGIN PGP MESSAGE-----"
_END = b"\n-----END PGP MESSAGE-----"
_CHECKSUM_LINE = methodcaller("startswith", b"=")


class _Malformed(Exception):
    pass


def _length(data: bytes, i: int, new: bool, lentype: int) -> tuple[int, int, bool]:
    """(body length, offset of the body, partial?) of the header length at ``i``."""
    if not new:
        if lentype == 3:
            return len(data) - i, i, False
        n = (1, 2, 4)[lentype]
        if i + n > len(data):
            raise _Malformed
        return int.from_bytes(data[i : i + n], "big"), i + n, False
    if i >= len(data):
        raise _Malformed
    o1 = data[i]
    if o1 < 192:
        return o1, i + 1, False
    if o1 < 224:
        if i + 2 > len(data):
            raise _Malformed
        return ((o1 - 192) << 8) + data[i + 1] + 192, i + 2, False
    if o1 == 255:
        if i + 5 > len(data):
            raise _Malformed
        return int.from_bytes(data[i + 1 : i + 5], "big"), i + 5, False
    return 1 << (o1 & 0x1F), i + 1, True


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, first body bytes) of each packet; raise _Malformed unless they tile ``data``."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        b = data[i]
        if not b & 0x80:
            raise _Malformed
        new = bool(b & 0x40)
        tag = b & 0x3F if new else (b >> 2) & 0x0F
        n, start, partial = _length(data, i + 1, new, b & 3)
        body_start = start
        while partial:  # RFC 9580 §4.2.1.4: chunks until a definite length
            start += n
            n, start, partial = _length(data, start, True, 0)
        end = start + n
        if end > len(data):
            raise _Malformed
        out.append((tag, data[body_start : body_start + 1]))
        i = end
    return out


def is_openpgp_message(binary: bytes) -> bool:
    """True when ``binary`` is an encrypted OpenPGP message (see the module docstring)."""
    try:
        packets = [(t, b) for t, b in _packets(binary) if t != _MARKER]
    except _Malformed:
        return False
    if len(packets) < 2:
        return False
    *esks, (last, _) = packets
    versions = {1: (3, 6), 3: (4, 5, 6)}
    return last in _DATA_TAGS and all(
        t in _ESK_TAGS and b[:1] and b[0] in versions[t] for t, b in esks
    )


def _armor(text: bytes, lo: int, hi: int) -> tuple[int, int, int, int] | None:
    """Where the armor block lies in ``text[lo:hi]`` (BEGIN to the end of the END line) and
    its content (after the BEGIN line, up to the CRLF of the END line), when the block is
    all ``text[lo:hi]`` holds, white space aside.

    With ``find``, not a regular expression: the content is megabytes of base64.
    """
    start = text.find(_BEGIN, lo, hi)
    if start < 0 or text[lo:start].strip():
        return None
    i = start + len(_BEGIN)
    while i < hi and text[i : i + 1] in (b" ", b"\t"):
        i += 1
    i += i < hi and text[i : i + 1] == b"\r"
    if i >= hi or text[i : i + 1] != b"\n":
        return None
    end = text.find(_END, i + 1, hi)
    if end < 0 or text[end + len(_END) : hi].strip():
        return None
    content_end = end - (end > i + 1 and text[end - 1 : end] == b"\r")
    return start, i + 1, content_end, end + len(_END)


def _base64_text(text: bytes, lo: int, hi: int) -> bytes:
    """The armor's base64 in ``text[lo:hi]``: each line stripped of white space, the
    checksum line (``=``, any line that starts so) left out.

    On the range, not a copy of it: the text is megabytes, and each copy of it costs
    as much as a search (a fresh buffer's page faults).
    """
    if text.count(b"\r", lo, hi) != text.count(b"\r\n", lo, hi) or any(
        text.find(c, lo, hi) >= 0 for c in (b" ", b"\t", b"\x0b", b"\x0c")
    ):  # other white space than line ends: strip line by line (C iterators still)
        lines = text[lo:hi].split(b"\n")
        return b"".join(map(bytes.strip, filterfalse(_CHECKSUM_LINE, lines)))
    # Only CRLF/LF line ends (as gpg writes): cut out the checksum lines, then the line ends.
    view, pieces = memoryview(text), []
    i = lo  # the start of what is kept next (a line start, or the LF before one)
    if text.startswith(b"=", lo, hi):  # a checksum line first
        k = text.find(b"\n", lo, hi)
        i = hi if k < 0 else k
    while (j := text.find(b"\n=", i, hi)) >= 0:  # a checksum line starts at j + 1
        pieces.append(view[i:j])
        k = text.find(b"\n", j + 1, hi)
        i = hi if k < 0 else k
    pieces.append(view[i:hi])
    return b"".join(pieces).translate(None, b"\r\n")


def armored_openpgp_message(
    text: bytes, lo: int = 0, hi: int | None = None
) -> tuple[int, int] | None:
    """Where the armor block of ``text[lo:hi]`` (a MIME part body) lies when it is all the
    part holds and it decodes to an encrypted OpenPGP message; else None."""
    hi = len(text) if hi is None else hi
    found = _armor(text, lo, hi)
    if found is None:
        return None
    start, pos, content_end, after = found
    while True:  # armor headers (RFC 9580 §6.2) end at the first blank line
        nl = text.find(b"\n", pos, content_end)
        line_end = content_end if nl < 0 else nl
        if not text[pos:line_end].strip():
            break
        if nl < 0:
            return None
        pos = nl + 1
    b64 = _base64_text(text, min(line_end + 1, content_end), content_end)
    try:
        binary = binascii.a2b_base64(b64, strict_mode=True)
    except binascii.Error:
        return None
    return (start, after) if is_openpgp_message(binary) else None


def is_cms_enveloped(der: bytes) -> bool:
    """True when ``der`` is a CMS ContentInfo holding (Auth)EnvelopedData."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        kind = info["content_type"].native
        if kind not in ("enveloped_data", "authenticated_enveloped_data"):
            return False
        content = info["content"]
        recipients = content["recipient_infos"]
        return (
            len(recipients) > 0
            and content["encrypted_content_info"]["content_type"].native is not None
        )
    except (ValueError, TypeError, KeyError):
        return False

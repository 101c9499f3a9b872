"""What the certificate says of message.eml: From:, To:/Cc:, Subject: and where its
OpenPGP parts are (RFC 5322 header fields read by the email package, compat32; RFC 3156
multipart/signed and multipart/encrypted split by :mod:`certmail.mime`, which keeps
the exact bytes). Best effort: a message without a readable header still verifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import getaddresses

from certmail.bundle.documents.facts import MimeLayout
from certmail.mime import MAX_HEADER_BLOCK, Entity, parse_entity
from keys.errors import MalformedError

__all__ = ["HeaderFacts", "header_facts"]

#: Longest value shown for any one field.
_SHOWN = 300


@dataclass(frozen=True)
class HeaderFacts:
    """The facts of message.eml's header the certificate states."""

    sender: str
    recipients: tuple[str, ...]
    subject: str | None
    layout: MimeLayout | None


def _text(value: object) -> str:
    """A header value with RFC 2047 encoded words decoded, cut to the shown length (a
    value without ``=?`` has none: decode_header returns it as it is, make_header too)."""
    text = str(value)
    if "=?" not in text:
        return text[:_SHOWN]
    try:
        return str(make_header(decode_header(text)))[:_SHOWN]
    except (ValueError, LookupError, UnicodeError, TypeError):
        return text[:_SHOWN]


def header_facts(message: bytes) -> HeaderFacts:
    """The :class:`HeaderFacts` of ``message``. Only the header block is copied: the
    OpenPGP parts are located in place (message.eml may be hundreds of MB)."""
    end = message.find(b"\r\n\r\n", 0, MAX_HEADER_BLOCK + 4)
    try:
        entity = parse_entity(message[: end + 4] if end >= 0 else message[: MAX_HEADER_BLOCK + 4])
    except (MalformedError, ValueError, LookupError):
        return HeaderFacts("(message.eml has no readable header)", (), None, None)
    h = entity.headers
    sender = _text(h.get("From", "")) or "(no From: header)"
    rcpts: list[str] = []
    for _name, addr in getaddresses([str(v) for k in ("To", "Cc") for v in h.get_all(k, [])]):
        if addr and addr not in rcpts:
            rcpts.append(addr[:_SHOWN])
    subject = _text(h["Subject"]) if h.get("Subject") is not None else None
    layout = _openpgp_layout(message, entity) if end >= 0 else None
    return HeaderFacts(sender, tuple(rcpts), subject, layout)


def _part_ranges(raw: bytes, body: int, delim: bytes) -> list[tuple[int, int]] | None:
    """(start, end) in ``raw`` of each body part of the multipart body starting at
    ``body``, as :func:`certmail.mime.split_multipart` splits it (RFC 2046 §5.1.1: a
    delimiter line at the body's start or after CRLF, optional transport padding, then
    CRLF or the end, where a regular expression's ``$`` also takes a final LF), found
    with ``bytes.find`` in place; None when it is not closed. The body's start follows
    the header's CRLF CRLF, so searching for CRLF + delimiter from two bytes before it
    also finds a delimiter on its first line."""
    parts: list[tuple[int, int]] = []
    start: int | None = None
    at = body - 2
    while True:
        hit = raw.find(b"\r\n" + delim, at)
        if hit < 0:
            return None
        pos = hit + 2 + len(delim)
        closing = raw.startswith(b"--", pos)
        rest = pos + 2 if closing else pos
        while raw[rest : rest + 1] in (b" ", b"\t"):
            rest += 1
        if raw.startswith(b"\r\n", rest) or len(raw) - rest == 0 or raw[rest:] == b"\n":
            if start is not None:
                parts.append((start, hit))
            if closing:
                return parts
            start = at = rest + 2  # the next delimiter's CRLF comes after this line's
        else:
            at = hit + 2


def _openpgp_layout(raw: bytes, entity: Entity) -> MimeLayout | None:
    """Byte ranges of the signed part and signature (multipart/signed) or of the
    ciphertext (multipart/encrypted), when the parts are 7bit or 8bit; else None."""
    try:
        ctype = entity.content_type
        if ctype not in ("multipart/signed", "multipart/encrypted"):
            return None
        boundary = entity.param("boundary")
        if not boundary or len(boundary) > 200:
            return None
        ranges = _part_ranges(raw, len(entity.header_block) + 2, b"--" + boundary.encode())
        if ranges is None or len(ranges) != 2:
            return None
        (s0, e0), (s1, e1) = ranges
        window = min(e1, s1 + MAX_HEADER_BLOCK + 4)
        end = raw.find(b"\r\n\r\n", s1, window)
        if end < 0 and e1 > window:
            return None  # no header block within the limit: parse_entity refuses it
        second = parse_entity(raw[s1 : end + 4] if end >= 0 else raw[s1:e1])
        cte = str(second.headers.get("Content-Transfer-Encoding") or "7bit").lower()
    except (MalformedError, ValueError, LookupError, UnicodeError):
        return None
    if cte.strip() not in ("7bit", "8bit"):
        return None
    cut = s1 + len(second.header_block) + 2
    body = (cut, max(0, e1 - cut))
    if ctype == "multipart/signed":
        return MimeLayout("signed", (s0, e0 - s0), body)
    return MimeLayout("encrypted", body)

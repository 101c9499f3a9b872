"""What the certificate says of message.eml: From:, To:/Cc:, Subject: and where its
OpenPGP parts are (RFC 5322 header fields read by the email package, compat32; RFC 3156
multipart/signed and multipart/encrypted split by :mod:`certmail.mime`, which keeps
the exact bytes). Best effort: a message without a readable header still verifies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import getaddresses

from certmail.bundle.documents.facts import MimeLayout
from certmail.mime import Entity, parse_entity, part_spans
from keys.errors import MalformedError
from notary.mime import Buffer

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


def header_facts(message: Buffer, top: Callable[[], Entity] | None = None) -> HeaderFacts:
    """The :class:`HeaderFacts` of ``message``, read in place (no copy of the message);
    ``top`` answers its top entity when the caller has read it already."""
    try:
        entity = parse_entity(message) if top is None else top()
    except (MalformedError, ValueError, LookupError):
        return HeaderFacts("(message.eml has no readable header)", (), None, None)
    h = entity.headers
    sender = _text(h.get("From", "")) or "(no From: header)"
    rcpts: list[str] = []
    for _name, addr in getaddresses([str(v) for k in ("To", "Cc") for v in h.get_all(k, [])]):
        if addr and addr not in rcpts:
            rcpts.append(addr[:_SHOWN])
    subject = _text(h["Subject"]) if h.get("Subject") is not None else None
    return HeaderFacts(sender, tuple(rcpts), subject, _openpgp_layout(entity))


def _openpgp_layout(entity: Entity) -> MimeLayout | None:
    """Byte ranges of the signed part and signature (multipart/signed) or of the
    ciphertext (multipart/encrypted), when the parts are 7bit or 8bit; else None."""
    try:
        ctype = entity.content_type
        if ctype not in ("multipart/signed", "multipart/encrypted"):
            return None
        spans = part_spans(entity)  # offsets into the message: nothing copied
        if len(spans) != 2:
            return None
        (s0, e0), (s1, e1) = spans
        second = parse_entity(entity.buf, s1, e1)
        cte = str(second.headers.get("Content-Transfer-Encoding") or "7bit").lower()
    except (MalformedError, ValueError, LookupError):
        return None
    if cte.strip() not in ("7bit", "8bit"):
        return None
    body = (second.body_start, second.end - second.body_start)
    if ctype == "multipart/signed":
        return MimeLayout("signed", (s0, e0 - s0), body)
    return MimeLayout("encrypted", body)

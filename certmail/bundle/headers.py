"""What the certificate says of message.eml: From:, To:/Cc:, Subject: and where its
OpenPGP parts are (RFC 5322 header fields read by the email package, compat32; RFC 3156
multipart/signed and multipart/encrypted split by :mod:`certmail.mime`, which keeps
the exact bytes). Best effort: a message without a readable header still verifies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email.utils import getaddresses  # imported by cryptography.x509 anyway
from typing import TYPE_CHECKING, NamedTuple

from keys import fastpath
from keys.errors import MalformedError

if TYPE_CHECKING:
    from certmail.bundle.documents.feature_facts import MimeLayout
    from certmail.mime import Entity
    from notary.mime import Buffer

__all__ = ["HeaderFacts", "header_facts"]

#: Longest value shown for any one field.
_SHOWN = 300
#: The largest header block :func:`_simple_header` reads (certmail.mime.MAX_HEADER_BLOCK).
_MAX_BLOCK = 256 * 1024
#: A field :func:`_simple_header` reads: a name, a colon, printable ASCII; nothing folded.
_SIMPLE_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+): *([\x20-\x7e]*)")
#: Content-Type words after which only the full reader knows the layout (OpenPGP/MIME,
#: S/MIME: multipart/signed, multipart/encrypted, application/(x-)pkcs7-mime).
_LAYOUT_WORDS = (b"signed", b"encrypted", b"pkcs7")


class HeaderFacts(NamedTuple):
    """The facts of message.eml's header the certificate states (a named tuple: its class
    costs start-up a third of a frozen dataclass's)."""

    sender: str
    recipients: tuple[str, ...]
    subject: str | None
    layout: MimeLayout | None
    #: Read without the MIME reader (:func:`_simple_header`): the top entity is then
    #: neither OpenPGP/MIME nor S/MIME (its Content-Type names no such type).
    plain: bool = False


def _text(value: object) -> str:
    """A header value with RFC 2047 encoded words decoded, cut to the shown length (a
    value without ``=?`` has none: decode_header returns it as it is, make_header too)."""
    text = str(value)
    if "=?" not in text:
        return text[:_SHOWN]
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(text)))[:_SHOWN]
    except (ValueError, LookupError, UnicodeError, TypeError):
        return text[:_SHOWN]


def header_facts(message: Buffer, top: Callable[[], Entity] | None = None) -> HeaderFacts:
    """The :class:`HeaderFacts` of ``message``, read in place (no copy of the message);
    ``top`` answers its top entity when the caller has read it already.

    A plain header block is read by :func:`_simple_header`, a benchmarked fast path
    (docs/proof-bundle.md: it spares a plain bundle's verification the MIME reader and
    the email package) that ``CERTMAIL_REFERENCE_ONLY=1`` switches off."""
    simple = _simple_header(message) if fastpath.enabled() else None
    if simple is not None:
        return simple
    from certmail.mime import parse_entity

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


def _simple_header(message: Buffer) -> HeaderFacts | None:
    """:func:`header_facts` of the common header block, read without the MIME reader and
    the email package's Message: every line a ``Name: value`` field of printable ASCII
    (no folding, tabs, encoded words, bare CR or LF), a Content-Type (if any) naming no
    signed, encrypted or pkcs7 type. None for any other block (the full reader decides).
    For such a block compat32 gives each value as the text after the colon less leading
    blanks, and :func:`_text` is the value cut (test: equal to the full reader's answer)."""
    end = message.find(b"\r\n\r\n", 0, _MAX_BLOCK + 4)
    if end <= 0 or end > _MAX_BLOCK:
        return None
    block = bytes(message[:end])
    if not block.isascii() or b"=?" in block:
        return None
    fields: list[tuple[str, str]] = []
    match = _SIMPLE_FIELD.fullmatch
    for line in block.split(b"\r\n"):
        m = match(line)
        if m is None:
            return None
        fields.append((m.group(1).decode("ascii").lower(), m.group(2).decode("ascii")))
    ctype = next((v for k, v in fields if k == "content-type"), "").lower().encode("ascii")
    if any(word in ctype for word in _LAYOUT_WORDS):
        return None
    sender = next((v for k, v in fields if k == "from"), "")[:_SHOWN] or "(no From: header)"
    rcpts: list[str] = []
    for _name, addr in getaddresses([v for want in ("to", "cc") for k, v in fields if k == want]):
        if addr and addr not in rcpts:
            rcpts.append(addr[:_SHOWN])
    subject = next((v[:_SHOWN] for k, v in fields if k == "subject"), None)
    return HeaderFacts(sender, tuple(rcpts), subject, None, plain=True)


def _openpgp_layout(entity: Entity) -> MimeLayout | None:
    """Byte ranges of the signed part and signature (multipart/signed) or of the
    ciphertext (multipart/encrypted), when the parts are 7bit or 8bit; else None."""
    try:
        ctype = entity.content_type
        if ctype not in ("multipart/signed", "multipart/encrypted"):
            return None
        from certmail.mime import parse_entity, part_spans

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
    from certmail.bundle.documents.feature_facts import MimeLayout

    body = (second.body_start, second.end - second.body_start)
    if ctype == "multipart/signed":
        return MimeLayout("signed", (s0, e0 - s0), body)
    return MimeLayout("encrypted", body)

"""Raw-bytes MIME (RFC 2045, RFC 2046 §5.1.1) and header fields (RFC 5322, RFC 2047).

The one MIME splitter and the one header-field reader of certmail. Parsing
keeps the exact bytes of every entity, so a signed part can be handed to gpg and
a message hashed as sent (Python's email package would re-serialise them). The
From field is read strictly (exactly one mailbox, RFC 5322 §3.4) by
:func:`single_mailbox`. This module imports no GnuPG: the bundle verifier uses
it too.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from email.header import Header, decode_header, make_header
from email.headerregistry import HeaderRegistry
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from keys.errors import MalformedError

MAX_HEADER_BLOCK = 256 * 1024


@dataclass(frozen=True)
class Entity:
    """One MIME entity as raw bytes: its header block, parsed fields, and body."""

    raw: bytes
    header_block: bytes
    body: bytes
    headers: Message

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    def param(self, name: str) -> str | None:
        v = self.headers.get_param(name)
        if v is None or isinstance(v, tuple):
            return None if v is None else str(v[2])
        return str(v)


def canonicalize(raw: bytes) -> bytes:
    """``raw`` with CRLF line ends (messages saved by MUAs often have bare LF)."""
    if b"\n" not in raw.replace(b"\r\n", b""):
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def parse_entity(raw: bytes) -> Entity:
    """Split ``raw`` (CRLF canonical) into header block and body."""
    if raw.startswith(b"\r\n"):
        return Entity(raw, b"", raw[2:], Message())
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        if raw.endswith(b"\r\n") and b":" in raw:
            end = len(raw) - 2
        else:
            raise MalformedError("not a MIME entity: no end of the header block")
    if end > MAX_HEADER_BLOCK:
        raise MalformedError("header block too large")
    block = raw[: end + 2]
    first = block.split(b"\r\n", 1)[0]
    if b":" not in first or first[:1] in (b" ", b"\t"):
        raise MalformedError("not a MIME entity: the first line is not a header field")
    headers = BytesHeaderParser(policy=compat32).parsebytes(block)
    return Entity(raw, block, raw[end + 4 :], headers)


def split_multipart(entity: Entity) -> list[bytes]:
    """The raw bytes of each body part of a multipart entity (RFC 2046 §5.1.1)."""
    boundary = entity.param("boundary")
    if not boundary or len(boundary) > 200:
        raise MalformedError(f"{entity.content_type} without a usable boundary parameter")
    body = entity.body
    delim = b"--" + boundary.encode("ascii", "replace")
    # Positions of delimiter lines: at the start or after CRLF.
    pattern = re.compile(b"(?:^|\r\n)" + re.escape(delim) + b"(--)?[ \t]*(?:\r\n|$)")
    parts: list[bytes] = []
    start: int | None = None
    closed = False
    for m in pattern.finditer(body):
        if start is not None:
            parts.append(body[start : m.start()])
        if m.group(1):
            closed = True
            break
        start = m.end()
    if not closed:
        raise MalformedError("multipart body has no closing boundary (truncated?)")
    if not parts:
        raise MalformedError("multipart body has no parts")
    return parts


def decode_body(entity: Entity) -> bytes:
    """The body of a leaf entity with its Content-Transfer-Encoding removed."""
    cte = str(entity.headers.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    body = entity.body
    if cte == "base64":
        try:
            return binascii.a2b_base64(body.replace(b"\r\n", b""), strict_mode=False)
        except binascii.Error:
            raise MalformedError("a base64 part is not valid base64") from None
    if cte == "quoted-printable":
        return binascii.a2b_qp(body)
    if cte in ("7bit", "8bit", "binary"):
        return body
    raise MalformedError(f"unknown Content-Transfer-Encoding {cte!r}")


#: The header fields :func:`header_fields` reads (the RFC 9788 protected ones).
FIELDS = ("From", "To", "Cc", "Subject", "Date", "Message-ID")
NOTARY_FIELD = "Certmail-Notary"


def header_fields(msg: Message) -> dict[str, str]:
    """The fields of :data:`FIELDS` (and the first ``Certmail-Notary``), RFC 2047 decoded."""
    out: dict[str, str] = {}
    for name in FIELDS:
        v = msg.get(name)
        if v is not None:
            out[name] = decode_field(str(v))
    for v in msg.get_all(NOTARY_FIELD) or []:
        out.setdefault(NOTARY_FIELD, decode_field(str(v)))
    return out


def decode_field(value: str) -> str:
    """A field value for display: RFC 2047 encoded-words decoded, line breaks removed."""
    try:
        return str(make_header(decode_header(value))).replace("\r", "").replace("\n", "")
    except (ValueError, LookupError, UnicodeDecodeError):
        return value.replace("\r", "").replace("\n", "")


def single_mailbox(value: str | Header | None) -> str | None:
    """The addr-spec of a field that holds exactly one mailbox, or None (RFC 5322 §3.4).

    Strict: the raw (not RFC 2047 decoded) value must parse without any defect
    as one mailbox outside a group, with a local part and a domain. Display
    names and comments are ignored, so ``"bob@example.net" <ceo@example.org>``
    and ``ceo@example.org (bob@example.net)`` are both ``ceo@example.org``.
    """
    if value is None:
        return None
    unfolded = str(value).replace("\r\n", "")
    if "\r" in unfolded or "\n" in unfolded:
        return None
    try:
        # compat32 keeps raw 8-bit bytes as surrogates: they must be UTF-8 (RFC 6532).
        unfolded = unfolded.encode("utf-8", "surrogateescape").decode("utf-8")
        field = _REGISTRY("From", unfolded)
        groups, defects = field.groups, field.defects  # type: ignore[attr-defined]
    except (UnicodeError, ValueError, IndexError, TypeError, AttributeError):
        return None
    if defects or len(groups) != 1 or groups[0].display_name is not None:
        return None
    (box,) = groups[0].addresses or (None,)
    if box is None or len(groups[0].addresses) != 1 or not box.username or not box.domain:
        return None
    return str(box.addr_spec)


def same_address(a: str, b: str) -> bool:
    """Whether two addr-specs name one mailbox: compared whole, case-insensitively.

    The rule of the bundle verifier and of gpg's user-ID lookup: the domain is
    case-insensitive (RFC 5321 §2.4), and the local part is compared
    case-insensitively too (no mail system certmail meets distinguishes them).
    """
    return a.lower() == b.lower()


_REGISTRY = HeaderRegistry()

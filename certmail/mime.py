"""Raw-bytes MIME (RFC 2045, RFC 2046 §5.1.1): the one MIME splitter of certmail.

Parsing keeps the exact bytes of every entity, so a signed part can be handed to
gpg and a message hashed as sent (Python's email package would re-serialise
them). This module imports no GnuPG: the bundle verifier uses it too.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
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

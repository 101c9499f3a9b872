"""The bytes the notary saw, found again in a delivered copy (docs/formats.md).

RFC 5322 §2.1 and §2.3: a message is lines ended by CRLF. Mail stores keep
other forms (Maildir and mbox files end lines with LF; mbox adds a
``From `` separator line and quotes body lines that start with ``From ``),
and delivery prepends header fields: the notary relay its ``Received``,
``Certmail-Evidence: sha256=...; notary=...`` and ``DKIM-Signature`` fields,
the recipient's servers RFC 5321 §4.4 trace fields (``Return-Path``,
``Received``, ``Delivered-To``...) above them. The rule, applied wherever a
received message is hashed:

1. the copy is put in canonical form (CRLF line ends: :func:`certmail.mime.canonicalize`;
   an mbox ``From `` line and its quoting are undone by :func:`from_mbox`);
2. with a ``Certmail-Evidence`` field (relay mode), the notarized bytes are the
   canonical copy from one of the header-field boundaries at or below that
   field on, whose SHA-256 is the one named; none matching is a
   :class:`~keys.errors.VerificationError` (changed after the notary saw it);
3. without one (direct mode), the leading trace fields (:data:`TRACE_FIELDS`)
   are dropped and the rest is the notarized bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from keys.errors import VerificationError

from ..mime import canonicalize

__all__ = [
    "EVIDENCE_HEADER",
    "TRACE_FIELDS",
    "Notarized",
    "from_mbox",
    "notarized",
    "notarized_bytes",
]

EVIDENCE_HEADER = "Certmail-Evidence"
#: Fields a receiving mail system may prepend (RFC 5321 §4.4 trace fields and
#: common delivery fields); stripped from the top when no Certmail-Evidence
#: field names the hash.
TRACE_FIELDS = frozenset(
    {
        "return-path",
        "received",
        "delivered-to",
        "x-original-to",
        "received-spf",
        "authentication-results",
        "arc-seal",
        "arc-message-signature",
        "arc-authentication-results",
        "x-envelope-to",
        "envelope-to",
    }
)
_EVIDENCE_RE = re.compile(rb"sha256=([0-9a-f]{64})(?:;\s*notary=([!-:<-~]+))?")
_HEADER_LIMIT = 256 * 1024
_MBOX_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)


@dataclass(frozen=True)
class Notarized:
    """Where the notarized bytes begin in the canonical copy, and their SHA-256."""

    sha256: str
    start: int  # offset in the canonical (CRLF) copy
    #: True when a Certmail-Evidence field named the hash (relay mode): the
    #: hash was checked against the bytes; False: computed (direct mode).
    named: bool
    #: The log origin the Certmail-Evidence field names, if any.
    origin: str | None = None


def from_mbox(raw: bytes) -> bytes:
    """One message as an mbox holds it, as it was delivered (mboxrd unquoting).

    Drops the ``From `` separator line and the blank line mbox writers append,
    and removes one ``>`` from lines that read ``>From ``, ``>>From ``...
    (the mboxrd rule; Postfix, Dovecot and mutt quote ``From `` lines so).
    A copy that is not in mbox form is returned as it is.
    """
    if not raw.startswith(b"From "):
        return raw
    nl = raw.find(b"\n")
    body = raw[nl + 1 :] if nl >= 0 else b""
    if body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    elif body.endswith(b"\n\n"):
        body = body[:-1]
    return _MBOX_QUOTED.sub(rb"\1", body)


def _field_starts(raw: bytes) -> list[tuple[int, bytes]]:
    """(offset, lower-case name) of each header field of CRLF ``raw``, up to the blank line."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    end = min(len(raw), _HEADER_LIMIT)
    while pos < end:
        nl = raw.find(b"\r\n", pos)
        line = raw[pos : nl if nl >= 0 else end]
        if not line:
            break
        if line[:1] not in (b" ", b"\t"):
            out.append((pos, line.split(b":", 1)[0].strip().lower()))
        if nl < 0:
            break
        pos = nl + 2
    return out


def notarized_bytes(raw: bytes) -> tuple[bytes, Notarized]:
    """The canonical copy of ``raw`` and where in it the notarized bytes begin.

    Raises :class:`VerificationError` when a Certmail-Evidence field names a
    hash that no part of the copy has.
    """
    copy = canonicalize(from_mbox(raw))
    fields = _field_starts(copy)
    evidence = EVIDENCE_HEADER.lower().encode()
    for i, (off, name) in enumerate(fields):
        if name != evidence:
            continue
        m = _EVIDENCE_RE.search(copy[off : off + 1000].split(b"\r\n", 1)[0])
        if m is None:
            continue
        claimed = m.group(1).decode()
        origin = m.group(2).decode() if m.group(2) else None
        for below, _ in fields[i + 1 :]:
            if hashlib.sha256(memoryview(copy)[below:]).hexdigest() == claimed:
                return copy, Notarized(claimed, below, True, origin)
        raise VerificationError(
            f"the message names the notarized hash {claimed[:16]}..., but no part of it "
            "from a header field on has that hash: it was changed after the notary saw it"
        )
    start = 0
    for off, name in fields:
        if name.decode("latin-1") not in TRACE_FIELDS:
            start = off
            break
    sha = hashlib.sha256(memoryview(copy)[start:]).hexdigest()
    return copy, Notarized(sha, start, False)


def notarized(raw: bytes) -> Notarized:
    """:func:`notarized_bytes` without the copy."""
    return notarized_bytes(raw)[1]

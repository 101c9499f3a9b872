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
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from keys.errors import VerificationError

from ..mime import FileBuffer, canonicalize, is_canonical

__all__ = [
    "EVIDENCE_HEADER",
    "TRACE_FIELDS",
    "Notarized",
    "from_mbox",
    "notarized",
    "notarized_bytes",
    "notarized_file",
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
#: Files above this size are hashed as a stream when already canonical.
_STREAM_FROM = 16 * 1024 * 1024
_CHUNK = 1024 * 1024
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


def _locate(head: bytes, sha_from: Callable[[int], str]) -> Notarized:
    """Where the notarized bytes begin, from the canonical copy's first bytes.

    ``head`` is the start of the canonical copy (at least its header block, up
    to :data:`_HEADER_LIMIT`); ``sha_from(offset)`` hashes the copy from
    ``offset`` to its end.
    """
    fields = _field_starts(head)
    evidence = EVIDENCE_HEADER.lower().encode()
    for i, (off, name) in enumerate(fields):
        if name != evidence:
            continue
        m = _EVIDENCE_RE.search(head[off : off + 1000].split(b"\r\n", 1)[0])
        if m is None:
            continue
        claimed = m.group(1).decode()
        origin = m.group(2).decode() if m.group(2) else None
        for below, _ in fields[i + 1 :]:
            if sha_from(below) == claimed:
                return Notarized(claimed, below, True, origin)
        raise VerificationError(
            f"the message names the notarized hash {claimed[:16]}..., but no part of it "
            "from a header field on has that hash: it was changed after the notary saw it"
        )
    start = 0
    for off, name in fields:
        if name.decode("latin-1") not in TRACE_FIELDS:
            start = off
            break
    return Notarized(sha_from(start), start, False)


def notarized_bytes(raw: bytes) -> tuple[bytes, Notarized]:
    """The canonical copy of ``raw`` and where in it the notarized bytes begin.

    Raises :class:`VerificationError` when a Certmail-Evidence field names a
    hash that no part of the copy has.
    """
    copy = canonicalize(from_mbox(raw))
    view = memoryview(copy)
    return copy, _locate(copy, lambda start: hashlib.sha256(view[start:]).hexdigest())


def notarized_file(
    path: Path, *, whole_sha256: str | None = None, whole_canonical: bool | None = None
) -> Notarized:
    """:func:`notarized` of the message file at ``path``, read as a stream.

    A large file already in canonical form (what the relay and ``certmail
    send`` write, and what IMAP serves) is hashed in chunks from the offset
    found, never held whole; ``whole_sha256`` (the hash of the whole file, if
    the caller already took it) is reused when the notarized bytes are the
    whole file, and so is ``whole_canonical`` (whether the whole file is canonical,
    :func:`certmail.mime.is_canonical`, found in the same pass). Small files, mbox
    copies and LF-stored copies are read whole and canonicalised
    (:func:`notarized_bytes`).
    """
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_HEADER_LIMIT + 1000)
        if size > _STREAM_FROM and not head.startswith(b"From "):
            buf = FileBuffer(f.fileno())
            if is_canonical(buf) if whole_canonical is None else whole_canonical:

                def sha_from(start: int) -> str:
                    if start == 0 and whole_sha256:
                        return whole_sha256
                    h = hashlib.sha256()
                    for pos in range(start, size, _CHUNK):
                        h.update(buf[pos : min(pos + _CHUNK, size)])
                    return h.hexdigest()

                return _locate(head, sha_from)
    return notarized(path.read_bytes())


def notarized(raw: bytes) -> Notarized:
    """:func:`notarized_bytes` without the copy."""
    return notarized_bytes(raw)[1]

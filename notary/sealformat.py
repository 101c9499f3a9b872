"""Sealed delivery, the notary's wire formats (docs/sealed.md, docs/formats.md §Sealed): pure.

- :func:`parse_registration`: a ``POST /v1/seals`` body (the sender registers K_n).
- :func:`refusal_text` / :func:`parse_refusal_request`: the recipient's signed
  refusal, ``POST /v1/seals/{sha256}/refuse``. Its text is the acknowledgement
  text of :mod:`notary.ackformat` with another title and statement, read by the
  same strict parser.
- :data:`SEALED_EVENTS`: the ETSI EN 319 522-2 names logged by sealed delivery.

Imports nothing of the service, storage, HTTP or gpg.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keys.errors import MalformedError
from notary.ackformat import (
    ACK_TITLE,
    MAX_PUBLIC_KEY,
    MAX_SIGNATURE,
    Ack,
    AckRequest,
    ack_text,
    parse_ack_text,
)
from notary.evidence import parse_time

__all__ = [
    "MAX_REGISTRATION_BODY",
    "MAX_SEAL_RECIPIENTS",
    "REFUSAL_TITLE",
    "SEALED_EVENTS",
    "SealRegistration",
    "parse_refusal_request",
    "parse_registration",
    "refusal_text",
]

#: Event names (ETSI EN 319 522-2) sealed delivery logs, beside ``ContentHandover``.
SEALED_EVENTS = ("ContentHandover", "RejectionByRecipient", "ContentHandoverFailure")
#: Largest ``POST /v1/seals`` body, in bytes.
MAX_REGISTRATION_BODY = 16 * 1024
#: At most this many recipient keys may open one sealed message.
MAX_SEAL_RECIPIENTS = 100
REFUSAL_TITLE = "certmail refusal of a sealed message v1"

_ACK_HEAD = f"{ACK_TITLE}\n\nI received the message identified below.\n\n"
_REFUSAL_HEAD = (
    f"{REFUSAL_TITLE}\n\nI refuse the message identified below: do not hand its content over.\n\n"
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ADDR = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+")
_FPR = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")


@dataclass(frozen=True)
class SealRegistration:
    """A parsed ``POST /v1/seals`` body: K_n and who may have it, until when."""

    sha256: str
    message_id: str
    share: bytes  # K_n, 32 bytes
    fingerprints: tuple[str, ...]  # primary key fingerprints, upper-case hex
    expires: datetime
    recipients: tuple[str, ...]  # the addresses it is for (lower case)


def parse_registration(obj: Any) -> SealRegistration:
    """Validate a ``POST /v1/seals`` body; MalformedError naming what is wrong."""
    if not isinstance(obj, dict):
        raise MalformedError("the body must be a JSON object")
    names = {"sha256", "message_id", "share", "fingerprints", "expires", "recipients"}
    if set(obj) != names:
        raise MalformedError(f"the body has exactly the members {sorted(names)}")
    sha, mid, share, fprs, expires, rcpts = (obj[n] for n in sorted(names, key=_order))
    if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
        raise MalformedError("sha256 must be 64 lowercase hex digits")
    if not isinstance(mid, str) or not mid or len(mid) > 998 or not mid.isprintable():
        raise MalformedError("message_id must be a printable string")
    try:
        key = base64.b64decode(share, validate=True) if isinstance(share, str) else b""
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise MalformedError("share must be 32 bytes in base64")
    if not isinstance(fprs, list) or not 1 <= len(fprs) <= MAX_SEAL_RECIPIENTS:
        raise MalformedError(f"fingerprints must list 1 to {MAX_SEAL_RECIPIENTS} keys")
    if not all(isinstance(f, str) and _FPR.fullmatch(f) for f in fprs):
        raise MalformedError("each fingerprint is 40 or 64 upper-case hex digits")
    if not isinstance(rcpts, list) or not 1 <= len(rcpts) <= MAX_SEAL_RECIPIENTS:
        raise MalformedError(f"recipients must list 1 to {MAX_SEAL_RECIPIENTS} addresses")
    if not all(isinstance(r, str) and _ADDR.fullmatch(r) and len(r) <= 254 for r in rcpts):
        raise MalformedError("each recipient is a bare address (local@domain)")
    if not isinstance(expires, str):
        raise MalformedError("expires must be an RFC 3339 UTC time")
    return SealRegistration(
        sha,
        mid,
        key,
        tuple(dict.fromkeys(fprs)),
        parse_time(expires),
        tuple(dict.fromkeys(r.lower() for r in rcpts)),
    )


def _order(name: str) -> int:
    return ("sha256", "message_id", "share", "fingerprints", "expires", "recipients").index(name)


def refusal_text(ack: Ack) -> str:
    """The exact refusal text to sign (the acknowledgement's fields, another statement)."""
    return _REFUSAL_HEAD + ack_text(ack)[len(_ACK_HEAD) :]


def parse_refusal_text(text: str) -> Ack:
    """Read a refusal written by :func:`refusal_text`; MalformedError otherwise."""
    if not text.startswith(_REFUSAL_HEAD):
        raise MalformedError(f"not a certmail refusal: it must start with {REFUSAL_TITLE!r}")
    return parse_ack_text(_ACK_HEAD + text[len(_REFUSAL_HEAD) :])


def parse_refusal_request(obj: Any) -> AckRequest:
    """Validate a ``POST /v1/seals/{sha256}/refuse`` body (the ``POST /v1/ack`` shape)."""
    if not isinstance(obj, dict):
        raise MalformedError("the body must be a JSON object")
    names = ("sha256", "message_id", "recipient", "signed", "signature", "public_key")
    if set(obj) - set(names):
        raise MalformedError(f"unknown members: {sorted(set(obj) - set(names))}")
    for n in names:
        if not isinstance(obj.get(n), str) or not obj[n]:
            raise MalformedError(f"{n} must be a non-empty string")
    if len(obj["signature"]) > MAX_SIGNATURE or len(obj["public_key"]) > MAX_PUBLIC_KEY:
        raise MalformedError("signature or public_key too large")
    ack = parse_refusal_text(obj["signed"])
    if (ack.sha256, ack.message_id) != (obj["sha256"], obj["message_id"]):
        raise MalformedError("the signed text names another message than the request")
    if ack.recipient.lower() != obj["recipient"].lower():
        raise MalformedError("the signed text names another recipient than the request")
    return AckRequest(
        obj["sha256"],
        obj["message_id"],
        obj["recipient"],
        obj["signed"],
        obj["signature"],
        obj["public_key"],
        ack,
    )

"""Pickup delivery, the notary's wire formats (docs/sealed.md "Pickup", docs/formats.md §10): pure.

- :func:`parse_pickup_registration`: a ``POST /v1/pickups`` body (the sender
  registers K_n, the ciphertext, the hash of the link token and what the page shows).
- :func:`parse_pickup_request`: a ``POST /v1/pickup/{token}/ack`` or ``/refuse``
  body (the address the recipient confirms, and with a passphrase its verifier).
- :func:`token_hash`, :func:`verifier_hash`: what the notary stores instead of the
  link token and the passphrase verifier.

Imports nothing of the service, storage, HTTP or gpg.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keys.errors import MalformedError
from notary.evidence import parse_time

__all__ = [
    "ASSURANCE_LINK",
    "ASSURANCE_PASSPHRASE",
    "KDF_PARAMS",
    "MAX_PICKUP_REQUEST",
    "SCRYPT_N",
    "SCRYPT_P",
    "SCRYPT_R",
    "Passphrase",
    "PickupRegistration",
    "PickupRequest",
    "is_token",
    "parse_pickup_registration",
    "parse_pickup_request",
    "token_hash",
    "verifier_hash",
]

#: The identity assurance a pickup ContentHandover records (statement member ``assurance``).
ASSURANCE_LINK = "holder of the mailbox link"
ASSURANCE_PASSPHRASE = "holder of the link and the passphrase"  # noqa: S105 (a sentence)
#: scrypt's parameters (RFC 7914): N = 2^15, r = 8, p = 1 (32 MiB, about a second in a browser).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
KDF_PARAMS: dict[str, str | int] = {"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
#: Largest ``POST /v1/pickup/{token}/ack`` (or ``/refuse``) body, in bytes.
MAX_PICKUP_REQUEST = 2048
#: The link token: 24 random bytes (192 bits), base64url without padding (32 characters).
TOKEN_CHARS = 32

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
_ADDR = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+")
_TEXT_MAX = 998


@dataclass(frozen=True)
class Passphrase:
    """The passphrase's KDF salt and the hash of its verifier (docs/formats.md §10)."""

    salt: bytes
    verifier_sha256: str


@dataclass(frozen=True)
class PickupRegistration:
    """A parsed ``POST /v1/pickups`` body."""

    sha256: str  # of the notification email, as notarized
    message_id: str
    share: bytes  # K_n
    token_sha256: str  # SHA-256 of the token's ASCII text
    recipient: str  # lower case
    expires: datetime
    content: bytes  # the pickup content (certmail/sealed/pickup.py), AES-256-GCM
    sender: str
    subject: str
    size: int  # bytes of the plaintext (text and attachments)
    date: str
    passphrase: Passphrase | None


@dataclass(frozen=True)
class PickupRequest:
    """A parsed ack or refusal of the pickup page."""

    address: str
    verifier: bytes | None  # scrypt output bytes 32..63, with a passphrase


def token_hash(token: str) -> str:
    """What the notary keeps of a link token: SHA-256 of its text, hex."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def verifier_hash(verifier: bytes) -> str:
    """What the notary keeps of the passphrase's verifier: SHA-256, hex."""
    return hashlib.sha256(verifier).hexdigest()


def is_token(text: str) -> bool:
    return bool(_TOKEN.fullmatch(text))


def _b64(value: Any, name: str, size: int | None = None) -> bytes:
    try:
        out = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        out = None
    if out is None or (size is not None and len(out) != size):
        raise MalformedError(f"{name} must be {size or 'some'} bytes in base64")
    return out


def _text(obj: dict[str, Any], name: str) -> str:
    v = obj.get(name)
    if not isinstance(v, str) or len(v) > _TEXT_MAX or not v.isprintable():
        raise MalformedError(f"{name} must be a printable string of at most {_TEXT_MAX} characters")
    return v


_REG_NAMES = {
    "sha256", "message_id", "share", "token_sha256", "recipient", "expires",
    "content", "sender", "subject", "size", "date", "passphrase",
}  # fmt: skip


def parse_pickup_registration(obj: Any) -> PickupRegistration:
    """Validate a ``POST /v1/pickups`` body; MalformedError naming what is wrong."""
    if not isinstance(obj, dict) or set(obj) != _REG_NAMES:
        raise MalformedError(f"the body is a JSON object with exactly {sorted(_REG_NAMES)}")
    for name in ("sha256", "token_sha256"):
        if not isinstance(obj[name], str) or not _HEX64.fullmatch(obj[name]):
            raise MalformedError(f"{name} must be 64 lowercase hex digits")
    rcpt = obj["recipient"]
    if not isinstance(rcpt, str) or not _ADDR.fullmatch(rcpt) or len(rcpt) > 254:
        raise MalformedError("recipient is a bare address (local@domain)")
    size = obj["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise MalformedError("size must be a non-negative integer")
    if not isinstance(obj["expires"], str):
        raise MalformedError("expires must be an RFC 3339 UTC time")
    mid = _text(obj, "message_id")
    if not mid:
        raise MalformedError("message_id must not be empty")
    pp = obj["passphrase"]
    passphrase = None
    if pp is not None:
        if not isinstance(pp, dict) or set(pp) != {"salt", "verifier_sha256", *KDF_PARAMS}:
            raise MalformedError("passphrase is null or {salt, verifier_sha256, kdf, n, r, p}")
        if any(pp[k] != v for k, v in KDF_PARAMS.items()):
            raise MalformedError(f"the passphrase KDF must be {KDF_PARAMS}")
        if not isinstance(pp["verifier_sha256"], str) or not _HEX64.fullmatch(
            pp["verifier_sha256"]
        ):
            raise MalformedError("passphrase.verifier_sha256 must be 64 lowercase hex digits")
        passphrase = Passphrase(_b64(pp["salt"], "passphrase.salt", 16), pp["verifier_sha256"])
    return PickupRegistration(
        obj["sha256"],
        mid,
        _b64(obj["share"], "share", 32),
        obj["token_sha256"],
        rcpt.lower(),
        parse_time(obj["expires"]),
        _b64(obj["content"], "content"),
        _text(obj, "sender"),
        _text(obj, "subject"),
        size,
        _text(obj, "date"),
        passphrase,
    )


def parse_pickup_request(obj: Any) -> PickupRequest:
    """Validate the pickup page's ack or refusal body: ``{address, verifier}``."""
    if not isinstance(obj, dict) or set(obj) - {"address", "verifier"} or "address" not in obj:
        raise MalformedError("the body is {address, verifier (base64 or null)}")
    addr = obj["address"]
    if not isinstance(addr, str) or not addr.strip() or len(addr) > 254:
        raise MalformedError("address must be your email address")
    v = obj.get("verifier")
    return PickupRequest(addr.strip().lower(), None if v is None else _b64(v, "verifier", 32))

"""The acknowledgement of receipt as text and as a request (docs/ack.md): pure format.

The acknowledgement text is a small line-oriented UTF-8 document the recipient
signs with their OpenPGP key (detached, armored). :func:`ack_text` writes it,
:func:`parse_ack_text` reads it strictly; :func:`parse_ack_request` validates a
``POST /v1/ack`` body. Clients (:mod:`certmail.ack`) and the notary
(:mod:`notary.ack`) both use this module; it imports nothing of the service,
storage, HTTP or gpg.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keys.errors import MalformedError
from notary.evidence import format_time, parse_time

__all__ = [
    "ACK_TITLE",
    "MAX_ACK_BODY",
    "MAX_PUBLIC_KEY",
    "MAX_SIGNATURE",
    "MAX_TEXT",
    "Ack",
    "AckRequest",
    "ack_text",
    "parse_ack_request",
    "parse_ack_text",
]

#: The first line of every acknowledgement text (version 1).
ACK_TITLE = "certmail acknowledgement of receipt v1"
#: Largest ``POST /v1/ack`` body accepted, in bytes (text + signature + public key).
MAX_ACK_BODY = 48 * 1024
MAX_TEXT = 4096
MAX_SIGNATURE = 8192
MAX_PUBLIC_KEY = 32 * 1024

_FIELDS = ("SHA-256", "Message-ID", "Recipient", "Time", "Notary")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PRINTABLE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
_ADDR = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+")
_STATEMENT = "I received the message identified below."


@dataclass(frozen=True)
class Ack:
    """The facts an acknowledgement text states."""

    sha256: str
    message_id: str
    recipient: str
    time: datetime
    notary: str


def ack_text(ack: Ack) -> str:
    """The exact text to sign: LF line ends, ASCII, fields in a fixed order."""
    text = (
        f"{ACK_TITLE}\n\n{_STATEMENT}\n\n"
        f"SHA-256: {ack.sha256}\n"
        f"Message-ID: {ack.message_id}\n"
        f"Recipient: {ack.recipient}\n"
        f"Time: {format_time(ack.time)}\n"
        f"Notary: {ack.notary}\n"
    )
    parse_ack_text(text)  # refuse to write what the notary would refuse to read
    return text


def parse_ack_text(text: str) -> Ack:
    """Read an acknowledgement text written by :func:`ack_text`; MalformedError otherwise."""
    if len(text) > MAX_TEXT:
        raise MalformedError("the acknowledgement text is too long")
    head = f"{ACK_TITLE}\n\n{_STATEMENT}\n\n"
    if not text.startswith(head) or not text.endswith("\n"):
        raise MalformedError(f"not a certmail acknowledgement: it must start with {ACK_TITLE!r}")
    lines = text[len(head) : -1].split("\n")
    if len(lines) != len(_FIELDS):
        raise MalformedError(f"an acknowledgement has exactly the fields {', '.join(_FIELDS)}")
    values: dict[str, str] = {}
    for name, line in zip(_FIELDS, lines, strict=True):
        prefix = f"{name}: "
        if not line.startswith(prefix):
            raise MalformedError(f"expected the {name} field, got {line[:40]!r}")
        value = line[len(prefix) :]
        if not _PRINTABLE.fullmatch(value):
            raise MalformedError(f"the {name} field must be printable ASCII")
        values[name] = value
    if not _HEX64.fullmatch(values["SHA-256"]):
        raise MalformedError("SHA-256 must be 64 lowercase hex digits")
    if len(values["Message-ID"]) > 998:
        raise MalformedError("Message-ID too long")
    if not _ADDR.fullmatch(values["Recipient"]) or len(values["Recipient"]) > 254:
        raise MalformedError("Recipient must be a bare address (local@domain)")
    return Ack(
        values["SHA-256"],
        values["Message-ID"],
        values["Recipient"],
        parse_time(values["Time"]),
        values["Notary"],
    )


@dataclass(frozen=True)
class AckRequest:
    """A parsed ``POST /v1/ack`` body."""

    sha256: str
    message_id: str
    recipient: str
    signed: str
    signature: str
    public_key: str
    ack: Ack


def parse_ack_request(obj: Any) -> AckRequest:
    """Validate a ``POST /v1/ack`` JSON body; MalformedError naming what is wrong."""
    if not isinstance(obj, dict):
        raise MalformedError("the body must be a JSON object")
    names = ("sha256", "message_id", "recipient", "signed", "signature", "public_key")
    unknown = set(obj) - set(names)
    if unknown:
        raise MalformedError(f"unknown members: {sorted(unknown)}")
    for n in names:
        if not isinstance(obj.get(n), str) or not obj[n]:
            raise MalformedError(f"{n} must be a non-empty string")
    if len(obj["signature"]) > MAX_SIGNATURE or len(obj["public_key"]) > MAX_PUBLIC_KEY:
        raise MalformedError("signature or public_key too large")
    if "-----BEGIN PGP SIGNATURE-----" not in obj["signature"]:
        raise MalformedError("signature must be an ASCII-armored OpenPGP signature")
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" not in obj["public_key"]:
        raise MalformedError("public_key must be an ASCII-armored OpenPGP public key")
    ack = parse_ack_text(obj["signed"])
    if ack.sha256 != obj["sha256"]:
        raise MalformedError("the signed text names another SHA-256 than the request")
    if ack.message_id != obj["message_id"]:
        raise MalformedError("the signed text names another Message-ID than the request")
    if ack.recipient.lower() != str(obj["recipient"]).lower():
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

"""Signed acknowledgements of receipt: ``POST /v1/ack`` → ``ContentHandover`` (docs/ack.md).

The acknowledgement text is a small line-oriented UTF-8 document the recipient
signs with their OpenPGP key (detached, armored). :func:`ack_text` writes it,
:func:`parse_ack_text` reads it strictly; both sides use them. The notary
checks the signature with the public key sent along, in a throw-away
GNUPGHOME per request, then logs ``ContentHandover`` for the account of the
message's first ``SubmissionAcceptance`` (so the sender sees it in
``GET /v1/messages/{sha256}/receipts``, and no one who notarized the same hash later).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from keys.errors import MalformedError, NotFoundError, VerificationError
from notary.evidence import format_time, parse_statement, parse_time
from notary.receipt import Receipt
from notary.sequencer import Submission

__all__ = [
    "ACK_TITLE",
    "MAX_ACK_BODY",
    "Ack",
    "AckRequest",
    "SignerKey",
    "ack_text",
    "acknowledge",
    "check_signature",
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

# At most this many gpg verifications run at once (each is a subprocess).
_GPG_SLOTS = threading.BoundedSemaphore(4)


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
    lines = text[len(head):-1].split("\n")
    if len(lines) != len(_FIELDS):
        raise MalformedError(f"an acknowledgement has exactly the fields {', '.join(_FIELDS)}")
    values: dict[str, str] = {}
    for name, line in zip(_FIELDS, lines, strict=True):
        prefix = f"{name}: "
        if not line.startswith(prefix):
            raise MalformedError(f"expected the {name} field, got {line[:40]!r}")
        value = line[len(prefix):]
        if not _PRINTABLE.fullmatch(value):
            raise MalformedError(f"the {name} field must be printable ASCII")
        values[name] = value
    if not _HEX64.fullmatch(values["SHA-256"]):
        raise MalformedError("SHA-256 must be 64 lowercase hex digits")
    if len(values["Message-ID"]) > 998:
        raise MalformedError("Message-ID too long")
    if not _ADDR.fullmatch(values["Recipient"]) or len(values["Recipient"]) > 254:
        raise MalformedError("Recipient must be a bare address (local@domain)")
    return Ack(values["SHA-256"], values["Message-ID"], values["Recipient"],
               parse_time(values["Time"]), values["Notary"])


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
    return AckRequest(obj["sha256"], obj["message_id"], obj["recipient"], obj["signed"],
                      obj["signature"], obj["public_key"], ack)


@dataclass(frozen=True)
class SignerKey:
    """Who made a good acknowledgement signature."""

    fingerprint: str  # primary key
    signing_fingerprint: str  # the (sub)key that signed
    emails: tuple[str, ...]


def check_signature(text: str, signature: str, public_key: str, recipient: str) -> SignerKey:
    """Verify ``signature`` over ``text`` with ``public_key`` alone; return the signer.

    Runs gpg in a fresh temporary GNUPGHOME (nothing of one request is seen by
    another). The key must carry a user id with ``recipient``'s address.
    Raises VerificationError (bad signature, other key, no such user id) or
    MalformedError (not a key / not a signature).
    """
    with _GPG_SLOTS:
        return _check_signature(text, signature, public_key, recipient)


def _check_signature(text: str, signature: str, public_key: str, recipient: str) -> SignerKey:
    from keys.gpg import Keyring

    home = Path(tempfile.mkdtemp(prefix="cm-ack-"))
    try:
        ring = Keyring(home)
        fprs = ring.import_keys(public_key.encode("utf-8"))
        sig = ring.verify_detached(text.encode("utf-8"), signature.encode("utf-8"))
        primary = sig.primary_fingerprint.upper()
        if primary not in {f.upper() for f in fprs}:
            raise VerificationError("the signature was not made by the key sent with it")
        key = ring.key_for(primary)
        if recipient.lower() not in {e.lower() for e in key.emails}:
            raise VerificationError(
                f"the signing key {primary} has no user id for {recipient}")
        return SignerKey(primary, sig.fingerprint.upper(), key.emails)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


async def acknowledge(service: Any, req: AckRequest) -> Receipt:
    """Check an acknowledgement and log ``ContentHandover``; return its receipt.

    NotFoundError when the log has no SubmissionAcceptance of the message (with
    that Message-ID); VerificationError for a bad signature or a recipient the
    notary knows was not one of the message's. An acknowledgement already
    logged (the same signature) is answered with its existing receipt.
    """
    entries = service.storage.entries_for_message(req.sha256)
    accepted: list[Any] = []
    handovers: list[Any] = []
    known_recipients: set[str] = set()
    for e in entries:
        if e.message_id != req.message_id:
            continue
        stmt = parse_statement(e.entry)
        if e.event == "SubmissionAcceptance":
            accepted.append(e)
            for r in stmt.get("recipients") or ():
                if isinstance(r, str):
                    known_recipients.add(r.lower())
        elif e.event == "ContentHandover" and stmt.get("signature") == req.signature:
            handovers.append(e)
    if not accepted:
        raise NotFoundError(f"the log holds no accepted message {req.sha256} "
                            f"with Message-ID {req.message_id}")
    if known_recipients and req.recipient.lower() not in known_recipients:
        raise VerificationError(f"{req.recipient} is not a recipient of this message")
    if handovers:
        cp = service.storage.latest_checkpoint()
        if cp is not None and handovers[0].index < cp.size:
            receipt: Receipt = service.receipt_for(handovers[0], cp.size, cp.note)
            return receipt
    signer = await asyncio.to_thread(
        check_signature, req.signed, req.signature, req.public_key, req.recipient)
    extra = {
        "recipient": req.recipient,
        "signed": req.signed,
        "signature": req.signature,
        "fingerprint": signer.fingerprint,
        "signing_key": signer.signing_fingerprint,
    }
    accounts = [accepted[0].account_id]  # the acknowledged message's: its first acceptance
    receipts = await service.sequencer.submit([
        Submission("ContentHandover", req.sha256, req.message_id, a, extra, False)
        for a in accounts
    ])
    first: Receipt = receipts[0]
    return first


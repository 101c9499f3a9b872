"""Acknowledgements of receipt, notary side: ``POST /v1/ack`` → ``ContentHandover`` (docs/ack.md).

The text and request formats are in :mod:`notary.ackformat`. The notary
checks the signature with the public key sent along, in a throw-away
GNUPGHOME per request, then logs ``ContentHandover`` for every account that
caused a ``SubmissionAcceptance`` of the message (so the sender sees it in
``GET /v1/messages/{sha256}/receipts``).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keys.errors import NotFoundError, VerificationError
from notary.ackformat import AckRequest
from notary.evidence import parse_statement
from notary.receipt import Receipt
from notary.sequencer import Submission

__all__ = ["SignerKey", "acknowledge", "check_signature"]

# At most this many gpg verifications run at once (each is a subprocess).
_GPG_SLOTS = threading.BoundedSemaphore(4)


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
            raise VerificationError(f"the signing key {primary} has no user id for {recipient}")
        return SignerKey(primary, sig.fingerprint.upper(), key.emails)
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False
        )
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
        raise NotFoundError(
            f"the log holds no accepted message {req.sha256} with Message-ID {req.message_id}"
        )
    if known_recipients and req.recipient.lower() not in known_recipients:
        raise VerificationError(f"{req.recipient} is not a recipient of this message")
    if handovers:
        cp = service.storage.latest_checkpoint()
        if cp is not None and handovers[0].index < cp.size:
            receipt: Receipt = service.receipt_for(handovers[0], cp.size, cp.note)
            return receipt
    signer = await asyncio.to_thread(
        check_signature, req.signed, req.signature, req.public_key, req.recipient
    )
    extra = {
        "recipient": req.recipient,
        "signed": req.signed,
        "signature": req.signature,
        "fingerprint": signer.fingerprint,
        "signing_key": signer.signing_fingerprint,
    }
    accounts = list(dict.fromkeys(e.account_id for e in accepted))
    receipts = await service.sequencer.submit(
        [
            Submission("ContentHandover", req.sha256, req.message_id, a, extra, False)
            for a in accounts
        ]
    )
    first: Receipt = receipts[0]
    return first

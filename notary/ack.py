"""Acknowledgements of receipt, notary side: ``POST /v1/ack`` → ``ContentHandover`` (docs/ack.md).

The text and request formats are in :mod:`notary.ackformat`. The notary
checks the signature with the public key sent along, in a throw-away
GNUPGHOME per request, then logs ``ContentHandover`` for the account of the
message's first ``SubmissionAcceptance`` (so the sender sees it in
``GET /v1/messages/{sha256}/receipts``, and no one who notarized the same hash later).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from keys.errors import NotFoundError, TemporaryError, VerificationError
from notary.ackformat import AckRequest
from notary.evidence import parse_statement
from notary.receipt import Receipt
from notary.sequencer import Submission

__all__ = ["Busy", "SignatureChecks", "SignerKey", "acknowledge", "check_signature"]

#: At most this many gpg verifications run at once in a process (each is a subprocess).
GPG_CONCURRENCY = 2
#: At most this many more wait for one; beyond, ``POST /v1/ack`` is answered 503 at once.
GPG_QUEUE = 16


class Busy(TemporaryError):
    """Too many acknowledgements are waiting for their signature check: try again shortly."""


@cache
def _gpg_pool() -> ThreadPoolExecutor:
    """The threads gpg verifications run in: their own, not the event loop's default pool
    (which the sequencer commits in), so a flood of checks never delays a commit."""
    return ThreadPoolExecutor(max_workers=GPG_CONCURRENCY, thread_name_prefix="ack-gpg")


class SignatureChecks:
    """Runs :func:`check_signature` off the event loop, bounded in concurrency and queue.

    At most :data:`GPG_CONCURRENCY` checks run at once (per process); of one
    app, at most ``queue`` more wait, and one more raises :class:`Busy` at once,
    before it costs anything.
    """

    def __init__(self, queue: int = GPG_QUEUE) -> None:
        self.limit = GPG_CONCURRENCY + queue
        self.active = 0

    async def check(self, req: AckRequest) -> SignerKey:
        if self.active >= self.limit:
            raise Busy("too many acknowledgements are being checked; try again shortly")
        loop = asyncio.get_running_loop()
        self.active += 1
        job = _gpg_pool().submit(
            check_signature, req.signed, req.signature, req.public_key, req.recipient
        )
        # Counted until gpg is done, even when the request is abandoned meanwhile.
        job.add_done_callback(lambda _: self._release(loop))
        return await asyncio.wrap_future(job)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.call_soon_threadsafe(self._done)
        except RuntimeError:  # the loop is gone: so is everyone who counted
            pass

    def _done(self) -> None:
        self.active -= 1


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
    MalformedError (not a key / not a signature). Blocks: call it through
    :class:`SignatureChecks` from the event loop.
    """
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


@cache
def _default_checks() -> SignatureChecks:
    return SignatureChecks()


async def acknowledge(
    service: Any,
    req: AckRequest,
    checks: SignatureChecks | None = None,
    more: Mapping[str, Any] | None = None,
) -> Receipt:
    """Check an acknowledgement and log ``ContentHandover``; return its receipt.

    Cheap checks first: the log must hold the message and the recipient must
    be one of its own before the signature is checked (by ``checks``, off the
    event loop; :class:`Busy` when too many wait).

    NotFoundError when the log has no SubmissionAcceptance of the message (with
    that Message-ID); ``more`` adds statement members (sealed delivery: ``mode``,
    notary/seals.py). VerificationError for a bad signature or a recipient the
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
    signer = await (checks or _default_checks()).check(req)
    extra = {
        "recipient": req.recipient,
        "signed": req.signed,
        "signature": req.signature,
        "fingerprint": signer.fingerprint,
        "signing_key": signer.signing_fingerprint,
        **(more or {}),
    }
    accounts = [accepted[0].account_id]  # the acknowledged message's: its first acceptance
    receipts = await service.sequencer.submit(
        [
            Submission("ContentHandover", req.sha256, req.message_id, a, extra, False)
            for a in accounts
        ]
    )
    first: Receipt = receipts[0]
    return first

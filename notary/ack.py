"""Acknowledgements of receipt, notary side: ``POST /v1/ack`` → ``ContentHandover`` (docs/ack.md).

The text and request formats are in :mod:`notary.ackformat`. The notary
checks the signature with the certificate sent along, in-process with
Sequoia-PGP (pysequoia): nothing of one request is kept for another but the
parsed certificate, then logs ``ContentHandover`` for the account of the
message's first ``SubmissionAcceptance`` (so the sender sees it in
``GET /v1/messages/{sha256}/receipts``, and no one who notarized the same hash later).
The offline verifier and the client check signatures with GnuPG
(:mod:`keys.gpg`); tests/notary/test_ack_crosscheck.py shows both give the
same verdicts on the same signatures.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from threading import Lock
from typing import Any

import pysequoia
from pysequoia.packet import PacketPile, SignatureType, Tag

from keys.cms import CmsSigner
from keys.errors import MalformedError, NotFoundError, VerificationError
from keys.gpg import email_of
from keys.gpg.importing import check_before_import
from notary.ack_cms import Busy, check_cms, handover_members, smime_ca
from notary.ackformat import AckRequest
from notary.evidence import parse_statement
from notary.receipt import Receipt
from notary.sequencer import Submission

__all__ = ["Busy", "SignatureChecks", "SignerKey", "acknowledge", "check_signature"]

# Sequoia's errors are Rust ``anyhow`` errors: with ``RUST_BACKTRACE=1`` in the
# environment (a developer's shell, a CI image) each captures a backtrace, and a
# failed check raises several (measured: 0.55 ms a failed check with it, 0.10 ms
# without). Error values capture none unless the operator sets
# ``RUST_LIB_BACKTRACE`` itself; a panic still honours ``RUST_BACKTRACE``. Rust
# reads the variable at the first error, so before any check of this process.
os.environ.setdefault("RUST_LIB_BACKTRACE", "0")

#: At most this many signature checks run at once in a process (Sequoia releases
#: the GIL while it verifies: one thread per core of this 2-core target).
CHECK_CONCURRENCY = 2
#: At most this many more wait for one; beyond, ``POST /v1/ack`` is answered 503 at once.
CHECK_QUEUE = 16
#: Parsed certificates kept by the hash of their text (an acknowledger sends the same one).
CERT_CACHE = 1024


@cache
def _check_pool() -> ThreadPoolExecutor:
    """The threads signature checks run in: their own, not the event loop's default pool
    (which the sequencer commits in), so a flood of checks never delays a commit."""
    return ThreadPoolExecutor(max_workers=CHECK_CONCURRENCY, thread_name_prefix="ack-check")


class SignatureChecks:
    """Runs :func:`check_signature` off the event loop, bounded in concurrency and queue.

    At most :data:`CHECK_CONCURRENCY` checks run at once (per process); of one
    app, at most ``queue`` more wait, and one more raises :class:`Busy` at once,
    before it costs anything.
    """

    def __init__(self, queue: int = CHECK_QUEUE) -> None:
        self.limit = CHECK_CONCURRENCY + queue
        self.active = 0

    async def check(self, req: AckRequest, smime_ca: Path | None = None) -> SignerKey | CmsSigner:
        """The signer of ``req``: an OpenPGP key, or with ``cms`` an S/MIME certificate
        (chaining to ``smime_ca``, None: the system store; :mod:`notary.ack_cms`)."""
        if self.active >= self.limit:
            raise Busy("too many acknowledgements are being checked; try again shortly")
        loop = asyncio.get_running_loop()
        self.active += 1
        job: Future[SignerKey | CmsSigner] = (
            _check_pool().submit(check_cms, req.signed, req.cms, req.recipient, smime_ca)
            if req.cms
            else _check_pool().submit(
                check_signature, req.signed, req.signature, req.public_key, req.recipient
            )
        )
        # Counted until the check is done, even when the request is abandoned meanwhile.
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


_certs: OrderedDict[bytes, list[pysequoia.Cert]] = OrderedDict()
_certs_lock = Lock()


def _parse_certs(public_key: str, key: bytes) -> list[pysequoia.Cert]:
    """The certificates in ``public_key`` (``key``: its SHA-256), parsed once per distinct
    text, LRU-kept.

    A parsed certificate is immutable and judged afresh (expiry, revocation)
    at each verification, so keeping it changes no verdict.
    """
    data = public_key.encode("utf-8")
    with _certs_lock:
        hit = _certs.get(key)
        if hit is not None:
            _certs.move_to_end(key)
            return hit
    check_before_import(data, secret=False)  # a secret key is refused, as by keys import
    try:
        certs = pysequoia.Cert.split_bytes(data)
    except Exception:  # pysequoia raises plain exceptions (with Rust's message)
        certs = []
    if not certs:
        raise MalformedError("no OpenPGP key found in public_key")
    with _certs_lock:
        _certs[key] = certs
        while len(_certs) > CERT_CACHE:
            _certs.popitem(last=False)
    return certs


def _not_accepted(cert: pysequoia.Cert, now: datetime) -> str | None:
    """Why ``cert``'s signatures are not accepted now (revoked, expired), else None."""
    if cert.is_revoked:
        return "signing key was revoked"
    if cert.expiration is not None and cert.expiration <= now:
        return "signing key has expired"
    return None


def _verifies(data: bytes, sig: Any, certs: list[pysequoia.Cert]) -> list[Any]:
    """Sequoia's good signatures of ``certs`` in ``sig`` over ``data`` (none: [])."""
    try:
        found = pysequoia.verify(bytes=data, store=lambda _ids: certs, signature=sig)
        return list(found.valid_sigs)
    except Exception:  # no good signature (pysequoia's text holds Rust's, never shown)
        return []


@dataclass(frozen=True)
class _Subkey:
    """A signing subkey of a certificate, as :func:`_subkey_expiry` reads it."""

    head: tuple[Any, ...]  # the primary key's packets (key, user ids, their signatures)
    key: Any  # the subkey's packet
    bindings: tuple[Any, ...]  # its SubkeyBinding signatures with a creation time


_subkeys: OrderedDict[tuple[bytes, str], _Subkey] = OrderedDict()


def _subkey_parts(cert_key: bytes, cert: pysequoia.Cert, subkey: str) -> _Subkey:
    """The packets of ``subkey`` in ``cert`` (parsed once per certificate text, LRU-kept)."""
    key = (cert_key + cert.fingerprint.encode(), subkey)
    with _certs_lock:
        hit = _subkeys.get(key)
        if hit is not None:
            _subkeys.move_to_end(key)
            return hit
    pkts = list(PacketPile.from_bytes(bytes(cert)))
    subs = [i for i, p in enumerate(pkts) if p.tag == Tag.PublicSubkey]
    at = next(i for i in subs if pkts[i].fingerprint == subkey)
    sigs = pkts[at + 1 :]
    end = next((i for i, p in enumerate(sigs) if p.tag != Tag.Signature), len(sigs))
    bindings = tuple(
        b
        for b in sigs[:end]
        if b.signature_type == SignatureType.SubkeyBinding and b.signature_created is not None
    )
    parts = _Subkey(tuple(pkts[: subs[0]]), pkts[at], bindings)
    with _certs_lock:
        _subkeys[key] = parts
        while len(_subkeys) > CERT_CACHE:
            _subkeys.popitem(last=False)
    return parts


def _subkey_expiry(
    cert_key: bytes, cert: pysequoia.Cert, subkey: str, data: bytes, sig: Any
) -> datetime | None:
    """When the signing subkey ``subkey`` expires by its newest binding signature that
    Sequoia verifies, or None (no expiry, or none found).

    Sequoia judges a key at the signature's creation time, GnuPG (and the
    notary, which witnesses the acknowledgement now) at the present: each
    binding signature is tried alone, in a certificate made of the primary
    key's part and the subkey with that one binding, so only a binding that
    Sequoia verified (and that held when the signature was made) is read. A
    subkey with one binding (the usual case) needs no trial: Sequoia verified
    the signature through the subkey, so through that binding.
    """
    parts = _subkey_parts(cert_key, cert, subkey)
    best: Any = parts.bindings[0] if len(parts.bindings) == 1 else None
    for b in parts.bindings if best is None else ():
        if best is not None and b.signature_created <= best.signature_created:
            continue
        alone = [pysequoia.Cert.from_packets([*parts.head, parts.key, b])]
        if _verifies(data, sig, alone):
            best = b
    created = parts.key.key_created
    if best is None or best.key_validity_period is None or created is None:
        return None
    expiry: datetime = created + best.key_validity_period
    return expiry


def check_signature(text: str, signature: str, public_key: str, recipient: str) -> SignerKey:
    """Verify ``signature`` over ``text`` with ``public_key`` alone; return the signer.

    In-process with Sequoia under its standard policy: the signing (sub)key
    must have been valid and signing-capable when it signed, and the
    certificate must be neither revoked nor expired now (as GnuPG judges
    it). The key must carry a (non-revoked) user id with ``recipient``'s
    address. Raises VerificationError (bad signature, other key, no such user
    id, revoked or expired key) or MalformedError (not a key / not a
    signature). Takes about 0.1 ms (a certificate seen before): call it through
    :class:`SignatureChecks` from the event loop.
    """
    cert_key = hashlib.sha256(public_key.encode("utf-8")).digest()
    certs = _parse_certs(public_key, cert_key)
    data = text.encode("utf-8")
    try:
        sig = pysequoia.Sig.from_bytes(signature.encode("utf-8"))
    except Exception:
        raise MalformedError("not an OpenPGP signature") from None
    valid = _verifies(data, sig, certs)
    now = datetime.now(UTC)
    if not valid:
        state = next((st for c in certs if (st := _not_accepted(c, now))), None)
        if state is not None:
            raise VerificationError(f"signature not accepted: {state}")
        issuer = (sig.issuer_fingerprint or sig.issuer_key_id or "?").upper()
        raise VerificationError(
            "BAD signature: the data or the signature was modified, "
            f"or it was made by another key ({issuer}) than the one sent with it"
        )
    primary, signing = valid[0].certificate.upper(), valid[0].signing_key.upper()
    cert = next(c for c in certs if c.fingerprint.upper() == primary)
    state = _not_accepted(cert, now)
    if state is None and signing != primary:
        expiry = _subkey_expiry(cert_key, cert, signing.lower(), data, sig)
        if expiry is not None and expiry <= now:
            state = "signing key has expired"
    if state is not None:
        raise VerificationError(f"signature not accepted: {state}")
    emails = tuple(dict.fromkeys(e for e in (email_of(str(u)) for u in cert.user_ids) if e))
    if recipient.lower() not in emails:
        raise VerificationError(f"the signing key {primary} has no user id for {recipient}")
    return SignerKey(primary, signing, emails)


def _signer_members(req: AckRequest, signer: SignerKey | CmsSigner) -> dict[str, str]:
    """The ContentHandover members that record the signature and who made it."""
    if isinstance(signer, CmsSigner):
        return {"cms": req.cms, **handover_members(signer)}
    return {
        "signature": req.signature,
        "fingerprint": signer.fingerprint,
        "signing_key": signer.signing_fingerprint,
    }


@cache
def _default_checks() -> SignatureChecks:
    return SignatureChecks()


async def acknowledge(
    service: Any,
    req: AckRequest,
    checks: SignatureChecks | None = None,
    more: Mapping[str, Any] | None = None,
    entries: list[Any] | None = None,
) -> Receipt:
    """Check an acknowledgement and log ``ContentHandover``; return its receipt.

    Cheap checks first: the log must hold the message and the recipient must
    be one of its own before the signature is checked (by ``checks``, off the
    event loop; :class:`Busy` when too many wait).

    NotFoundError when the log has no SubmissionAcceptance of the message (with that
    Message-ID); ``more`` adds statement members (sealed delivery: ``mode``,
    notary/seals.py); ``entries`` are the message's log entries if the caller read them
    already (the log is then not read again). VerificationError for a bad signature or a
    recipient the notary knows was not one of the message's. An acknowledgement already
    logged (the same signature) is answered with its existing receipt.
    """
    if entries is None:
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
        elif e.event == "ContentHandover" and stmt.get(req.proof[0]) == req.proof[1]:
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
    signer = await (checks or _default_checks()).check(req, smime_ca(service.config))
    extra = {"recipient": req.recipient, "signed": req.signed, **_signer_members(req, signer)}
    extra.update(more or {})
    accounts = [accepted[0].account_id]  # the acknowledged message's: its first acceptance
    receipts = await service.sequencer.submit(
        [
            Submission("ContentHandover", req.sha256, req.message_id, a, extra, False)
            for a in accounts
        ]
    )
    first: Receipt = receipts[0]
    return first

"""Sealed delivery, notary side (docs/sealed.md): K_n kept sealed, released against a logged ack.

The sender registers K_n (``POST /v1/seals``); the notary keeps it encrypted
at rest (AES-256-GCM under the seal key, ``seal.key`` in the notary
directory, 0600, made on first use) in ``seals.db`` (SQLite, WAL,
``synchronous=FULL``: a registration is durable once answered). It answers
K_n only after the recipient's signed acknowledgement is logged as
``ContentHandover`` (mode ``sealed``) through :func:`notary.ack.acknowledge`,
the one acknowledgement path, and the log (not ``seals.db``) is what says a
handover happened: a retry after a crash finds the entry and answers the same
key with a receipt for the same entry, never logging a second one.

A refusal logs ``RejectionByRecipient``; a seal past its expiry with no
handover logs ``ContentHandoverFailure`` (:meth:`Seals.sweep`) and queues the
sender's notice (:mod:`notary.seal_notices`). Either way the share is destroyed.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import logging
import os
import signal
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys.errors import ConflictError, Error, NotFoundError, VerificationError
from notary.ack import SignatureChecks, SignerKey, acknowledge
from notary.ackformat import AckRequest
from notary.evidence import format_time, parse_statement
from notary.receipt import Receipt
from notary.seal_marks import ReleaseMarks
from notary.seal_notices import queue_expiry_notice
from notary.sealformat import SealRegistration
from notary.sequencer import Submission

__all__ = ["FAULT_ENV", "Gone", "Seal", "SealedChecks", "Seals"]

log = logging.getLogger(__name__)

SEAL_KEY_FILE = "seal.key"
SEALS_DB = "seals.db"
SEALS_LOCK = "seals.lock"
#: Test-only fault injection: ``after-log`` SIGKILLs the notary between logging the
#: ContentHandover and answering K_n (tests/notary/test_seals.py). Never set it in production.
FAULT_ENV = "CERTMAIL_TEST_SEAL_FAULT"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seals (
  sha256 TEXT PRIMARY KEY,
  message_id TEXT NOT NULL,
  account_id INTEGER NOT NULL,
  fingerprints TEXT NOT NULL,
  expires TEXT NOT NULL,
  created TEXT NOT NULL,
  wrapped BLOB,
  state TEXT NOT NULL,
  recipients TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS seals_due ON seals (expires) WHERE wrapped IS NOT NULL;
"""


#: The statement members a sealed ContentHandover adds (docs/formats.md §8).
SEALED_MEMBERS = {"mode": "sealed", "assurance": "holder of a registered OpenPGP key"}


class Gone(Error):
    """The seal expired, was refused or its share destroyed: nothing can be released."""

    exit_code = 6


@dataclass(frozen=True)
class Seal:
    sha256: str
    message_id: str
    account_id: int
    fingerprints: tuple[str, ...]
    expires: datetime
    wrapped: bytes | None  # nonce ‖ AES-GCM(seal key, K_n); None once destroyed
    state: str  # sealed | released | refused | expired
    recipients: tuple[str, ...]

    @property
    def mode(self) -> str:
        """``sealed`` (K_r to registered OpenPGP keys) or ``pickup`` (no key: a link,
        notary/pickup.py)."""
        return "sealed" if self.fingerprints else "pickup"


def load_seal_key(directory: Path) -> bytes:
    """The notary's seal key (32 bytes), created 0600 on first use.

    Written to a temporary file, fsynced, then linked into place, so several
    processes starting at once all read the one complete key.
    """
    path = directory / SEAL_KEY_FILE
    if not path.exists():
        tmp = directory / f".{SEAL_KEY_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(AESGCM.generate_key(256))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if another process linked its key first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    key = path.read_bytes()
    if len(key) != 32:
        raise Error(f"{path} is not a seal key (32 bytes)")
    return key


class SealedChecks(SignatureChecks):
    """The ack's signature check, then: its key must be one the sender registered."""

    def __init__(self, inner: SignatureChecks, allowed: tuple[str, ...]) -> None:
        self.inner = inner
        self.allowed = allowed

    async def check(self, req: AckRequest, smime_ca: Path | None = None) -> SignerKey:
        signer = await self.inner.check(req, smime_ca)
        if not isinstance(signer, SignerKey):  # registered keys are OpenPGP (docs/sealed.md)
            raise VerificationError("a sealed message is acknowledged with an OpenPGP key")
        if signer.fingerprint.upper() not in self.allowed:
            raise VerificationError(
                f"the key {signer.fingerprint} is not one this sealed message may be opened with"
            )
        return signer


class Seals:
    """The seals of one notary: register, open, refuse, sweep."""

    def __init__(self, service: Any, directory: Path) -> None:
        self.service = service
        self._aead = AESGCM(load_seal_key(directory))
        self._db = sqlite3.connect(
            directory / SEALS_DB, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        # The "released" marks: written after the answer, in batches (notary/seal_marks.py).
        self.marks = ReleaseMarks(directory / SEALS_DB)
        self._lock = threading.Lock()
        # One lock per message being opened, refused or swept, with how many hold or
        # wait for it; removed when the last one leaves (exclusive).
        self._opening: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._lockfile = os.open(directory / SEALS_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        self.changed = asyncio.Event()

    def close(self) -> None:
        self.marks.close()
        self._db.close()
        os.close(self._lockfile)

    @asynccontextmanager
    async def exclusive(self, sha256: str) -> AsyncIterator[None]:
        """One open, refusal or sweep of a message at a time: among this process's tasks
        (an asyncio lock) and among notary processes on this directory (a POSIX record
        lock on one byte of ``seals.lock`` chosen by the hash; released by the kernel
        if the process dies). The asyncio lock lives while someone holds or waits for it."""
        lock, users = self._opening.setdefault(sha256, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                where = int(sha256[:8], 16)
                try:  # uncontended (the usual case): taken at once, no thread
                    fcntl.lockf(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, where)
                except OSError:  # another process holds it: wait for it off the event loop
                    await asyncio.to_thread(fcntl.lockf, self._lockfile, fcntl.LOCK_EX, 1, where)
                try:
                    yield
                finally:
                    fcntl.lockf(self._lockfile, fcntl.LOCK_UN, 1, where)
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._opening[sha256]

    def opening(self) -> int:
        """How many messages have a task opening, refusing or sweeping them (or waiting to)."""
        return len(self._opening)

    # -- store -------------------------------------------------------------------

    def get(self, sha256: str) -> Seal | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sha256, message_id, account_id, fingerprints, expires, wrapped, state,"
                " recipients"
                " FROM seals WHERE sha256 = ?",
                (sha256,),
            ).fetchone()
        if row is None:
            return None
        fprs, rcpts = tuple(json.loads(row[3])), tuple(json.loads(row[7]))
        state = "released" if row[6] == "sealed" and self.marks.pending(sha256) else row[6]
        return Seal(row[0], row[1], row[2], fprs, _dt(row[4]), row[5], state, rcpts)

    def set_state(self, sha256: str, state: str, destroy: bool) -> None:
        """Set a seal's state, durably when its share is destroyed (refused, expired)."""
        if destroy:
            with self._lock:
                self._db.execute(
                    "UPDATE seals SET state = ?, wrapped = NULL WHERE sha256 = ?", (state, sha256)
                )
        else:
            self.marks.set_state(sha256, state)

    def mark_released(self, sha256: str, released: str | None = None) -> None:
        """Mark a seal released (a pickup's: at ``released``): at once in :meth:`get`, in
        ``seals.db`` by the next round of marks (:class:`~notary.seal_marks.ReleaseMarks`)."""
        self.marks.add(sha256, released)

    def register(self, account_id: int, reg: SealRegistration) -> Seal:
        """Keep K_n (encrypted) for ``reg``; the same registration again is a no-op."""
        now = self.service.clock()
        if reg.expires <= now:
            raise Error("expires must be in the future")
        old = self.get(reg.sha256)
        if old is not None:
            same = (old.account_id, old.message_id, old.fingerprints, old.recipients) == (
                account_id,
                reg.message_id,
                reg.fingerprints,
                reg.recipients,
            )
            if same and old.wrapped is not None and self.unwrap(old) == reg.share:
                return old
            raise ConflictError(f"a seal for {reg.sha256} is already registered")
        nonce = os.urandom(12)
        wrapped = nonce + self._aead.encrypt(nonce, reg.share, reg.sha256.encode())
        with self._lock:
            self._db.execute(
                "INSERT INTO seals VALUES (?, ?, ?, ?, ?, ?, ?, 'sealed', ?)",
                (
                    reg.sha256,
                    reg.message_id,
                    account_id,
                    json.dumps(list(reg.fingerprints)),
                    format_time(reg.expires),
                    format_time(now),
                    wrapped,
                    json.dumps(list(reg.recipients)),
                ),
            )
        return self.get(reg.sha256)  # type: ignore[return-value]

    def unwrap(self, seal: Seal) -> bytes:
        if seal.wrapped is None:
            raise Gone("the share of this sealed message was destroyed")
        w = seal.wrapped
        return self._aead.decrypt(w[:12], w[12:], seal.sha256.encode())

    # -- the log -----------------------------------------------------------------

    def logged(self, seal: Seal, event: str, entries: list[Any] | None = None) -> list[Any]:
        """The committed entries of ``event`` (of the seal's mode) about ``seal``'s message
        (among ``entries``, the message's entries if the caller read them already)."""
        out = []
        if entries is None:
            entries = self.service.storage.entries_for_message(seal.sha256)
        for e in entries:
            if e.event != event or e.message_id != seal.message_id:
                continue
            stmt = parse_statement(e.entry)
            if stmt.get("mode") != seal.mode:
                continue
            sealed = seal.mode == "sealed"
            if (
                sealed
                and event == "ContentHandover"
                and stmt.get("fingerprint") not in seal.fingerprints
            ):
                continue
            out.append((e, stmt))
        return out

    def accepted(self, seal: Seal) -> bool:
        """Whether the log holds the message's SubmissionAcceptance (it was sent)."""
        return any(
            e.event == "SubmissionAcceptance" and e.message_id == seal.message_id
            for e in self.service.storage.entries_for_message(seal.sha256)
        )

    def receipt(self, entry: Any) -> Receipt:
        cp = self.service.storage.latest_checkpoint()
        receipt: Receipt = self.service.receipt_for(entry, cp.size, cp.note)
        return receipt

    # -- open --------------------------------------------------------------------

    async def open(
        self, sha256: str, req: AckRequest, checks: SignatureChecks
    ) -> tuple[bytes, Receipt]:
        """K_n and the ContentHandover receipt, once the acknowledgement is logged.

        The signature check runs in :class:`~notary.ack.SignatureChecks`' threads
        and the ContentHandover entry joins the sequencer's group commit; the log
        is read once (the retry check and the acknowledgement share it) and the
        "released" mark is written after the answer (:meth:`mark_released`).
        """
        _same_message(sha256, req)  # before the lock: the hash is then 64 hex digits
        async with self.exclusive(sha256):
            seal = self._check_request(sha256, req)  # the seal read once, under the lock
            entries = self.service.storage.entries_for_message(sha256)
            done = [
                (e, st)
                for e, st in self.logged(seal, "ContentHandover", entries)
                if str(st.get("recipient", "")).lower() == req.recipient.lower()
            ]
            if done:  # a retry: the same key, the entry logged before
                entry, stmt = done[0]
                if stmt.get("signature") != req.signature:
                    await SealedChecks(checks, seal.fingerprints).check(req)
                if seal.state == "sealed":  # the mark was lost in a crash: set it again
                    self.mark_released(sha256)
                return self.unwrap(seal), self.receipt(entry)
            self.check_open(seal)
            sealed = SealedChecks(checks, seal.fingerprints)
            receipt = await acknowledge(self.service, req, sealed, SEALED_MEMBERS, entries)
            if os.environ.get(FAULT_ENV) == "after-log":
                os.kill(os.getpid(), signal.SIGKILL)
            # A new entry names the key SealedChecks allowed; one logged before (the same
            # signature, acknowledge answers its receipt) may not: it is read and checked.
            if any(e.entry == receipt.entry for e in entries):
                stmt = parse_statement(receipt.entry)
                if stmt.get("fingerprint") not in seal.fingerprints:
                    raise VerificationError("this acknowledgement was not made with an allowed key")
            self.mark_released(sha256)
            return self.unwrap(seal), receipt

    def _check_request(self, sha256: str, req: AckRequest) -> Seal:
        seal = self.get(sha256)
        if seal is None:
            raise NotFoundError(f"no sealed message {sha256} is registered")
        if req.message_id != seal.message_id:
            raise VerificationError("the acknowledgement names another Message-ID")
        return seal

    def check_open(self, seal: Seal) -> None:
        if seal.state == "refused":
            raise Gone("the recipient refused this sealed message; its share was destroyed")
        if seal.wrapped is None or seal.expires <= self.service.clock():
            raise Gone(f"this sealed message expired at {format_time(seal.expires)}")

    # -- refuse and expire ---------------------------------------------------------

    async def refuse(self, sha256: str, req: AckRequest, checks: SignatureChecks) -> Receipt:
        """Log ``RejectionByRecipient`` for a refusal signed by an allowed key; destroy K_n."""
        _same_message(sha256, req)
        async with self.exclusive(sha256):
            seal = self._check_request(sha256, req)
            done = self.logged(seal, "RejectionByRecipient")
            if done:
                return self.receipt(done[0][0])
            if self.logged(seal, "ContentHandover"):
                raise Gone("the content of this sealed message was already handed over")
            self.check_open(seal)
            signer = await SealedChecks(checks, seal.fingerprints).check(req)
            extra = {
                "mode": "sealed",
                "recipient": req.recipient,
                "signed": req.signed,
                "signature": req.signature,
                "fingerprint": signer.fingerprint,
                "signing_key": signer.signing_fingerprint,
            }
            receipts = await self.service.sequencer.submit(
                [
                    Submission(
                        "RejectionByRecipient", sha256, seal.message_id, seal.account_id, extra
                    )
                ]
            )
            self.set_state(sha256, "refused", destroy=True)
            first: Receipt = receipts[0]
            return first

    def due(self) -> list[Seal]:
        """Seals past their expiry whose share still exists."""
        now = format_time(self.service.clock())
        with self._lock:
            rows = self._db.execute(
                "SELECT sha256 FROM seals WHERE wrapped IS NOT NULL AND expires <= ?", (now,)
            ).fetchall()
        return [s for s in (self.get(r[0]) for r in rows) if s is not None]

    def next_expiry(self) -> datetime | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(expires) FROM seals WHERE wrapped IS NOT NULL"
            ).fetchone()
        return _dt(row[0]) if row and row[0] else None

    async def sweep(self) -> int:
        """Log ``ContentHandoverFailure`` for each recipient of an expired seal who had no
        handover (and did not refuse); destroy every expired share. Returns how many
        failures were logged."""
        logged = 0
        for seal in self.due():
            async with self.exclusive(seal.sha256):
                done = {
                    str(st.get("recipient", "")).lower()
                    for event in ("ContentHandover", "ContentHandoverFailure")
                    for _, st in self.logged(seal, event)
                }
                todo = [r for r in seal.recipients if r not in done]
                if seal.state == "refused" or not self.accepted(seal):
                    todo = []  # refused; or never sent: no handover was due
                if todo:
                    await self.service.sequencer.submit([self._failure(seal, r) for r in todo])
                    logged += len(todo)
                failures = self.logged(seal, "ContentHandoverFailure")  # the sender's notice:
                await asyncio.to_thread(queue_expiry_notice, self.service, seal, failures)
                self.set_state(seal.sha256, _after_expiry(seal.state), destroy=True)
        return logged

    def _failure(self, seal: Seal, recipient: str) -> Submission:
        extra = {
            "mode": seal.mode,
            "recipient": recipient,
            "reason": "expired",
            "expires": format_time(seal.expires),
        }
        return Submission(
            "ContentHandoverFailure", seal.sha256, seal.message_id, seal.account_id, extra
        )

    async def run_sweeper(self, longest: float = 30.0) -> None:
        """Sweep at start, then whenever the next expiry is due (at least every ``longest`` s)."""
        while True:
            try:
                await self.sweep()
            except Exception:  # the log unavailable for a moment...: the next round retries
                log.exception("the sweep of expired seals failed")
            nxt = self.next_expiry()
            wait = longest
            if nxt is not None:
                wait = min(longest, max(0.05, (nxt - self.service.clock()).total_seconds()))
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), wait)
            except TimeoutError:
                pass


def _same_message(sha256: str, req: AckRequest) -> None:
    if req.sha256 != sha256:
        raise VerificationError("the acknowledgement is for another message")


def _after_expiry(state: str) -> str:
    return state if state in ("refused", "released") else "expired"


def _dt(s: str) -> datetime:
    from notary.evidence import parse_time

    return parse_time(s)


def share_b64(share: bytes) -> str:
    return base64.b64encode(share).decode("ascii")

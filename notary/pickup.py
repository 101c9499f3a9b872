"""Pickup delivery, notary side (docs/sealed.md "Pickup"): a link for recipients without a key.

The sender registers (``POST /v1/pickups``) K_n, the AES-256-GCM ciphertext of
the content, the SHA-256 of the link's token and what the pickup page may show
(sender, subject, size, date). K_n goes into the one seal store
(:class:`notary.seals.Seals`, ``seals.db``, encrypted at rest under
``seal.key``; a seal without fingerprints is a pickup seal); the ciphertext is
written to ``pickups/<sha256>.bin`` (fsynced, then renamed, the directory
fsynced) and the rest to the ``pickups`` table of ``seals.db`` before the
registration is answered, so it survives a restart like the relay's spool.

The page's acknowledgement (``POST /v1/pickup/{token}/ack``) is checked (not
expired, not locked, the address the link was sent to, the passphrase's
verifier), ``ContentHandover`` (mode ``pickup``, its identity assurance, the
release time) is logged and committed, and only then is K_n answered. Until
expiry the same link may open again: the log's first entry is answered, never
a second one. ``N`` wrong passphrases (or addresses) lock the pickup for good.
A refusal logs ``RejectionByRecipient``; expiry (the seal store's sweep) logs
``ContentHandoverFailure``; either destroys K_n and the ciphertext.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import sqlite3
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from keys.errors import Error, NotFoundError, VerificationError
from notary.evidence import format_time
from notary.pickupformat import (
    ASSURANCE_LINK,
    ASSURANCE_PASSPHRASE,
    KDF_PARAMS,
    PickupRegistration,
    PickupRequest,
    token_hash,
    verifier_hash,
)
from notary.receipt import Receipt
from notary.sealformat import SealRegistration
from notary.seals import Gone, Seal, Seals
from notary.sequencer import Submission

__all__ = ["MAX_FAILURES", "Locked", "NotYet", "Pickup", "Pickups", "WrongSecret"]

#: Wrong passphrases (or addresses) after which a pickup is locked for good.
MAX_FAILURES = 5
PICKUP_DIR = "pickups"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pickups (
  token_sha256 TEXT PRIMARY KEY,
  sha256 TEXT NOT NULL UNIQUE,
  recipient TEXT NOT NULL,
  meta TEXT NOT NULL,
  salt BLOB,
  verifier_sha256 TEXT,
  failures INTEGER NOT NULL DEFAULT 0,
  released TEXT
)
"""


class Locked(Error):
    """Too many wrong passphrases or addresses: this pickup opens no more."""


class WrongSecret(VerificationError):
    """A wrong passphrase or address; ``left`` tries remain."""

    def __init__(self, message: str, left: int) -> None:
        super().__init__(message)
        self.left = left


class NotYet(Error):
    """The content is released only after the acknowledgement (or the message was not sent)."""


@dataclass(frozen=True)
class Pickup:
    token_sha256: str
    sha256: str
    recipient: str
    meta: dict[str, Any]  # message_id, sender, subject, size, date, expires
    salt: bytes | None
    verifier_sha256: str | None
    failures: int
    released: str | None  # the time K_n was first released

    def public(self, seal: Seal | None, now: datetime) -> dict[str, Any]:
        """What ``GET /v1/pickup/{token}`` answers: what the page shows before the ack."""
        out = {k: self.meta[k] for k in ("message_id", "sender", "subject", "size", "date")}
        out["expires"] = self.meta["expires"]
        out["passphrase"] = None
        if self.salt is not None:
            out["passphrase"] = {"salt": base64.b64encode(self.salt).decode(), **KDF_PARAMS}
        out["released"] = self.released
        out["tries_left"] = max(0, MAX_FAILURES - self.failures)
        out["state"] = _state(self, seal, now)
        return out


def _state(p: Pickup, seal: Seal | None, now: datetime) -> str:
    if p.failures >= MAX_FAILURES:
        return "locked"
    if seal is not None and seal.state == "refused":
        return "refused"
    if seal is None or seal.wrapped is None or seal.expires <= now:
        return "expired"
    return "released" if seal.state == "released" else "waiting"


class Pickups:
    """The pickups of one notary, over its seal store."""

    def __init__(self, seals: Seals, directory: Path) -> None:
        self.seals = seals
        self.service = seals.service
        self.dir = directory / PICKUP_DIR
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self._db = sqlite3.connect(
            directory / "seals.db", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    # -- store -------------------------------------------------------------------

    def find(self, token: str) -> Pickup:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM pickups WHERE token_sha256 = ?", (token_hash(token),)
            ).fetchone()
        if row is None:
            raise NotFoundError("no such pickup link: check that the whole link was copied")
        return self._row(row)

    def _row(self, row: Any) -> Pickup:
        """The pickup of a row, with its release time if the mark is not written yet."""
        released = row[7] or self.seals.marks.released_at(row[1])
        return Pickup(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], released)

    def content_path(self, sha256: str) -> Path:
        return self.dir / f"{sha256}.bin"

    def register(self, account_id: int, reg: PickupRegistration) -> Pickup:
        """Keep the ciphertext (fsynced file), K_n (the seal store), then the row."""
        path = self.content_path(reg.sha256)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(reg.content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.dir)
        self.seals.register(
            account_id,
            SealRegistration(
                reg.sha256, reg.message_id, reg.share, (), reg.expires, (reg.recipient,)
            ),
        )
        meta = {
            "message_id": reg.message_id,
            "sender": reg.sender,
            "subject": reg.subject,
            "size": reg.size,
            "date": reg.date,
            "expires": format_time(reg.expires),
        }
        pp = reg.passphrase
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO pickups VALUES (?, ?, ?, ?, ?, ?, 0, NULL)",
                (
                    reg.token_sha256,
                    reg.sha256,
                    reg.recipient,
                    json.dumps(meta),
                    pp.salt if pp else None,
                    pp.verifier_sha256 if pp else None,
                ),
            )
            row = self._db.execute(
                "SELECT token_sha256 FROM pickups WHERE sha256 = ?", (reg.sha256,)
            ).fetchone()
        if row[0] != reg.token_sha256:
            raise Error(f"a pickup for {reg.sha256} is already registered with another link")
        return self._by_hash(reg.token_sha256)

    def _by_hash(self, token_sha256: str) -> Pickup:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM pickups WHERE token_sha256 = ?", (token_sha256,)
            ).fetchone()
        return self._row(row)

    def seal_of(self, p: Pickup) -> Seal | None:
        return self.seals.get(p.sha256)

    # -- the page's requests -------------------------------------------------------

    async def release(self, token: str, req: PickupRequest) -> tuple[bytes, Receipt, Pickup]:
        """K_n and the ContentHandover receipt, once the handover is logged."""
        p = self.find(token)
        async with self.seals.exclusive(p.sha256):
            p, seal = self._checked(token, req)
            done = [
                (e, st) for e, st in self.seals.logged(seal, "ContentHandover")
                if str(st.get("recipient", "")).lower() == p.recipient
            ]  # fmt: skip
            if done:  # opened before (or logged just before a crash): the same entry
                entry, stmt = done[0]
                p = self._mark_released(p, str(stmt.get("released") or stmt["time"]))
                return self.seals.unwrap(seal), self.seals.receipt(entry), p
            if not self.seals.accepted(seal):
                raise NotYet("the notary has no record that this message was sent yet")
            released = format_time(self.service.clock())
            extra = {
                "mode": "pickup",
                "recipient": p.recipient,
                "assurance": ASSURANCE_PASSPHRASE if p.salt is not None else ASSURANCE_LINK,
                "released": released,
            }
            receipts = await self.service.sequencer.submit(
                [Submission("ContentHandover", p.sha256, seal.message_id, seal.account_id, extra)]
            )
            first: Receipt = receipts[0]
            return self.seals.unwrap(seal), first, self._mark_released(p, released)

    def _mark_released(self, p: Pickup, released: str) -> Pickup:
        """Record the release (the log's entry is what counts: this only follows it):
        at once in :meth:`find`, in ``seals.db`` after the answer, batched, in a thread
        (:class:`~notary.seal_marks.ReleaseMarks`)."""
        if p.released is None:
            self.seals.mark_released(p.sha256, released)
            p = replace(p, released=released)
        return p

    async def refuse(self, token: str, req: PickupRequest) -> Receipt:
        """Log ``RejectionByRecipient`` (mode pickup); destroy K_n and the ciphertext."""
        p = self.find(token)
        async with self.seals.exclusive(p.sha256):
            p, seal = self._checked(token, req)
            done = self.seals.logged(seal, "RejectionByRecipient")
            if done:
                return self.seals.receipt(done[0][0])
            if self.seals.logged(seal, "ContentHandover"):
                raise Gone("the content was already handed over: it can no longer be refused")
            extra = {"mode": "pickup", "recipient": p.recipient}
            extra["assurance"] = ASSURANCE_PASSPHRASE if p.salt is not None else ASSURANCE_LINK
            receipts = await self.service.sequencer.submit(
                [
                    Submission(
                        "RejectionByRecipient", p.sha256, seal.message_id, seal.account_id, extra
                    )
                ]
            )
            self.seals.set_state(p.sha256, "refused", destroy=True)
            self.content_path(p.sha256).unlink(missing_ok=True)
            first: Receipt = receipts[0]
            return first

    def _checked(self, token: str, req: PickupRequest) -> tuple[Pickup, Seal]:
        """The pickup and its seal, if it may open: not locked, not expired or refused,
        the right passphrase and address (a wrong one counts towards the lock)."""
        p = self.find(token)
        seal = self.seal_of(p)
        if seal is None:
            raise Gone("this pickup's key share is gone")
        if p.failures >= MAX_FAILURES:
            raise Locked(_LOCKED)
        self.seals.check_open(seal)
        wrong = None
        if p.verifier_sha256 is not None and (
            req.verifier is None
            or not hmac.compare_digest(verifier_hash(req.verifier), p.verifier_sha256)
        ):
            wrong = "wrong passphrase"
        elif req.address != p.recipient:
            wrong = "this link was sent to another address"
        if wrong is not None:
            left = self._failed(p)
            if left == 0:
                raise Locked(_LOCKED)
            raise WrongSecret(f"{wrong}: {left} tries left", left)
        return p, seal

    def _failed(self, p: Pickup) -> int:
        with self._lock:
            self._db.execute(
                "UPDATE pickups SET failures = failures + 1 WHERE token_sha256 = ?",
                (p.token_sha256,),
            )
        return max(0, MAX_FAILURES - self._by_hash(p.token_sha256).failures)

    def content(self, token: str) -> bytes:
        """The ciphertext, once a ContentHandover released K_n (NotYet before)."""
        p = self.find(token)
        seal = self.seal_of(p)
        if seal is None or seal.wrapped is None:
            raise Gone("this pickup expired or was refused: its content was destroyed")
        if p.released is None and not self.seals.logged(seal, "ContentHandover"):
            # The log decides: another worker's release may not have written its mark yet.
            raise NotYet("acknowledge receipt first: the content is released after that")
        return self.content_path(p.sha256).read_bytes()

    def purge(self) -> int:
        """Delete the ciphertext of every pickup whose share was destroyed (expired, refused)."""
        with self._lock:
            rows = self._db.execute("SELECT sha256 FROM pickups").fetchall()
        n = 0
        for (sha,) in rows:
            seal = self.seals.get(sha)
            path = self.content_path(sha)
            if (seal is None or seal.wrapped is None) and path.exists():
                path.unlink(missing_ok=True)
                n += 1
        return n


_LOCKED = (
    f"this pickup is locked after {MAX_FAILURES} wrong passphrases or addresses; "
    "ask the sender to send the message again"
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

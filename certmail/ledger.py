"""The local ledger and outbox: every send, its exact bytes, its receipts.

Storage is SQLite (WAL, ``synchronous=FULL``): a state change is durable once
the method that makes it returns. The exact bytes of each message are kept as
``<sha256>.eml``: in ``outbox_dir`` while something is still to be done, moved
to ``sent_dir`` once sent and notarized (a file is looked up in both).

A message's life is two independent steps, each recorded before and after it
runs, so a crash or a transient failure never loses a message and never sends
it twice:

``smtp``: ``pending`` → ``sending`` → ``sent`` | ``failed`` | ``uncertain``
    ``sending`` is written (and committed) before the DATA command; a message
    found in ``sending`` later (the process died mid-way) or whose connection
    broke after the final dot is ``uncertain`` and is not resent unless asked.
``notary``: ``pending`` → ``done`` | ``failed``, or ``skipped``
    The SHA-256 is notarized after a successful send; a notary outage leaves the
    message in the outbox with ``smtp = sent``: a flush only notarizes it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from keys.errors import ConflictError, NotFoundError

from .ledger_rows import (
    KEPT_SQL,
    OUTBOX_SQL,
    SCHEMA,
    Entry,
    QueuedAck,
    ack_from_row,
    entry_from_row,
    now_text,
)
from .sqlitedb import SqliteStore

__all__ = ["KEPT_SQL", "OUTBOX_SQL", "SCHEMA", "Entry", "Ledger", "QueuedAck"]


def _copy_file(src: BinaryIO, dst: BinaryIO) -> None:
    """Copy the rest of ``src`` to ``dst`` in the kernel when possible."""
    try:
        while os.copy_file_range(src.fileno(), dst.fileno(), 1 << 30):
            pass
        return
    except (OSError, AttributeError):  # not supported here: copy through a buffer
        pass
    while chunk := src.read(1 << 20):
        dst.write(chunk)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Ledger(SqliteStore):
    """The SQLite ledger at ``path`` with message copies in ``outbox_dir`` / ``sent_dir``.

    Every method that changes state commits before it returns.
    """

    def __init__(self, path: Path, outbox_dir: Path, sent_dir: Path) -> None:
        self.path = Path(path)
        self.outbox_dir = Path(outbox_dir)
        self.sent_dir = Path(sent_dir)
        for d in (self.path.parent, self.outbox_dir, self.sent_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        super().__init__(self.path, SCHEMA, timeout=30, foreign_keys=True)

    # -- files -------------------------------------------------------------------

    def message_path(self, sha256: str) -> Path:
        """The stored copy of a message's exact bytes."""
        name = f"{sha256}.eml"
        for d in (self.sent_dir, self.outbox_dir):
            p = d / name
            if p.is_file():
                return p
        raise NotFoundError(f"no stored copy of message {sha256}", hint="certmail outbox list")

    def _store(self, src: Path, sha256: str, *, move: bool = False) -> Path:
        """Put the exact bytes of ``src`` into the outbox, durably (fsync'd file and dir).

        ``move=True`` lets the ledger take ``src`` itself (a rename when it is on
        the same file system: no byte is copied; the caller must not use ``src``
        afterwards). Otherwise the bytes are copied in the kernel
        (copy_file_range(2): a reflink on file systems that share extents).
        """
        dst = self.outbox_dir / f"{sha256}.eml"
        if move:
            try:
                fd = os.open(src, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(src, dst)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
            else:
                _fsync_dir(self.outbox_dir)
                return dst
        fd, tmp = tempfile.mkstemp(prefix=".in-", dir=self.outbox_dir)
        try:
            with os.fdopen(fd, "wb") as out, src.open("rb") as f:
                _copy_file(f, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.outbox_dir)
        return dst

    def _archive(self, sha256: str) -> None:
        src = self.outbox_dir / f"{sha256}.eml"
        if src.is_file():
            os.replace(src, self.sent_dir / src.name)
            _fsync_dir(self.sent_dir)
            _fsync_dir(self.outbox_dir)

    # -- transitions ---------------------------------------------------------------

    def enqueue(
        self,
        src: Path,
        *,
        sha256: str,
        message_id: str,
        mail_from: str,
        recipients: Sequence[str],
        via: str,
        notarize: bool,
        move: bool = False,
    ) -> Entry:
        """Store the exact bytes durably, then record the message as ``queued``.

        ``move=True``: ``src`` is a temporary file the ledger may take over
        (renamed into the outbox instead of copied).
        """
        size = src.stat().st_size
        self._store(src, sha256, move=move)
        now = now_text()
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO messages (sha256, message_id, mail_from, recipients, via, size,"
                    " created, updated, smtp, notary) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        sha256,
                        message_id,
                        mail_from,
                        json.dumps(list(recipients)),
                        via,
                        size,
                        now,
                        now,
                        "pending",
                        "pending" if notarize else "skipped",
                    ),
                )
        except sqlite3.IntegrityError:
            raise ConflictError(f"message {sha256} is already in the ledger") from None
        return self.get(sha256)

    def claim_send(self, sha256: str, *, include_uncertain: bool = False) -> bool:
        """Mark ``sending`` if the message may be sent now; False if someone else has it."""
        states = ("pending", "uncertain", "sending") if include_uncertain else ("pending",)
        marks = ",".join("?" * len(states))
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE messages SET smtp='sending', attempts=attempts+1, updated=?"  # noqa: S608
                f" WHERE sha256=? AND smtp IN ({marks})",
                (now_text(), sha256, *states),
            )
            return cur.rowcount == 1

    def _set(self, sha256: str, **fields: Any) -> None:
        fields["updated"] = now_text()
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as db:
            db.execute(
                f"UPDATE messages SET {cols} WHERE sha256=?",  # noqa: S608
                (*fields.values(), sha256),
            )

    def mark_sent(self, sha256: str, reply: str) -> None:
        self._set(sha256, smtp="sent", smtp_reply=reply, last_error=None)
        if self.get(sha256).status == "sent":
            self._archive(sha256)

    def mark_send_failed(
        self, sha256: str, error: str, *, permanent: bool, uncertain: bool = False
    ) -> None:
        state = "failed" if permanent else ("uncertain" if uncertain else "pending")
        self._set(sha256, smtp=state, last_error=error)

    def add_receipt(self, sha256: str, receipt: dict[str, Any]) -> None:
        """Keep a receipt and mark the notarization done (one transaction)."""
        now = now_text()
        with self._tx() as db:
            db.execute(
                "INSERT INTO receipts (sha256, receipt, received) VALUES (?,?,?)",
                (sha256, json.dumps(receipt, sort_keys=True), now),
            )
            db.execute(
                "UPDATE messages SET notary='done', last_error=NULL, updated=? WHERE sha256=?",
                (now, sha256),
            )
        if self.get(sha256).status == "sent":
            self._archive(sha256)

    def mark_notary_failed(self, sha256: str, error: str, *, permanent: bool) -> None:
        self._set(sha256, notary="failed" if permanent else "pending", last_error=error)

    def recover(self) -> list[str]:
        """Messages left in ``sending`` by a process that died: now ``uncertain``.

        Call only when no other process is sending from this ledger.
        """
        with self._tx() as db:
            rows = db.execute("SELECT sha256 FROM messages WHERE smtp='sending'").fetchall()
            db.execute(
                "UPDATE messages SET smtp='uncertain', last_error=? WHERE smtp='sending'",
                ("interrupted while sending: it may or may not have gone out",),
            )
        return [r["sha256"] for r in rows]

    def orphans(self) -> list[Path]:
        """Files in the outbox directory that no ledger row accounts for.

        A process killed between storing a copy and recording it (:meth:`enqueue`)
        leaves ``<sha256>.eml`` without a row, or a ``.in-*`` temporary file: they
        are listed so that nothing in the outbox is hidden, and
        :meth:`remove_orphan` deletes one.
        """
        known = {r["sha256"] for r in self._db.execute("SELECT sha256 FROM messages")}
        return sorted(
            p
            for p in self.outbox_dir.iterdir()
            if p.is_file() and (p.name.startswith(".in-") or p.stem not in known)
        )

    def find_orphan(self, ref: str) -> Path:
        """The orphaned outbox file whose name starts with ``ref`` (8+ characters)."""
        hits = [p for p in self.orphans() if len(ref) >= 8 and p.name.startswith(ref)]
        if len(hits) != 1:
            raise NotFoundError(f"no message {ref!r} in the outbox", hint="certmail outbox list")
        return hits[0]

    def remove_orphan(self, path: Path) -> None:
        """Delete an orphaned outbox file (one of :meth:`orphans`)."""
        if path not in self.orphans():
            raise NotFoundError(f"{path} is not an orphaned outbox file")
        path.unlink()
        _fsync_dir(self.outbox_dir)

    def remove(self, ref: str) -> Entry:
        """Forget an outbox message (by sha256 prefix or Message-ID) and delete its stored copy.

        Only messages still in the outbox (queued, uncertain, awaiting
        notarization, or kept after a refusal) can be removed; a message being
        sent right now is refused (ConflictError), a sent one is not in the
        outbox (NotFoundError).
        """
        entry = self.find(ref)
        in_outbox = {e.sha256 for e in (*self.outbox(), *self.kept())}
        if entry.sha256 not in in_outbox:
            raise NotFoundError(
                f"message {entry.sha256[:16]} is not in the outbox (it was sent)",
                hint="certmail outbox list",
            )
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM messages WHERE sha256=? AND smtp != 'sending'", (entry.sha256,)
            )
            if cur.rowcount != 1:
                raise ConflictError(
                    f"message {entry.sha256[:16]} is being sent right now; nothing was removed",
                    hint="certmail outbox list",
                )
            db.execute("DELETE FROM receipts WHERE sha256=?", (entry.sha256,))
        with contextlib.suppress(FileNotFoundError):
            (self.outbox_dir / f"{entry.sha256}.eml").unlink()
            _fsync_dir(self.outbox_dir)
        return entry

    def remove_unclaimed(self, sha256s: Sequence[str]) -> set[str]:
        """Forget those of the messages ``sha256s`` nobody has claimed for sending yet
        (``smtp`` still ``pending``) and delete their stored copies; the ones removed
        (a message claimed meanwhile, sent, or gone is left alone). One transaction
        and one directory sync for them all, without listing the outbox (as
        :meth:`remove` does): ``campaign cancel`` calls it once per page.
        """
        removed: set[str] = set()
        with self._tx() as db:
            for sha in sha256s:
                cur = db.execute("DELETE FROM messages WHERE sha256=? AND smtp='pending'", (sha,))
                if cur.rowcount == 1:
                    db.execute("DELETE FROM receipts WHERE sha256=?", (sha,))
                    removed.add(sha)
        for sha in removed:
            with contextlib.suppress(FileNotFoundError):
                (self.outbox_dir / f"{sha}.eml").unlink()
        if removed:
            _fsync_dir(self.outbox_dir)
        return removed

    # -- acknowledgements ----------------------------------------------------------

    def enqueue_ack(
        self,
        *,
        sha256: str,
        message_id: str,
        recipient: str,
        notary: str,
        body: dict[str, Any],
        error: str,
    ) -> QueuedAck:
        """Keep a signed acknowledgement that could not be posted yet (durably).

        One per (message, recipient, notary): a second one replaces the pending
        body (an acknowledgement already posted is kept as it is).
        """
        now = now_text()
        with self._tx() as db:
            db.execute(
                "INSERT INTO acks (sha256, message_id, recipient, notary, body, state, created,"
                " updated, attempts, last_error) VALUES (?,?,?,?,?,'pending',?,?,1,?)"
                " ON CONFLICT (sha256, recipient, notary) DO UPDATE SET body=excluded.body,"
                " attempts=attempts+1, last_error=excluded.last_error, updated=excluded.updated"
                " WHERE state='pending'",
                (
                    sha256,
                    message_id,
                    recipient,
                    notary,
                    json.dumps(body, sort_keys=True),
                    now,
                    now,
                    error,
                ),
            )
        return self.ack(sha256, recipient, notary)

    def ack(self, sha256: str, recipient: str, notary: str) -> QueuedAck:
        row = self._db.execute(
            "SELECT * FROM acks WHERE sha256=? AND recipient=? AND notary=?",
            (sha256, recipient, notary),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no acknowledgement of {sha256} in the ledger")
        return ack_from_row(row)

    def pending_acks(self, *, include_failed: bool = False) -> list[QueuedAck]:
        """Acknowledgements still to post (and, with ``include_failed``, refused ones)."""
        states = "('pending', 'failed')" if include_failed else "('pending')"
        rows = self._db.execute(
            f"SELECT * FROM acks WHERE state IN {states} ORDER BY id"  # noqa: S608
        ).fetchall()
        return [ack_from_row(r) for r in rows]

    def mark_ack_sent(self, ack_id: int, receipt: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE acks SET state='sent', receipt=?, last_error=NULL, updated=? WHERE id=?",
                (json.dumps(receipt, sort_keys=True), now_text(), ack_id),
            )

    def mark_ack_failed(self, ack_id: int, error: str, *, permanent: bool) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE acks SET state=?, attempts=attempts+1, last_error=?, updated=? WHERE id=?",
                ("failed" if permanent else "pending", error, now_text(), ack_id),
            )

    # -- queries -----------------------------------------------------------------

    def get(self, sha256: str) -> Entry:
        row = self._db.execute("SELECT * FROM messages WHERE sha256=?", (sha256,)).fetchone()
        if row is None:
            raise NotFoundError(f"no message {sha256} in the ledger", hint="certmail outbox list")
        return entry_from_row(row)

    def find(self, prefix_or_message_id: str) -> Entry:
        """A message by sha256 (or a unique prefix of at least 8 hex) or Message-ID."""
        q = prefix_or_message_id.strip()
        rows = self._db.execute(
            "SELECT * FROM messages WHERE message_id=? OR (length(?) >= 8 AND sha256 LIKE ?)",
            (q, q, q.lower() + "%"),
        ).fetchall()
        if len(rows) != 1:
            raise NotFoundError(
                f"no single message matches {q!r}" if rows else f"no message {q!r} in the ledger",
                hint="certmail outbox list --all",
            )
        return entry_from_row(rows[0])

    def outbox(self) -> list[Entry]:
        rows = self._db.execute(
            f"SELECT * FROM messages WHERE {OUTBOX_SQL} ORDER BY created"  # noqa: S608
        ).fetchall()
        return [entry_from_row(r) for r in rows]

    def kept(self) -> list[Entry]:
        """Messages refused for good whose copy is still kept in the outbox directory."""
        rows = self._db.execute(
            f"SELECT * FROM messages WHERE {KEPT_SQL} ORDER BY created"  # noqa: S608
        ).fetchall()
        return [entry_from_row(r) for r in rows]

    def all(self, limit: int = 100) -> list[Entry]:
        rows = self._db.execute(
            "SELECT * FROM messages ORDER BY created DESC LIMIT ?", (limit,)
        ).fetchall()
        return [entry_from_row(r) for r in rows]

    def receipts(self, sha256: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT receipt FROM receipts WHERE sha256=? ORDER BY id", (sha256,)
        ).fetchall()
        return [json.loads(r["receipt"]) for r in rows]

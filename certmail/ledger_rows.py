"""The ledger's tables and rows (:mod:`certmail.ledger`): the SQLite schema and the
dataclasses a row becomes (:class:`Entry` for a message, :class:`QueuedAck` for an
acknowledgement waiting for its notary). No I/O beyond reading a ``sqlite3.Row``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "KEPT_SQL",
    "OUTBOX_SQL",
    "SCHEMA",
    "Entry",
    "QueuedAck",
    "ack_from_row",
    "entry_from_row",
    "now_text",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    sha256      TEXT PRIMARY KEY,
    message_id  TEXT NOT NULL,
    mail_from   TEXT NOT NULL,
    recipients  TEXT NOT NULL,          -- JSON array
    via         TEXT NOT NULL,
    size        INTEGER NOT NULL,
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL,
    smtp        TEXT NOT NULL,          -- pending sending sent failed uncertain
    notary      TEXT NOT NULL,          -- pending done failed skipped
    smtp_reply  TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS messages_created ON messages (created);
CREATE TABLE IF NOT EXISTS receipts (
    id          INTEGER PRIMARY KEY,
    sha256      TEXT NOT NULL REFERENCES messages (sha256),
    receipt     TEXT NOT NULL,          -- the notary's receipt JSON, as received
    received    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_sha256 ON receipts (sha256);
CREATE TABLE IF NOT EXISTS acks (
    id          INTEGER PRIMARY KEY,
    sha256      TEXT NOT NULL,          -- the acknowledged message (someone else's)
    message_id  TEXT NOT NULL,
    recipient   TEXT NOT NULL,          -- who acknowledges (this identity)
    notary      TEXT NOT NULL,          -- the notary URL to post it to
    body        TEXT NOT NULL,          -- the signed POST /v1/ack body (JSON)
    state       TEXT NOT NULL,          -- pending sent failed
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    receipt     TEXT,                   -- the ContentHandover receipt, once posted
    UNIQUE (sha256, recipient, notary)
);
"""

OUTBOX_SQL = "smtp IN ('pending', 'sending', 'uncertain') OR (smtp = 'sent' AND notary = 'pending')"
#: Messages done with for good (refused, or sent but refused by the notary)
#: whose copy is still kept in the outbox directory.
KEPT_SQL = "smtp = 'failed' OR notary = 'failed'"


def now_text() -> str:
    """Now, as the ledger writes times (UTC, microseconds, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Entry:
    """One ledger row."""

    sha256: str
    message_id: str
    mail_from: str
    recipients: tuple[str, ...]
    via: str
    size: int
    created: str
    updated: str
    smtp: str
    notary: str
    smtp_reply: str | None
    attempts: int
    last_error: str | None

    @property
    def status(self) -> str:
        """One word: queued, uncertain, sent, notarizing, failed, unnotarized."""
        if self.smtp == "failed":
            return "failed"
        if self.notary == "failed":
            return "unnotarized"  # sent, but the notary refused it for good
        if self.smtp in ("sending", "uncertain"):
            return "uncertain"
        if self.smtp == "pending":
            return "queued"
        if self.notary == "pending":
            return "notarizing"
        return "sent"

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "message_id": self.message_id,
            "from": self.mail_from,
            "recipients": list(self.recipients),
            "via": self.via,
            "size": self.size,
            "created": self.created,
            "updated": self.updated,
            "status": self.status,
            "smtp": self.smtp,
            "notary": self.notary,
            "smtp_reply": self.smtp_reply,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


def entry_from_row(row: sqlite3.Row) -> Entry:
    """A ``messages`` row as an :class:`Entry`."""
    return Entry(
        sha256=row["sha256"],
        message_id=row["message_id"],
        mail_from=row["mail_from"],
        recipients=tuple(json.loads(row["recipients"])),
        via=row["via"],
        size=row["size"],
        created=row["created"],
        updated=row["updated"],
        smtp=row["smtp"],
        notary=row["notary"],
        smtp_reply=row["smtp_reply"],
        attempts=row["attempts"],
        last_error=row["last_error"],
    )


@dataclass(frozen=True)
class QueuedAck:
    """A signed acknowledgement of receipt waiting for (or posted to) its notary."""

    id: int
    sha256: str
    message_id: str
    recipient: str
    notary: str
    body: dict[str, Any]
    state: str  # pending | sent | failed
    created: str
    updated: str
    attempts: int
    last_error: str | None
    receipt: dict[str, Any] | None

    @property
    def status(self) -> str:
        """One word: ``ack queued``, ``ack sent`` or ``ack failed``."""
        return f"ack {'queued' if self.state == 'pending' else self.state}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "message_id": self.message_id,
            "recipient": self.recipient,
            "notary": self.notary,
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


def ack_from_row(row: sqlite3.Row) -> QueuedAck:
    """An ``acks`` row as a :class:`QueuedAck`."""
    return QueuedAck(
        id=row["id"],
        sha256=row["sha256"],
        message_id=row["message_id"],
        recipient=row["recipient"],
        notary=row["notary"],
        body=json.loads(row["body"]),
        state=row["state"],
        created=row["created"],
        updated=row["updated"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        receipt=json.loads(row["receipt"]) if row["receipt"] else None,
    )

"""The campaign tables of the ledger: one row per campaign, one per recipient.

They live in the same SQLite file as the ledger (:mod:`certmail.ledger`), WAL and
``synchronous=FULL``: a state change is durable once the method making it
returns. A recipient's ``state`` moves forward only::

    pending ──► accepted | submitted (handed over; no receipt yet)
       │   ──► queued (a transient failure: retried by the next send)
       │   ──► failed (for good) | uncertain (direct mode, interrupted) | cancelled

The steps in between (sealed and stored, ``sending``, sent, receipt kept) are
the ledger's own state machine for the recipient's message (:mod:`certmail.outbox`).
``message_id`` is chosen when the campaign is created, so the ledger's message
for a recipient (:meth:`certmail.ledger.Ledger.find` by Message-ID) is found
again after a crash at any point: the ledger, not this table, says whether a
message was handed over (docs/campaigns.md#crash-safety).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keys.errors import ConflictError, NotFoundError

from ..ledger_rows import now_text
from ..sqlitedb import SqliteStore

__all__ = ["CAMPAIGN_SCHEMA", "Campaign", "CampaignStore", "Recipient"]

CAMPAIGN_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    name        TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,          -- JSON: subject, body, attachments, via, flags
    state       TEXT NOT NULL,          -- created sending done cancelled
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_recipients (
    campaign    TEXT NOT NULL REFERENCES campaigns (name),
    row_no      INTEGER NOT NULL,       -- the CSV line (the header is line 1)
    email       TEXT NOT NULL,
    fields      TEXT NOT NULL,          -- JSON: the CSV row
    message_id  TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL,
    sha256      TEXT,
    reply       TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    queued_at   TEXT,
    submitted_at TEXT,
    updated     TEXT NOT NULL,
    seal        TEXT,                   -- sealed campaigns: 'registered' (K_n with the notary)
    pickup_key  TEXT,                   -- own pickup passphrase: salt, P, verifier hash (JSON)
    PRIMARY KEY (campaign, email)
);
CREATE INDEX IF NOT EXISTS campaign_recipients_state ON campaign_recipients (campaign, state);
CREATE INDEX IF NOT EXISTS campaign_recipients_row ON campaign_recipients (campaign, row_no);
"""

#: Recipients read at a time by :meth:`CampaignStore.pages`.
PAGE = 500

DONE_STATES = ("submitted", "accepted", "failed", "skipped", "cancelled")


@dataclass(frozen=True)
class Campaign:
    name: str
    spec: dict[str, Any]
    state: str
    created: str
    updated: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "created": self.created,
            "updated": self.updated,
            **{k: self.spec[k] for k in SHOWN if k in self.spec},
        }


#: What :meth:`Campaign.to_json` shows of the spec (``smime_trust``: an S/MIME campaign's
#: CA bundle copy and CRL path, certmail/campaign/smime_trust.py).
SHOWN = ("via", "subject", "attachments", "smime_trust")


@dataclass(frozen=True)
class Recipient:
    campaign: str
    row_no: int
    email: str
    fields: dict[str, str]
    message_id: str
    state: str
    sha256: str | None
    reply: str | None
    error: str | None
    attempts: int
    queued_at: str | None
    submitted_at: str | None
    updated: str
    seal: str | None = None  # sealed campaigns: "registered" once K_n is with the notary
    #: A recipient's own pickup passphrase as :class:`certmail.sealed.pickup.DerivedPassphrase`
    #: JSON, until their message is stored (:mod:`certmail.campaign.passphrases`).
    pickup_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Recipient:
        """A row as read; columns a later version added are left out (a ledger it used
        still opens here)."""
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: row[k] for k in row.keys() if k in known}
        d["fields"] = json.loads(d["fields"])
        return cls(**d)


class CampaignStore(SqliteStore):
    """The campaign tables in the ledger database at ``path``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        super().__init__(path, CAMPAIGN_SCHEMA, timeout=60)
        self._message_index = False
        self._add_columns()
        # An erased pickup key is overwritten in the file, not only unlinked from its page.
        self._db.execute("PRAGMA secure_delete=ON")

    def _add_columns(self) -> None:
        """A ledger made before sealed campaigns (before own pickup passphrases): its
        recipient table gains ``seal`` (``pickup_key``)."""
        cols = [r["name"] for r in self._db.execute("PRAGMA table_info(campaign_recipients)")]
        for col in ("seal", "pickup_key"):
            if col not in cols:
                with contextlib.suppress(sqlite3.OperationalError), self._tx() as db:
                    db.execute(f"ALTER TABLE campaign_recipients ADD COLUMN {col} TEXT")

    def ledger_sha256(self, message_id: str) -> str | None:
        """The SHA-256 of the ledger's message with ``message_id`` (None: not stored).

        The ledger's own ``find`` also matches sha256 prefixes (a scan of the table);
        a campaign looks its messages up by Message-ID only, with an index on it.
        """
        if not self._message_index:
            with contextlib.suppress(sqlite3.OperationalError):  # no ledger table yet
                self._db.execute(
                    "CREATE INDEX IF NOT EXISTS messages_message_id ON messages (message_id)"
                )
                self._message_index = True
        try:
            row = self._db.execute(
                "SELECT sha256 FROM messages WHERE message_id=?", (message_id,)
            ).fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else str(row["sha256"])

    # -- campaigns ---------------------------------------------------------------

    def create(
        self,
        name: str,
        spec: dict[str, Any],
        rows: Sequence[tuple[int, str, dict[str, str], str]],
        pickup_keys: dict[str, str] | None = None,
    ) -> Campaign:
        """Record a campaign and its recipients ``(row_no, email, fields, message_id)``;
        ``pickup_keys``: the recipients' own pickup passphrases, derived, by lowercase
        address (:mod:`certmail.campaign.passphrases`)."""
        keys = pickup_keys or {}
        now = now_text()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM campaigns WHERE name=?", (name,)).fetchone():
                raise ConflictError(
                    f"a campaign named {name!r} exists", hint="certmail campaign list"
                )
            db.execute(
                "INSERT INTO campaigns (name, spec, state, created, updated) VALUES (?,?,?,?,?)",
                (name, json.dumps(spec), "created", now, now),
            )
            db.executemany(
                "INSERT INTO campaign_recipients (campaign, row_no, email, fields, message_id,"
                " state, updated, pickup_key) VALUES (?,?,?,?,?,'pending',?,?)",
                [(name, r, e, json.dumps(f), m, now, keys.get(e.lower())) for r, e, f, m in rows],
            )
        return self.get(name)

    def get(self, name: str) -> Campaign:
        row = self._db.execute("SELECT * FROM campaigns WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no campaign named {name!r}", hint="certmail campaign list")
        return Campaign(
            row["name"], json.loads(row["spec"]), row["state"], row["created"], row["updated"]
        )

    def state(self, name: str) -> str:
        """The campaign's state alone (its spec, with every recipient's key, unread)."""
        row = self._db.execute("SELECT state FROM campaigns WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no campaign named {name!r}", hint="certmail campaign list")
        return str(row["state"])

    def all(self) -> list[Campaign]:
        rows = self._db.execute("SELECT name FROM campaigns ORDER BY created").fetchall()
        return [self.get(r["name"]) for r in rows]

    def set_state(self, name: str, state: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE campaigns SET state=?, updated=? WHERE name=?", (state, now_text(), name)
            )

    # -- recipients ----------------------------------------------------------------

    def recipients(self, name: str, states: Sequence[str] | None = None) -> list[Recipient]:
        q = "SELECT * FROM campaign_recipients WHERE campaign=?"
        args: list[Any] = [name]
        if states is not None:
            q += f" AND state IN ({','.join('?' * len(states))})"
            args += list(states)
        rows = self._db.execute(q + " ORDER BY row_no", args).fetchall()
        return [Recipient.from_row(r) for r in rows]

    def pages(
        self, name: str, states: Sequence[str], size: int = PAGE
    ) -> Iterator[list[Recipient]]:
        """The recipients in ``states``, ``size`` at a time in row order (a query per
        page, no cursor left open across the caller's writes): a campaign of any size
        is walked with one page in memory. A recipient whose state changes after its
        page was read is not read again."""
        marks = ",".join("?" * len(states))
        last = -1
        while True:
            rows = self._db.execute(
                "SELECT * FROM campaign_recipients WHERE campaign=? AND row_no>?"  # noqa: S608
                f" AND state IN ({marks}) ORDER BY row_no LIMIT ?",
                [name, last, *states, size],
            ).fetchall()
            if not rows:
                return
            page = [Recipient.from_row(r) for r in rows]
            last = page[-1].row_no
            yield page

    def recipient(self, name: str, email: str) -> Recipient:
        row = self._db.execute(
            "SELECT * FROM campaign_recipients WHERE campaign=? AND email=?", (name, email)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no recipient {email} in campaign {name}")
        return Recipient.from_row(row)

    def forget_pickup_key(self, name: str, email: str) -> None:
        """Erase a recipient's own pickup key (their message is stored: not needed again)."""
        with self._tx() as db:
            db.execute(
                "UPDATE campaign_recipients SET pickup_key=NULL WHERE campaign=? AND email=?"
                " AND pickup_key IS NOT NULL",
                (name, email),
            )

    def checkpoint(self) -> None:
        """Copy the WAL into the file and empty it (``PRAGMA wal_checkpoint(TRUNCATE)``): the
        old copies of erased pickup keys' pages go with it (busy readers: left for later)."""
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def counts(self, name: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT state, count(*) AS n FROM campaign_recipients WHERE campaign=? GROUP BY state",
            (name,),
        ).fetchall()
        return {r["state"]: r["n"] for r in rows}

    def update(self, name: str, email: str, state: str, **fields: Any) -> None:
        """Move one recipient to ``state`` (with ``sha256``, ``reply``, ``error``...)."""
        self.record(name, [{"email": email, "state": state, **fields}])

    def record(self, name: str, results: Sequence[dict[str, Any]]) -> None:
        """Several recipients' new states in one transaction (each a dict with ``email``,
        ``state`` and any of ``sha256``, ``reply``, ``error``, ``queued_at``,
        ``submitted_at``, ``seal``; other keys are ignored). A recipient whose message is
        stored (``sha256``), failed or cancelled has its pickup key erased."""
        allowed = ("sha256", "reply", "error", "queued_at", "submitted_at", "seal")
        now = now_text()
        with self._tx() as db:
            for r in results:
                cols = ["state=?", "updated=?", "attempts=attempts+1"]
                if r.get("sha256") or r["state"] in ("failed", "cancelled"):
                    cols.append("pickup_key=NULL")
                args: list[Any] = [r["state"], now]
                for k in allowed:
                    if k in r:
                        cols.append(f"{k}=?")
                        args.append(r[k])
                db.execute(
                    f"UPDATE campaign_recipients SET {', '.join(cols)}"  # noqa: S608
                    " WHERE campaign=? AND email=?",
                    [*args, name, r["email"]],
                )

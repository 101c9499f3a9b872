"""The sender's view's message index: each account's messages and per-recipient states.

The log (notary.storage.LogStore) finds a message's entries by its SHA-256;
``GET /app`` needs the other direction, an account's messages newest first,
with filters, over tens of thousands of them. This index is derived from the
log alone and kept in ``web.db`` (:mod:`notary.web.app_db`): :meth:`MessageIndex.catch_up`
reads the entries committed since it last ran (``iter_entries`` from its
cursor) and applies them, in one transaction with the cursor, so several
worker processes may run it at once and each entry is applied exactly once.
It runs in the background (:mod:`notary.web.app_follow`); requests only read.
It may be deleted at any time: it is rebuilt from the log.

The state words and ranks are notary/states.py's (shared with certmail's receipt
timeline). ``deferred`` is not a log state: the index keeps such a recipient ``accepted``
and a ``deferred`` filter reads as ``accepted`` here; the caller narrows it with
the relay's queue (:meth:`notary.web.app_pages.AppPages.list_rows`).

Privacy follows the log's rule (DESIGN §4.1, ``LogStore.entries_for_account``):
an entry counts for the account that caused it, and an acknowledgement only for
the account of the acknowledged message's first acceptance, which is asked
of the store itself. Every query takes the account id.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notary.states import EVENT_STATES, FILTER_STATES, MESSAGE_EVENTS, STATE_WORDS
from notary.storage import LogStore, StoredEntry
from notary.web.app_db import WebDB

__all__ = ["STATES", "STATES_ALL", "Filters", "MessageIndex", "MessageRow", "RecipientState"]

#: The states a filter may ask for, and every state a row may show (notary/states.py).
STATES = FILTER_STATES
STATES_ALL = STATE_WORDS
#: Entries applied per :meth:`MessageIndex.catch_up` call (one transaction) at most.
CATCH_UP_LIMIT = 20_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS app_messages (
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  message_id TEXT NOT NULL,
  first_idx INTEGER NOT NULL,
  time TEXT NOT NULL,
  channel TEXT NOT NULL,
  UNIQUE (account_id, sha256)
);
CREATE INDEX IF NOT EXISTS app_messages_list ON app_messages (account_id, first_idx);
CREATE INDEX IF NOT EXISTS app_messages_mid ON app_messages (account_id, message_id);
CREATE TABLE IF NOT EXISTS app_recipients (
  message INTEGER NOT NULL,
  account_id INTEGER NOT NULL,
  recipient TEXT NOT NULL,
  state TEXT NOT NULL,
  rank INTEGER NOT NULL,
  changed TEXT NOT NULL,
  delivery_seconds REAL,
  PRIMARY KEY (message, recipient)
);
CREATE INDEX IF NOT EXISTS app_recipients_by ON app_recipients (account_id, recipient);
CREATE INDEX IF NOT EXISTS app_recipients_state ON app_recipients (account_id, state);
CREATE TABLE IF NOT EXISTS app_cursor (one INTEGER PRIMARY KEY CHECK (one = 1), next INTEGER);
"""


def _seconds(start: str, end: str) -> float | None:
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max((b - a).total_seconds(), 0.0)


@dataclass(frozen=True)
class Filters:
    """What the list shows: dates are ``YYYY-MM-DD`` (inclusive), ``query`` a
    Message-ID or a SHA-256 (already checked by the routes)."""

    since: str | None = None
    until: str | None = None
    recipient: str | None = None
    state: str | None = None
    query: str | None = None


@dataclass(frozen=True)
class RecipientState:
    """One recipient of a listed message: its state word and when it last changed."""

    address: str
    state: str
    changed: str


@dataclass(frozen=True)
class MessageRow:
    """One message of the list and its recipients' states (by address)."""

    sha256: str
    message_id: str
    time: str
    channel: str
    recipients: tuple[RecipientState, ...]

    @property
    def in_flight(self) -> bool:
        return self.channel != "api" and any(r.state == "accepted" for r in self.recipients)


class MessageIndex:
    """The index over ``web.db``, kept caught up by :meth:`catch_up`."""

    def __init__(self, db: WebDB, log: LogStore) -> None:
        self.db, self.log = db, log

    def cursor(self) -> int:
        """How many log entries the index covers (the next index it applies)."""
        row = self.db.read().execute("SELECT next FROM app_cursor").fetchone()
        return int(row[0]) if row else 0

    def catch_up(self, limit: int = CATCH_UP_LIMIT, size: int | None = None) -> int:
        """Apply the entries committed since the last call (at most ``limit``); how many.

        ``size``, when the caller knows the log holds that many (a commit of this
        process just told it), is caught up to instead of the latest checkpoint's size,
        which saves a read of the log (a query of the PostgreSQL backend per batch)."""
        if size is None:
            latest = self.log.latest_checkpoint()
            size = latest.size if latest else 0
        if self.cursor() >= size:
            return 0  # nothing new: no write transaction
        n = 0
        with self.db.write() as cur:
            row = cur.execute("SELECT next FROM app_cursor").fetchone()
            start = row[0] if row else 0
            nxt = start
            # The statements only: the tokens are not needed here (nor rebuilt).
            for e in self.log.iter_entries(start, min(size, start + limit), tokens=False):
                if e.account_id is not None:
                    self._apply(cur, e)
                nxt, n = e.index + 1, n + 1
            cur.execute("INSERT OR REPLACE INTO app_cursor VALUES (1, ?)", (nxt,))
        return n

    def _apply(self, cur: sqlite3.Cursor, e: StoredEntry) -> None:
        st: dict[str, Any] = json.loads(e.entry)
        when = str(st.get("time", ""))
        if e.event in MESSAGE_EVENTS:  # a message refused outright has no acceptance
            self._add_message(cur, e, st, when)
            if e.event == "SubmissionAcceptance":
                return
        if e.event not in EVENT_STATES:
            return
        found = cur.execute(
            "SELECT id, time FROM app_messages WHERE account_id = ? AND sha256 = ?",
            (e.account_id, e.sha256),
        ).fetchone()
        if found is None:
            return
        if e.event == "ContentHandover" and e.account_id is not None:
            mine = self.log.entries_for_account(e.sha256, e.account_id)
            if not any(m.index == e.index for m in mine):
                return
        state, rank = EVENT_STATES[e.event].word, EVENT_STATES[e.event].rank
        r = st.get("recipient")
        where, args = (
            ("", ()) if rank == 4 or not isinstance(r, str) else (" AND recipient = ?", (r,))
        )
        if where and rank < 4:
            cur.execute(
                "INSERT OR IGNORE INTO app_recipients"
                " (message, account_id, recipient, state, rank, changed)"
                " VALUES (?, ?, ?, ?, -1, ?)",
                (found[0], e.account_id, r, state, when),
            )
        secs = _seconds(found[1], when) if e.event == "RelayToNonERDS" else None
        update = (
            "UPDATE app_recipients SET state = ?, rank = ?, changed = ?,"  # noqa: S608
            " delivery_seconds = COALESCE(?, delivery_seconds)"
            f" WHERE message = ? AND rank <= ?{where}"
        )
        cur.execute(update, (state, rank, when, secs, found[0], rank, *args))

    def _add_message(
        self, cur: sqlite3.Cursor, e: StoredEntry, st: dict[str, Any], when: str
    ) -> None:
        """The message's row and its recipients (``accepted``), unless it has one."""
        cur.execute(
            "INSERT OR IGNORE INTO app_messages"
            " (account_id, sha256, message_id, first_idx, time, channel)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (e.account_id, e.sha256, e.message_id, e.index, when, str(st.get("channel", ""))),
        )
        if cur.rowcount:
            rcpts = [r for r in st.get("recipients") or [] if isinstance(r, str)]
            cur.executemany(
                "INSERT OR IGNORE INTO app_recipients"
                " (message, account_id, recipient, state, rank, changed)"
                " VALUES (?, ?, ?, 'accepted', 0, ?)",
                [(cur.lastrowid, e.account_id, r, when) for r in rcpts],
            )

    def _where(self, account_id: int, f: Filters) -> tuple[str, list[Any]]:
        sql, args = ["m.account_id = ?"], list[Any]([account_id])
        if f.since:
            sql.append("m.time >= ?")
            args.append(f.since)
        if f.until:
            sql.append("m.time < ?")
            args.append(f.until + "T24")  # inclusive: every time of that day sorts below
        if f.query:
            sql.append("(m.sha256 = ? OR m.message_id = ?)")
            args += [f.query, f.query]
        if f.state == "notarized":
            sql.append("m.channel = 'api'")
        if f.recipient or (f.state and f.state != "notarized"):
            cond = ["r.message = m.id"]
            if f.recipient:
                cond.append("r.account_id = ? AND r.recipient = ?")
                args += [account_id, f.recipient]
            if f.state and f.state != "notarized":
                cond.append("r.state = ?")
                args.append("accepted" if f.state == "deferred" else f.state)
            sql.append(f"EXISTS (SELECT 1 FROM app_recipients r WHERE {' AND '.join(cond)})")  # noqa: S608
        return " AND ".join(sql), args

    def page(
        self, account_id: int, f: Filters, offset: int, limit: int
    ) -> tuple[int, list[MessageRow]]:
        """The total matching and one page of the account's messages, newest first."""
        where, args = self._where(account_id, f)
        cur = self.db.read()
        count = f"SELECT COUNT(*) FROM app_messages m WHERE {where}"  # noqa: S608
        total = cur.execute(count, args).fetchone()[0]
        rows = cur.execute(
            "SELECT id, sha256, message_id, time, channel FROM app_messages m"  # noqa: S608
            f" WHERE {where} ORDER BY first_idx DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        per: dict[int, list[RecipientState]] = {r[0]: [] for r in rows}
        if per:
            marks = ",".join("?" * len(per))
            for mid, rcpt, state, changed in cur.execute(
                "SELECT message, recipient, state, changed FROM app_recipients"  # noqa: S608
                f" WHERE account_id = ? AND message IN ({marks}) ORDER BY recipient",
                [account_id, *per],
            ):
                per[mid].append(RecipientState(rcpt, state, changed))
        return int(total), [MessageRow(r[1], r[2], r[3], r[4], tuple(per[r[0]])) for r in rows]

    def daily(self, account_id: int, since: str) -> list[tuple[str, int, float | None]]:
        """Per day since ``since`` (``YYYY-MM-DD``): messages, and the median delivery time
        in seconds of the recipients delivered that day's messages (None without one)."""
        cur = self.db.read()
        counts = dict(
            cur.execute(
                "SELECT substr(time, 1, 10) AS day, COUNT(*) FROM app_messages"
                " WHERE account_id = ? AND time >= ? GROUP BY day",
                (account_id, since),
            ).fetchall()
        )
        secs: dict[str, list[float]] = {}
        for day, s in cur.execute(
            "SELECT substr(m.time, 1, 10), r.delivery_seconds FROM app_messages m"
            " JOIN app_recipients r ON r.message = m.id"
            " WHERE m.account_id = ? AND m.time >= ? AND r.delivery_seconds IS NOT NULL",
            (account_id, since),
        ):
            secs.setdefault(day, []).append(float(s))
        days = sorted(set(counts) | set(secs))
        return [(d, int(counts.get(d, 0)), _median(secs.get(d, []))) for d in days]


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2

"""SQLite backend: the embedded default, one file in the notary's directory.

WAL journal with ``synchronous=FULL``: a commit is on disk (fsynced) when it
returns. Writers serialise with ``BEGIN IMMEDIATE``, which also excludes other
processes; readers use their own per-thread connections and see committed data.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from keys.errors import ConflictError, NotFoundError
from notary.errors import StorageError
from notary.storage import (
    DELIVERY_STATES,
    Account,
    Delivery,
    HeldMessage,
    NewEntry,
    QueueWrite,
    StoredCheckpoint,
    StoredEntry,
    TrackingToken,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    account_id INTEGER,
    sha256 TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event TEXT NOT NULL,
    entry BLOB NOT NULL,
    tst BLOB
);
CREATE INDEX IF NOT EXISTS entries_sha256 ON entries (sha256);
CREATE TABLE IF NOT EXISTS hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    time TEXT NOT NULL,
    note BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash BLOB NOT NULL UNIQUE,
    created TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    receipt_emails INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS addresses (
    address TEXT NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (address, account_id)
);
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL,
    message_id TEXT NOT NULL,
    account_id INTEGER,
    mail_from TEXT NOT NULL,
    received REAL NOT NULL,
    node TEXT NOT NULL,
    log_size INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data BLOB
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    spool_id INTEGER NOT NULL REFERENCES spool(id),
    recipient TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'queued', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL,
    lease_owner TEXT,
    lease_until REAL,
    warned INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_node TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt);
CREATE INDEX IF NOT EXISTS deliveries_spool ON deliveries (spool_id);
CREATE TABLE IF NOT EXISTS tracking_tokens (
    token_hash BLOB PRIMARY KEY,
    account_id INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    created TEXT NOT NULL
);
"""


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


class _Tx:
    """A LogTransaction over the write connection inside BEGIN IMMEDIATE."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def tree_size(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()
        return int(row[0])

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return _latest_checkpoint(self.conn)

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return _read_hashes(self.conn, indexes)

    def append(
        self,
        start: int,
        entries: Sequence[NewEntry],
        hashes: Sequence[bytes],
        hash_start: int,
        checkpoint: StoredCheckpoint,
    ) -> None:
        self.conn.executemany(
            "INSERT INTO entries (idx, account_id, sha256, message_id, event, entry, tst)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (start + i, e.account_id, e.sha256, e.message_id, e.event, e.entry, e.tst)
                for i, e in enumerate(entries)
            ],
        )
        self.conn.executemany(
            "INSERT INTO hashes (idx, hash) VALUES (?, ?)",
            [(hash_start + i, h) for i, h in enumerate(hashes)],
        )
        self.conn.execute(
            "INSERT INTO checkpoints (size, root, time, note) VALUES (?, ?, ?, ?)",
            (checkpoint.size, checkpoint.root_hash, _ts(checkpoint.time), checkpoint.note),
        )


def _latest_checkpoint(conn: sqlite3.Connection) -> StoredCheckpoint | None:
    row = conn.execute(
        "SELECT size, root, time, note FROM checkpoints ORDER BY size DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return StoredCheckpoint(int(row[0]), bytes(row[1]), _dt(row[2]), bytes(row[3]))


def _read_hashes(conn: sqlite3.Connection, indexes: Sequence[int]) -> list[bytes]:
    if not indexes:
        return []
    found: dict[int, bytes] = {}
    wanted = sorted(set(indexes))
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for idx, h in conn.execute(f"SELECT idx, hash FROM hashes WHERE idx IN ({marks})", chunk):  # noqa: S608
            found[int(idx)] = bytes(h)
    try:
        return [found[i] for i in indexes]
    except KeyError as e:
        raise StorageError(f"stored hash {e.args[0]} is missing: the log is damaged") from None


def _entry(row: tuple[object, ...]) -> StoredEntry:
    idx, account_id, sha256, message_id, event, entry, tst = row
    return StoredEntry(
        index=int(idx),  # type: ignore[call-overload]
        account_id=None if account_id is None else int(account_id),  # type: ignore[call-overload]
        sha256=str(sha256),
        message_id=str(message_id),
        event=str(event),
        entry=bytes(entry),  # type: ignore[call-overload]
        tst=None if tst is None else bytes(tst),  # type: ignore[call-overload]
    )


_ENTRY_COLS = "idx, account_id, sha256, message_id, event, entry, tst"


class SQLiteStorage:
    """The SQLite backend. See notary.storage for the durability guarantee."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._writer = self._connect()
        with self._write_lock:
            self._writer.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add columns that databases created by older versions lack (idempotent)."""
        with self._write() as conn:
            cols = {str(r[1]) for r in conn.execute("PRAGMA table_info(accounts)")}
            if "receipt_emails" not in cols:
                conn.execute(
                    "ALTER TABLE accounts ADD COLUMN receipt_emails INTEGER NOT NULL DEFAULT 0"
                )
            cols = {str(r[1]) for r in conn.execute("PRAGMA table_info(deliveries)")}
            if "last_node" not in cols:
                conn.execute("ALTER TABLE deliveries ADD COLUMN last_node TEXT")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as e:
            raise StorageError(f"cannot open the database {self.path}: {e}") from e
        return conn

    @property
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    # --- log -----------------------------------------------------------------
    @contextmanager
    def sequence(self) -> Iterator[_Tx]:
        with self._write() as conn:
            yield _Tx(conn)

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return _read_hashes(self._reader, indexes)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return _latest_checkpoint(self._reader)

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        row = self._reader.execute(
            "SELECT size, root, time, note FROM checkpoints WHERE size = ?", (size,)
        ).fetchone()
        if row is None:
            return None
        return StoredCheckpoint(int(row[0]), bytes(row[1]), _dt(row[2]), bytes(row[3]))

    def entry(self, index: int) -> StoredEntry | None:
        row = self._reader.execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE idx = ?", (index,)  # noqa: S608
        ).fetchone()
        return None if row is None else _entry(row)

    def entries_for_message(self, sha256: str) -> list[StoredEntry]:
        rows = self._reader.execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE sha256 = ? ORDER BY idx",  # noqa: S608
            (sha256,),
        ).fetchall()
        return [_entry(r) for r in rows]

    def iter_entries(self, start: int = 0) -> Iterator[StoredEntry]:
        cur = self._reader.execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE idx >= ? ORDER BY idx",  # noqa: S608
            (start,),
        )
        for row in cur:
            yield _entry(row)

    # --- accounts --------------------------------------------------------------
    def _account(self, conn: sqlite3.Connection, account_id: int) -> Account:
        row = conn.execute(
            "SELECT id, created, revoked, receipt_emails FROM accounts WHERE id = ?", (account_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no account {account_id}")
        addrs = conn.execute(
            "SELECT address FROM addresses WHERE account_id = ? ORDER BY rowid", (account_id,)
        ).fetchall()
        return Account(int(row[0]), tuple(a[0] for a in addrs), _dt(row[1]), bool(row[2]),
                       bool(row[3]))

    def add_account(
        self, addresses: Sequence[str], token_hash: bytes, created: datetime,
        *, receipt_emails: bool = False,
    ) -> Account:
        with self._write() as conn:
            for a in addresses:
                owner = conn.execute(
                    "SELECT a.id FROM addresses d JOIN accounts a ON a.id = d.account_id"
                    " WHERE d.address = ? AND a.revoked = 0",
                    (a,),
                ).fetchone()
                if owner is not None:
                    raise ConflictError(
                        f"{a} already belongs to account {owner[0]}",
                        hint=f"revoke it first: certmail notary accounts revoke {a}",
                    )
            cur = conn.execute(
                "INSERT INTO accounts (token_hash, created, receipt_emails) VALUES (?, ?, ?)",
                (token_hash, _ts(created), int(receipt_emails)),
            )
            account_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT INTO addresses (address, account_id) VALUES (?, ?)",
                [(a, account_id) for a in addresses],
            )
            return self._account(conn, account_id)

    def accounts(self) -> list[Account]:
        conn = self._reader
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM accounts ORDER BY id")]
        return [self._account(conn, i) for i in ids]

    def account_by_token_hash(self, token_hash: bytes) -> Account | None:
        conn = self._reader
        row = conn.execute(
            "SELECT id FROM accounts WHERE token_hash = ? AND revoked = 0", (token_hash,)
        ).fetchone()
        return None if row is None else self._account(conn, int(row[0]))

    def account_by_address(self, address: str) -> Account | None:
        conn = self._reader
        row = conn.execute(
            "SELECT a.id FROM addresses d JOIN accounts a ON a.id = d.account_id"
            " WHERE d.address = ? AND a.revoked = 0",
            (address,),
        ).fetchone()
        return None if row is None else self._account(conn, int(row[0]))

    def account(self, account_id: int) -> Account | None:
        try:
            return self._account(self._reader, account_id)
        except NotFoundError:
            return None

    def set_receipt_emails(self, address_or_id: str, on: bool) -> Account:
        with self._write() as conn:
            account_id = self._find(conn, address_or_id)
            conn.execute("UPDATE accounts SET receipt_emails = ? WHERE id = ?",
                         (int(on), account_id))
            return self._account(conn, account_id)

    def _find(self, conn: sqlite3.Connection, address_or_id: str) -> int:
        if address_or_id.isdigit():
            row = conn.execute(
                "SELECT id FROM accounts WHERE id = ?", (int(address_or_id),)
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT a.id FROM addresses d JOIN accounts a ON a.id = d.account_id"
                " WHERE d.address = ? ORDER BY a.revoked, a.id DESC LIMIT 1",
                (address_or_id,),
            ).fetchone()
        if row is None:
            raise NotFoundError(
                f"no account for {address_or_id}",
                hint="list them: certmail notary accounts list --dir DIR",
            )
        return int(row[0])

    def revoke_account(self, address_or_id: str) -> Account:
        with self._write() as conn:
            account_id = self._find(conn, address_or_id)
            conn.execute("UPDATE accounts SET revoked = 1 WHERE id = ?", (account_id,))
            return self._account(conn, account_id)

    # --- open tracking -----------------------------------------------------------
    def add_tracking_tokens(self, tokens: Sequence[TrackingToken]) -> None:
        try:
            with self._write() as conn:
                conn.executemany(
                    "INSERT INTO tracking_tokens (token_hash, account_id, sha256, message_id,"
                    " recipient, created) VALUES (?, ?, ?, ?, ?, ?)",
                    [(t.token_hash, t.account_id, t.sha256, t.message_id, t.recipient,
                      _ts(t.created)) for t in tokens],
                )
        except sqlite3.IntegrityError:
            raise ConflictError("a tracking token is already registered") from None

    def tracking_token(self, token_hash: bytes) -> TrackingToken | None:
        row = self._reader.execute(
            "SELECT token_hash, account_id, sha256, message_id, recipient, created"
            " FROM tracking_tokens WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        if row is None:
            return None
        return TrackingToken(bytes(row[0]), int(row[1]), str(row[2]), str(row[3]), str(row[4]),
                             _dt(row[5]))

    # --- relay spool and delivery queue ---------------------------------------
    def queue_write(self, write: QueueWrite) -> list[int]:
        try:
            return self._queue_write(write)
        except sqlite3.Error as e:
            raise StorageError(f"cannot write the relay queue: {e}") from e

    def _queue_write(self, write: QueueWrite) -> list[int]:
        ids: list[int] = []
        with self._write() as conn:
            for it in write.spool:
                cur = conn.execute(
                    "INSERT INTO spool (sha256, message_id, account_id, mail_from, received,"
                    " node, log_size, kind, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (it.sha256, it.message_id, it.account_id, it.mail_from,
                     it.received.timestamp(), it.node, it.log_size, it.kind, it.data),
                )
                sid = int(cur.lastrowid or 0)
                ids.append(sid)
                state = "held" if it.held else "queued"
                conn.executemany(
                    "INSERT INTO deliveries (spool_id, recipient, state, next_attempt)"
                    " VALUES (?, ?, ?, ?)",
                    [(sid, r, state, it.received.timestamp()) for r in it.recipients],
                )
            if write.release:
                conn.executemany(
                    "UPDATE deliveries SET state = 'queued' WHERE spool_id = ? AND state = 'held'",
                    [(i,) for i in write.release],
                )
            for sid in write.discard:
                held = conn.execute(
                    "SELECT COUNT(*) FROM deliveries WHERE spool_id = ? AND state != 'held'",
                    (sid,),
                ).fetchone()[0]
                if held == 0:
                    conn.execute("DELETE FROM deliveries WHERE spool_id = ?", (sid,))
                    conn.execute("DELETE FROM spool WHERE id = ?", (sid,))
            if write.updates:
                conn.executemany(
                    "UPDATE deliveries SET state = ?, next_attempt = ?, last_error = ?,"
                    " warned = ?, attempts = attempts + 1, lease_owner = NULL,"
                    " lease_until = NULL, last_node = COALESCE(?, last_node) WHERE id = ?",
                    [
                        (u.state, u.next_attempt.timestamp() if u.next_attempt else None,
                         u.error, int(u.warned), u.node, u.delivery_id)
                        for u in write.updates
                    ],
                )
                final = [u.delivery_id for u in write.updates if u.state != "queued"]
                for i in range(0, len(final), 500):
                    chunk = final[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    conn.execute(
                        "UPDATE spool SET data = NULL WHERE id IN (SELECT spool_id FROM"  # noqa: S608
                        f" deliveries WHERE id IN ({marks})) AND NOT EXISTS (SELECT 1 FROM"
                        " deliveries d WHERE d.spool_id = spool.id"
                        " AND d.state IN ('held', 'queued'))",
                        chunk,
                    )
        return ids

    def claim_deliveries(
        self, node: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        t = now.timestamp()
        due = (
            "state = 'queued' AND next_attempt <= ? AND (lease_until IS NULL OR lease_until < ?)"
        )
        # A cheap read first: no write transaction (and no fsync) when nothing is due.
        if self._reader.execute(
            f"SELECT 1 FROM deliveries WHERE {due} LIMIT 1", (t, t)  # noqa: S608
        ).fetchone() is None:
            return []
        with self._write() as conn:
            ids = [
                int(r[0])
                for r in conn.execute(
                    f"SELECT id FROM deliveries WHERE {due} ORDER BY next_attempt, id"  # noqa: S608
                    " LIMIT ?",
                    (t, t, limit),
                )
            ]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            conn.execute(
                f"UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE id IN ({marks})",  # noqa: S608
                (node, lease_until.timestamp(), *ids),
            )
            rows = conn.execute(
                "SELECT d.id, d.spool_id, d.recipient, d.attempts, d.warned, s.sha256,"  # noqa: S608
                " s.message_id, s.account_id, s.mail_from, s.received, s.kind"
                f" FROM deliveries d JOIN spool s ON s.id = d.spool_id WHERE d.id IN ({marks})"
                " ORDER BY d.next_attempt, d.id",
                ids,
            ).fetchall()
        return [
            Delivery(int(r[0]), int(r[1]), str(r[2]), int(r[3]), bool(r[4]), str(r[5]),
                     str(r[6]), None if r[7] is None else int(r[7]), str(r[8]),
                     datetime.fromtimestamp(float(r[9]), UTC), str(r[10]))
            for r in rows
        ]

    def spooled_data(self, spool_id: int) -> bytes | None:
        row = self._reader.execute("SELECT data FROM spool WHERE id = ?", (spool_id,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def held_messages(
        self, received_before: datetime, node: str | None = None
    ) -> list[HeldMessage]:
        rows = self._reader.execute(
            "SELECT DISTINCT s.id, s.sha256, s.message_id, s.account_id, s.received,"
            " s.log_size, s.node FROM spool s JOIN deliveries d ON d.spool_id = s.id"
            " WHERE d.state = 'held' AND s.received < ? AND (? IS NULL OR s.node = ?)"
            " ORDER BY s.id",
            (received_before.timestamp(), node, node),
        ).fetchall()
        return [
            HeldMessage(int(r[0]), str(r[1]), str(r[2]), None if r[3] is None else int(r[3]),
                        datetime.fromtimestamp(float(r[4]), UTC), int(r[5]), str(r[6]))
            for r in rows
        ]

    def renew_leases(self, node: str, ids: Sequence[int], lease_until: datetime) -> int:
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE deliveries SET lease_until = ?"  # noqa: S608
                f" WHERE lease_owner = ? AND state = 'queued' AND id IN ({marks})",
                (lease_until.timestamp(), node, *ids),
            )
            return int(cur.rowcount)

    def release_leases(self, node: str) -> int:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL"
                " WHERE lease_owner = ?",
                (node,),
            )
            return int(cur.rowcount)

    def queue_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(DELIVERY_STATES, 0)
        for state, n in self._reader.execute(
            "SELECT state, COUNT(*) FROM deliveries GROUP BY state"
        ):
            counts[str(state)] = int(n)
        return counts

    def close(self) -> None:
        self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

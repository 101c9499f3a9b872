"""PostgreSQL backend (psycopg 3): for when one machine is not enough.

Several ``certmail notary serve`` processes may share one database. Sequencing
is serialised by a transaction-scoped advisory lock, so exactly one process
appends at a time; commits are durable with PostgreSQL's default
``synchronous_commit=on``. ``schema`` (or ``?schema=`` in the URL) keeps the
tables in their own namespace, which the tests use for isolation.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

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

# pg_advisory_xact_lock key for the sequencer: "certmail" in ASCII, as a bigint.
SEQUENCER_LOCK = 0x63657274_6D61696C

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx BIGINT PRIMARY KEY,
    account_id BIGINT,
    sha256 TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event TEXT NOT NULL,
    entry BYTEA NOT NULL,
    tst BYTEA
);
CREATE INDEX IF NOT EXISTS entries_sha256 ON entries (sha256);
CREATE TABLE IF NOT EXISTS hashes (idx BIGINT PRIMARY KEY, hash BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    note BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id BIGSERIAL PRIMARY KEY,
    token_hash BYTEA NOT NULL UNIQUE,
    created TIMESTAMPTZ NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    receipt_emails BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS addresses (
    pos BIGSERIAL,
    address TEXT NOT NULL,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (address, account_id)
);
CREATE TABLE IF NOT EXISTS spool (
    id BIGSERIAL PRIMARY KEY,
    sha256 TEXT NOT NULL,
    message_id TEXT NOT NULL,
    account_id BIGINT,
    mail_from TEXT NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    node TEXT NOT NULL,
    log_size BIGINT NOT NULL,
    kind TEXT NOT NULL,
    data BYTEA
);
CREATE TABLE IF NOT EXISTS deliveries (
    id BIGSERIAL PRIMARY KEY,
    spool_id BIGINT NOT NULL REFERENCES spool(id),
    recipient TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'queued', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt DOUBLE PRECISION,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    warned BOOLEAN NOT NULL DEFAULT FALSE,
    last_error TEXT,
    last_node TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt);
CREATE INDEX IF NOT EXISTS deliveries_spool ON deliveries (spool_id);
CREATE TABLE IF NOT EXISTS tracking_tokens (
    token_hash BYTEA PRIMARY KEY,
    account_id BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    created TIMESTAMPTZ NOT NULL
);
"""

_ENTRY_COLS = "idx, account_id, sha256, message_id, event, entry, tst"


def _entry(row: tuple[Any, ...]) -> StoredEntry:
    idx, account_id, sha256, message_id, event, entry, tst = row
    return StoredEntry(
        int(idx),
        None if account_id is None else int(account_id),
        sha256,
        message_id,
        event,
        bytes(entry),
        None if tst is None else bytes(tst),
    )


def _checkpoint(row: tuple[Any, ...] | None) -> StoredCheckpoint | None:
    if row is None:
        return None
    return StoredCheckpoint(int(row[0]), bytes(row[1]), row[2], bytes(row[3]))


def _read_hashes(conn: psycopg.Connection[Any], indexes: Sequence[int]) -> list[bytes]:
    if not indexes:
        return []
    rows = conn.execute(
        "SELECT idx, hash FROM hashes WHERE idx = ANY(%s)", (sorted(set(indexes)),)
    ).fetchall()
    found = {int(i): bytes(h) for i, h in rows}
    try:
        return [found[i] for i in indexes]
    except KeyError as e:
        raise StorageError(f"stored hash {e.args[0]} is missing: the log is damaged") from None


class _Tx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def tree_size(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()
        return int(row[0]) if row else 0

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return _checkpoint(
            self.conn.execute(
                "SELECT size, root, time, note FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
        )

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
        with self.conn.cursor() as cur:
            with cur.copy(
                "COPY entries (idx, account_id, sha256, message_id, event, entry, tst) FROM STDIN"
            ) as copy:
                for i, e in enumerate(entries):
                    copy.write_row(
                        (start + i, e.account_id, e.sha256, e.message_id, e.event, e.entry, e.tst)
                    )
            with cur.copy("COPY hashes (idx, hash) FROM STDIN") as copy:
                for i, h in enumerate(hashes):
                    copy.write_row((hash_start + i, h))
            cur.execute(
                "INSERT INTO checkpoints (size, root, time, note) VALUES (%s, %s, %s, %s)",
                (checkpoint.size, checkpoint.root_hash, checkpoint.time, checkpoint.note),
            )


def _split_schema(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = [(k, v) for k, v in query if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


class PostgresStorage:
    """The PostgreSQL backend. See notary.storage for the durability guarantee."""

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url, url_schema = _split_schema(url)
        self.schema = schema or url_schema
        if self.schema is not None and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.schema):
            raise StorageError(f"invalid schema name {self.schema!r}")
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[psycopg.Connection[Any]] = []
        self._writer = self._connect(autocommit=False)
        with self._writer.transaction():
            # Serialise concurrent first-time schema creation by several processes.
            self._writer.execute("SELECT pg_advisory_xact_lock(%s)", (SEQUENCER_LOCK,))
            self._writer.execute(SCHEMA)
            # Databases created by older versions lack these columns (ALTER only then:
            # it takes an exclusive lock on the table).
            for table, column, decl in (
                ("accounts", "receipt_emails", "BOOLEAN NOT NULL DEFAULT FALSE"),
                ("deliveries", "last_node", "TEXT"),
            ):
                has = self._writer.execute(
                    "SELECT 1 FROM information_schema.columns"
                    " WHERE table_schema = current_schema()"
                    " AND table_name = %s AND column_name = %s",
                    (table, column),
                ).fetchone()
                if has is None:
                    self._writer.execute(
                        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {decl}"
                    )

    def _connect(self, *, autocommit: bool) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=True)
            if self.schema:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                conn.execute(f'SET search_path TO "{self.schema}"')
            conn.autocommit = autocommit
        except psycopg.Error as e:
            raise StorageError(
                f"cannot connect to PostgreSQL: {str(e).strip().splitlines()[0]}"
            ) from e
        self._all.append(conn)
        return conn

    @property
    def _reader(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect(autocommit=True)
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        with self._write_lock:
            try:
                with self._writer.transaction():
                    yield self._writer
            except psycopg.errors.UniqueViolation as e:
                raise StorageError(f"conflicting write: {e}") from e

    @contextmanager
    def sequence(self) -> Iterator[_Tx]:
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SEQUENCER_LOCK,))
            yield _Tx(conn)

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return _read_hashes(self._reader, indexes)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return _checkpoint(
            self._reader.execute(
                "SELECT size, root, time, note FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
        )

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        return _checkpoint(
            self._reader.execute(
                "SELECT size, root, time, note FROM checkpoints WHERE size = %s", (size,)
            ).fetchone()
        )

    def entry(self, index: int) -> StoredEntry | None:
        row = self._reader.execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE idx = %s", (index,)  # noqa: S608
        ).fetchone()
        return None if row is None else _entry(row)

    def entries_for_message(self, sha256: str) -> list[StoredEntry]:
        rows = self._reader.execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE sha256 = %s ORDER BY idx",  # noqa: S608
            (sha256,),
        ).fetchall()
        return [_entry(r) for r in rows]

    def iter_entries(self, start: int = 0) -> Iterator[StoredEntry]:
        rows = self._reader.execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE idx >= %s ORDER BY idx",  # noqa: S608
            (start,),
        )
        for row in rows:
            yield _entry(row)

    def _account(self, conn: psycopg.Connection[Any], account_id: int) -> Account:
        row = conn.execute(
            "SELECT id, created, revoked, receipt_emails FROM accounts WHERE id = %s",
            (account_id,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no account {account_id}")
        addrs = conn.execute(
            "SELECT address FROM addresses WHERE account_id = %s ORDER BY pos", (account_id,)
        ).fetchall()
        return Account(int(row[0]), tuple(a[0] for a in addrs), row[1], bool(row[2]),
                       bool(row[3]))

    def add_account(
        self, addresses: Sequence[str], token_hash: bytes, created: datetime,
        *, receipt_emails: bool = False,
    ) -> Account:
        with self._write() as conn:
            conn.execute("LOCK TABLE addresses IN EXCLUSIVE MODE")
            for a in addresses:
                owner = conn.execute(
                    "SELECT a.id FROM addresses d JOIN accounts a ON a.id = d.account_id"
                    " WHERE d.address = %s AND NOT a.revoked",
                    (a,),
                ).fetchone()
                if owner is not None:
                    raise ConflictError(
                        f"{a} already belongs to account {owner[0]}",
                        hint=f"revoke it first: certmail notary accounts revoke {a}",
                    )
            row = conn.execute(
                "INSERT INTO accounts (token_hash, created, receipt_emails) VALUES (%s, %s, %s)"
                " RETURNING id",
                (token_hash, created, receipt_emails),
            ).fetchone()
            assert row is not None
            account_id = int(row[0])
            for a in addresses:
                conn.execute(
                    "INSERT INTO addresses (address, account_id) VALUES (%s, %s)",
                    (a, account_id),
                )
            return self._account(conn, account_id)

    def accounts(self) -> list[Account]:
        conn = self._reader
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM accounts ORDER BY id")]
        return [self._account(conn, i) for i in ids]

    def account_by_token_hash(self, token_hash: bytes) -> Account | None:
        conn = self._reader
        row = conn.execute(
            "SELECT id FROM accounts WHERE token_hash = %s AND NOT revoked", (token_hash,)
        ).fetchone()
        return None if row is None else self._account(conn, int(row[0]))

    def account_by_address(self, address: str) -> Account | None:
        conn = self._reader
        row = conn.execute(
            "SELECT a.id FROM addresses d JOIN accounts a ON a.id = d.account_id"
            " WHERE d.address = %s AND NOT a.revoked",
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
            conn.execute("UPDATE accounts SET receipt_emails = %s WHERE id = %s",
                         (on, account_id))
            return self._account(conn, account_id)

    def revoke_account(self, address_or_id: str) -> Account:
        with self._write() as conn:
            account_id = self._find(conn, address_or_id)
            conn.execute("UPDATE accounts SET revoked = TRUE WHERE id = %s", (account_id,))
            return self._account(conn, account_id)

    def _find(self, conn: psycopg.Connection[Any], address_or_id: str) -> int:
        """The id of the account named by an id or one of its addresses; NotFoundError."""
        if address_or_id.isdigit():
            row = conn.execute(
                "SELECT id FROM accounts WHERE id = %s", (int(address_or_id),)
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT a.id FROM addresses d JOIN accounts a ON a.id = d.account_id"
                " WHERE d.address = %s ORDER BY a.revoked, a.id DESC LIMIT 1",
                (address_or_id,),
            ).fetchone()
        if row is None:
            raise NotFoundError(
                f"no account for {address_or_id}",
                hint="list them: certmail notary accounts list --dir DIR",
            )
        return int(row[0])

    # --- open tracking -----------------------------------------------------------
    def add_tracking_tokens(self, tokens: Sequence[TrackingToken]) -> None:
        try:
            with self._write() as conn, conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO tracking_tokens (token_hash, account_id, sha256, message_id,"
                    " recipient, created) VALUES (%s, %s, %s, %s, %s, %s)",
                    [(t.token_hash, t.account_id, t.sha256, t.message_id, t.recipient,
                      t.created) for t in tokens],
                )
        except StorageError as e:
            if isinstance(e.__cause__, psycopg.errors.UniqueViolation):
                raise ConflictError("a tracking token is already registered") from None
            raise

    def tracking_token(self, token_hash: bytes) -> TrackingToken | None:
        row = self._reader.execute(
            "SELECT token_hash, account_id, sha256, message_id, recipient, created"
            " FROM tracking_tokens WHERE token_hash = %s", (token_hash,)
        ).fetchone()
        if row is None:
            return None
        return TrackingToken(bytes(row[0]), int(row[1]), str(row[2]), str(row[3]), str(row[4]),
                             row[5])

    # --- relay spool and delivery queue ---------------------------------------
    def queue_write(self, write: QueueWrite) -> list[int]:
        try:
            return self._queue_write(write)
        except psycopg.Error as e:
            raise StorageError(f"cannot write the relay queue: {e}") from e

    def _queue_write(self, write: QueueWrite) -> list[int]:
        ids: list[int] = []
        with self._write() as conn, conn.cursor() as cur:
            for it in write.spool:
                cur.execute(
                    "INSERT INTO spool (sha256, message_id, account_id, mail_from, received,"
                    " node, log_size, kind, data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " RETURNING id",
                    (it.sha256, it.message_id, it.account_id, it.mail_from,
                     it.received.timestamp(), it.node, it.log_size, it.kind, it.data),
                )
                row = cur.fetchone()
                assert row is not None
                sid = int(row[0])
                ids.append(sid)
                state = "held" if it.held else "queued"
                cur.executemany(
                    "INSERT INTO deliveries (spool_id, recipient, state, next_attempt)"
                    " VALUES (%s, %s, %s, %s)",
                    [(sid, r, state, it.received.timestamp()) for r in it.recipients],
                )
            if write.release:
                cur.execute(
                    "UPDATE deliveries SET state = 'queued'"
                    " WHERE spool_id = ANY(%s) AND state = 'held'",
                    (list(write.release),),
                )
            for sid in write.discard:
                cur.execute(
                    "SELECT COUNT(*) FROM deliveries WHERE spool_id = %s AND state != 'held'",
                    (sid,),
                )
                row = cur.fetchone()
                if row is not None and int(row[0]) == 0:
                    cur.execute("DELETE FROM deliveries WHERE spool_id = %s", (sid,))
                    cur.execute("DELETE FROM spool WHERE id = %s", (sid,))
            if write.updates:
                cur.executemany(
                    "UPDATE deliveries SET state = %s, next_attempt = %s, last_error = %s,"
                    " warned = %s, attempts = attempts + 1, lease_owner = NULL,"
                    " lease_until = NULL, last_node = COALESCE(%s, last_node) WHERE id = %s",
                    [
                        (u.state, u.next_attempt.timestamp() if u.next_attempt else None,
                         u.error, u.warned, u.node, u.delivery_id)
                        for u in write.updates
                    ],
                )
                final = [u.delivery_id for u in write.updates if u.state != "queued"]
                if final:
                    cur.execute(
                        "UPDATE spool SET data = NULL WHERE id IN (SELECT spool_id FROM"
                        " deliveries WHERE id = ANY(%s)) AND NOT EXISTS (SELECT 1 FROM"
                        " deliveries d WHERE d.spool_id = spool.id"
                        " AND d.state IN ('held', 'queued'))",
                        (final,),
                    )
        return ids

    def claim_deliveries(
        self, node: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        t = now.timestamp()
        due = (
            "state = 'queued' AND next_attempt <= %s"
            " AND (lease_until IS NULL OR lease_until < %s)"
        )
        if self._reader.execute(
            f"SELECT 1 FROM deliveries WHERE {due} LIMIT 1", (t, t)  # noqa: S608
        ).fetchone() is None:
            return []
        with self._write() as conn:
            # Each due row goes to one claimer: rows another node is claiming
            # right now are skipped, not waited for.
            rows = conn.execute(
                "WITH c AS (SELECT id FROM deliveries WHERE "  # noqa: S608
                + due
                + " ORDER BY next_attempt, id LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE deliveries d SET lease_owner = %s, lease_until = %s FROM c, spool s"
                " WHERE d.id = c.id AND s.id = d.spool_id"
                " RETURNING d.id, d.spool_id, d.recipient, d.attempts, d.warned, s.sha256,"
                " s.message_id, s.account_id, s.mail_from, s.received, s.kind, d.next_attempt",
                (t, t, limit, node, lease_until.timestamp()),
            ).fetchall()
        rows.sort(key=lambda r: (r[11], r[0]))
        return [
            Delivery(int(r[0]), int(r[1]), str(r[2]), int(r[3]), bool(r[4]), str(r[5]),
                     str(r[6]), None if r[7] is None else int(r[7]), str(r[8]),
                     datetime.fromtimestamp(float(r[9]), UTC), str(r[10]))
            for r in rows
        ]

    def spooled_data(self, spool_id: int) -> bytes | None:
        row = self._reader.execute(
            "SELECT data FROM spool WHERE id = %s", (spool_id,)
        ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def held_messages(
        self, received_before: datetime, node: str | None = None
    ) -> list[HeldMessage]:
        rows = self._reader.execute(
            "SELECT DISTINCT s.id, s.sha256, s.message_id, s.account_id, s.received,"
            " s.log_size, s.node FROM spool s JOIN deliveries d ON d.spool_id = s.id"
            " WHERE d.state = 'held' AND s.received < %s"
            " AND (%s::text IS NULL OR s.node = %s) ORDER BY s.id",
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
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE deliveries SET lease_until = %s"
                " WHERE lease_owner = %s AND state = 'queued' AND id = ANY(%s)",
                (lease_until.timestamp(), node, list(ids)),
            )
            return int(cur.rowcount)

    def release_leases(self, node: str) -> int:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL"
                " WHERE lease_owner = %s",
                (node,),
            )
            return int(cur.rowcount)

    def queue_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(DELIVERY_STATES, 0)
        for state, n in self._reader.execute(
            "SELECT state, COUNT(*) FROM deliveries GROUP BY state"
        ).fetchall():
            counts[str(state)] = int(n)
        return counts

    def drop_schema(self) -> None:
        """Drop this storage's schema and everything in it (tests only)."""
        if self.schema:
            with self._write() as conn:
                conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')

    def close(self) -> None:
        for conn in self._all:
            if not conn.closed:
                conn.close()

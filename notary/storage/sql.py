"""The SQL of both storage backends, written once (the stores of notary.storage).

Every statement here is written with ``?`` placeholders and run through a
:class:`Dialect`, which says only what differs between SQLite and PostgreSQL:
the placeholder style, the column types of the schema, how a timestamp is
stored, how a list of values is matched, bulk inserts, and the locks
(``BEGIN IMMEDIATE`` already excludes every other writer on SQLite; PostgreSQL
takes advisory and table locks). A backend (notary.storage.sqlite,
notary.storage.postgres) supplies the dialect, its connections and its write
transaction; :class:`SQLStorage` holds the queries and the logic.

The table layout is the one both backends have always created: databases
made by earlier versions open unchanged (:meth:`SQLStorage._migrate` adds the
columns they lack).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any, ClassVar, Protocol

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

#: The tables, with the types each dialect fills in (:attr:`Dialect.types`).
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx {bigint} PRIMARY KEY,
    account_id {bigint},
    sha256 TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event TEXT NOT NULL,
    entry {blob} NOT NULL,
    tst {blob}
);
CREATE INDEX IF NOT EXISTS entries_sha256 ON entries (sha256);
CREATE TABLE IF NOT EXISTS hashes (idx {bigint} PRIMARY KEY, hash {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    size {bigint} PRIMARY KEY,
    root {blob} NOT NULL,
    time {time} NOT NULL,
    note {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id {serial},
    token_hash {blob} NOT NULL UNIQUE,
    created {time} NOT NULL,
    revoked {bool} NOT NULL DEFAULT {false},
    receipt_emails {bool} NOT NULL DEFAULT {false}
);
CREATE TABLE IF NOT EXISTS addresses (
{address_pos}    address TEXT NOT NULL,
    account_id {bigint} NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (address, account_id)
);
CREATE TABLE IF NOT EXISTS spool (
    id {serial},
    sha256 TEXT NOT NULL,
    message_id TEXT NOT NULL,
    account_id {bigint},
    mail_from TEXT NOT NULL,
    received {real} NOT NULL,
    node TEXT NOT NULL,
    log_size {bigint} NOT NULL,
    kind TEXT NOT NULL,
    data {blob}
);
CREATE TABLE IF NOT EXISTS deliveries (
    id {serial},
    spool_id {bigint} NOT NULL REFERENCES spool(id),
    recipient TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'queued', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt {real},
    lease_owner TEXT,
    lease_until {real},
    warned {bool} NOT NULL DEFAULT {false},
    last_error TEXT,
    last_node TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt);
CREATE INDEX IF NOT EXISTS deliveries_spool ON deliveries (spool_id);
CREATE TABLE IF NOT EXISTS tracking_tokens (
    token_hash {blob} PRIMARY KEY,
    account_id {bigint} NOT NULL,
    sha256 TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    created {time} NOT NULL
);
"""

#: Columns that databases created by older versions lack: (table, column, type).
MIGRATIONS = (
    ("accounts", "receipt_emails", "{bool} NOT NULL DEFAULT {false}"),
    ("deliveries", "last_node", "TEXT"),
)

_ENTRY_COLS = "idx, account_id, sha256, message_id, event, entry, tst"
_CHECKPOINT_COLS = "size, root, time, note"
_ACTIVE_OWNER = (
    "SELECT a.id FROM addresses d JOIN accounts a ON a.id = d.account_id"
    " WHERE d.address = ? AND NOT a.revoked"
)
_DUE = "state = 'queued' AND next_attempt <= ? AND (lease_until IS NULL OR lease_until < ?)"


class Cursor(Protocol):
    """The DB-API cursor both drivers (sqlite3, psycopg) hand out."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, query: Any, params_seq: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


@lru_cache(maxsize=256)
def _pyformat(query: str) -> str:
    if "%" in query:
        raise ValueError("a shared statement must not contain '%'")
    return query.replace("?", "%s")


class Dialect:
    """What differs between the SQL of two databases; the base is SQLite's ``?`` style."""

    #: Placeholder style: ``qmark`` (``?``) or ``format`` (``%s``).
    paramstyle = "qmark"
    #: The words :data:`SCHEMA` and :data:`MIGRATIONS` are filled with.
    types: ClassVar[Mapping[str, str]] = {}
    #: Most values matched by one ``IN (...)`` list; None: one array parameter.
    max_in: int | None = 500
    #: The column that keeps an account's addresses in the order they were given.
    address_order = "rowid"
    #: Appended to the claim's SELECT so concurrent claimers skip each other's rows.
    skip_locked = ""
    #: How ``ALTER TABLE`` adds a column.
    add_column = "ADD COLUMN"
    #: The driver's base error and its unique-constraint error.
    error: type[Exception] = Exception
    unique_violation: type[Exception] = Exception

    def sql(self, query: str) -> str:
        """``query`` (written with ``?``) in this dialect's placeholder style."""
        return query if self.paramstyle == "qmark" else _pyformat(query)

    def schema(self) -> str:
        return SCHEMA.format(**self.types)

    def time_param(self, t: datetime) -> Any:
        """A timestamp as this database stores it (SQLite: ISO 8601 text, UTC)."""
        return t.astimezone(UTC).isoformat()

    def time_value(self, v: Any) -> datetime:
        """A stored timestamp back as an aware datetime."""
        return datetime.fromisoformat(str(v))

    def in_lists(self, column: str, values: Sequence[Any]) -> Iterator[tuple[str, list[Any]]]:
        """``column`` matched against ``values``, as (condition, parameters) per chunk."""
        if self.max_in is None:
            if values:
                yield f"{column} = ANY(?)", [list(values)]
            return
        for i in range(0, len(values), self.max_in):
            chunk = list(values[i : i + self.max_in])
            yield f"{column} IN ({','.join('?' * len(chunk))})", chunk

    def bulk_insert(
        self, cur: Cursor, table: str, columns: str, rows: Iterable[Sequence[Any]]
    ) -> None:
        """Insert many rows (inside the caller's transaction)."""
        marks = ",".join("?" * len(columns.split(",")))
        cur.executemany(
            self.sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})"),  # noqa: S608
            [tuple(r) for r in rows],
        )

    def columns(self, cur: Cursor, table: str) -> set[str]:
        """The names of ``table``'s columns."""
        return {str(r[1]) for r in cur.execute(f"PRAGMA table_info({table})").fetchall()}

    def lock_sequencer(self, cur: Cursor) -> None:
        """Make this write transaction the only sequencing one (SQLite: it already is)."""

    def lock_addresses(self, cur: Cursor) -> None:
        """Serialise address ownership checks (SQLite: the write transaction already does)."""


def _entry(row: Sequence[Any]) -> StoredEntry:
    idx, account_id, sha256, message_id, event, entry, tst = row
    return StoredEntry(
        index=int(idx),
        account_id=None if account_id is None else int(account_id),
        sha256=str(sha256),
        message_id=str(message_id),
        event=str(event),
        entry=bytes(entry),
        tst=None if tst is None else bytes(tst),
    )


def _delivery(r: Sequence[Any]) -> Delivery:
    return Delivery(
        int(r[0]),
        int(r[1]),
        str(r[2]),
        int(r[3]),
        bool(r[4]),
        str(r[5]),
        str(r[6]),
        None if r[7] is None else int(r[7]),
        str(r[8]),
        datetime.fromtimestamp(float(r[9]), UTC),
        str(r[10]),
    )


class Queries:
    """The statements that run both inside and outside a write transaction."""

    def __init__(self, dialect: Dialect) -> None:
        self.d = dialect

    def run(self, cur: Cursor, query: str, params: Sequence[Any] = ()) -> Any:
        return cur.execute(self.d.sql(query), tuple(params))

    def checkpoint(self, cur: Cursor, size: int | None) -> StoredCheckpoint | None:
        """The checkpoint at ``size``, or the latest one (``size`` None)."""
        if size is None:
            q = f"SELECT {_CHECKPOINT_COLS} FROM checkpoints ORDER BY size DESC LIMIT 1"  # noqa: S608
            row = self.run(cur, q).fetchone()
        else:
            q = f"SELECT {_CHECKPOINT_COLS} FROM checkpoints WHERE size = ?"  # noqa: S608
            row = self.run(cur, q, (size,)).fetchone()
        if row is None:
            return None
        return StoredCheckpoint(
            int(row[0]), bytes(row[1]), self.d.time_value(row[2]), bytes(row[3])
        )

    def read_hashes(self, cur: Cursor, indexes: Sequence[int]) -> list[bytes]:
        found: dict[int, bytes] = {}
        for cond, params in self.d.in_lists("idx", sorted(set(indexes))):
            for idx, h in self.run(cur, f"SELECT idx, hash FROM hashes WHERE {cond}", params):  # noqa: S608
                found[int(idx)] = bytes(h)
        try:
            return [found[i] for i in indexes]
        except KeyError as e:
            raise StorageError(f"stored hash {e.args[0]} is missing: the log is damaged") from None

    def account(self, cur: Cursor, account_id: int) -> Account:
        row = self.run(
            cur,
            "SELECT id, created, revoked, receipt_emails FROM accounts WHERE id = ?",
            (account_id,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no account {account_id}")
        addrs = self.run(
            cur,
            f"SELECT address FROM addresses WHERE account_id = ? ORDER BY {self.d.address_order}",  # noqa: S608
            (account_id,),
        ).fetchall()
        return Account(
            int(row[0]),
            tuple(str(a[0]) for a in addrs),
            self.d.time_value(row[1]),
            bool(row[2]),
            bool(row[3]),
        )

    def find_account(self, cur: Cursor, address_or_id: str) -> int:
        """The id of the account named by an id or one of its addresses; NotFoundError."""
        if address_or_id.isdigit():
            row = self.run(
                cur, "SELECT id FROM accounts WHERE id = ?", (int(address_or_id),)
            ).fetchone()
        else:
            row = self.run(
                cur,
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


class SQLTransaction:
    """A LogTransaction over a backend's write transaction that holds the sequencing lock."""

    def __init__(self, q: Queries, cur: Cursor) -> None:
        self.q, self.cur = q, cur

    def tree_size(self) -> int:
        row = self.q.run(self.cur, "SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()
        return int(row[0]) if row else 0

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return self.q.checkpoint(self.cur, None)

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return self.q.read_hashes(self.cur, indexes)

    def append(
        self,
        start: int,
        entries: Sequence[NewEntry],
        hashes: Sequence[bytes],
        hash_start: int,
        checkpoint: StoredCheckpoint,
    ) -> None:
        d = self.q.d
        d.bulk_insert(
            self.cur,
            "entries",
            _ENTRY_COLS,
            (
                (start + i, e.account_id, e.sha256, e.message_id, e.event, e.entry, e.tst)
                for i, e in enumerate(entries)
            ),
        )
        d.bulk_insert(
            self.cur, "hashes", "idx, hash", ((hash_start + i, h) for i, h in enumerate(hashes))
        )
        self.q.run(
            self.cur,
            f"INSERT INTO checkpoints ({_CHECKPOINT_COLS}) VALUES (?, ?, ?, ?)",  # noqa: S608
            (checkpoint.size, checkpoint.root_hash, d.time_param(checkpoint.time), checkpoint.note),
        )


class SQLStorage:
    """Every store of notary.storage over one SQL database (see each store's guarantee).

    A backend sets :attr:`dialect` and provides :meth:`_read` (a cursor that
    sees committed data) and :meth:`_write` (one durable write transaction,
    serialised with every other writer of this object, that turns the driver's
    unique-constraint error into a StorageError caused by it).
    """

    dialect: Dialect

    def _read(self) -> Cursor:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    @cached_property
    def _q(self) -> Queries:
        return Queries(self.dialect)

    def _migrate(self, cur: Cursor) -> None:
        """Add the columns that databases created by older versions lack (idempotent)."""
        d = self.dialect
        for table, column, decl in MIGRATIONS:
            if column not in d.columns(cur, table):
                cur.execute(
                    f"ALTER TABLE {table} {d.add_column} {column} " + decl.format(**d.types)
                )

    # --- log -----------------------------------------------------------------
    @contextmanager
    def sequence(self) -> Iterator[SQLTransaction]:
        with self._write() as cur:
            self.dialect.lock_sequencer(cur)
            yield SQLTransaction(self._q, cur)

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return self._q.read_hashes(self._read(), indexes)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return self._q.checkpoint(self._read(), None)

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        return self._q.checkpoint(self._read(), size)

    def entry(self, index: int) -> StoredEntry | None:
        row = self._q.run(
            self._read(),
            f"SELECT {_ENTRY_COLS} FROM entries WHERE idx = ?",  # noqa: S608
            (index,),
        ).fetchone()
        return None if row is None else _entry(row)

    def entries_for_message(self, sha256: str) -> list[StoredEntry]:
        rows = self._q.run(
            self._read(),
            f"SELECT {_ENTRY_COLS} FROM entries WHERE sha256 = ? ORDER BY idx",  # noqa: S608
            (sha256,),
        ).fetchall()
        return [_entry(r) for r in rows]

    def entries_for_account(self, sha256: str, account_id: int) -> list[StoredEntry]:
        # A ContentHandover is the account's only if the account made the first
        # SubmissionAcceptance of the acknowledged message (sha256 and Message-ID).
        rows = self._q.run(
            self._read(),
            f"SELECT {_ENTRY_COLS} FROM entries e WHERE e.sha256 = ? AND e.account_id = ?"  # noqa: S608
            " AND (e.event != 'ContentHandover' OR e.account_id = ("
            "SELECT a.account_id FROM entries a WHERE a.sha256 = e.sha256"
            " AND a.message_id = e.message_id AND a.event = 'SubmissionAcceptance'"
            " ORDER BY a.idx LIMIT 1)) ORDER BY e.idx",
            (sha256, account_id),
        ).fetchall()
        return [_entry(r) for r in rows]

    def iter_entries(self, start: int = 0) -> Iterator[StoredEntry]:
        cur = self._q.run(
            self._read(),
            f"SELECT {_ENTRY_COLS} FROM entries WHERE idx >= ? ORDER BY idx",  # noqa: S608
            (start,),
        )
        for row in cur:
            yield _entry(row)

    # --- accounts --------------------------------------------------------------
    def add_account(
        self,
        addresses: Sequence[str],
        token_hash: bytes,
        created: datetime,
        *,
        receipt_emails: bool = False,
    ) -> Account:
        q = self._q
        with self._write() as cur:
            self.dialect.lock_addresses(cur)
            for a in addresses:
                owner = q.run(cur, _ACTIVE_OWNER, (a,)).fetchone()
                if owner is not None:
                    raise ConflictError(
                        f"{a} already belongs to account {owner[0]}",
                        hint=f"revoke it first: certmail notary accounts revoke {a}",
                    )
            row = q.run(
                cur,
                "INSERT INTO accounts (token_hash, created, receipt_emails) VALUES (?, ?, ?)"
                " RETURNING id",
                (token_hash, self.dialect.time_param(created), receipt_emails),
            ).fetchone()
            account_id = int(row[0])
            cur.executemany(
                self.dialect.sql("INSERT INTO addresses (address, account_id) VALUES (?, ?)"),
                [(a, account_id) for a in addresses],
            )
            return q.account(cur, account_id)

    def accounts(self) -> list[Account]:
        cur = self._read()
        ids = [
            int(r[0]) for r in self._q.run(cur, "SELECT id FROM accounts ORDER BY id").fetchall()
        ]
        return [self._q.account(cur, i) for i in ids]

    def account_by_token_hash(self, token_hash: bytes) -> Account | None:
        cur = self._read()
        row = self._q.run(
            cur, "SELECT id FROM accounts WHERE token_hash = ? AND NOT revoked", (token_hash,)
        ).fetchone()
        return None if row is None else self._q.account(cur, int(row[0]))

    def account_by_address(self, address: str) -> Account | None:
        cur = self._read()
        row = self._q.run(cur, _ACTIVE_OWNER, (address,)).fetchone()
        return None if row is None else self._q.account(cur, int(row[0]))

    def account(self, account_id: int) -> Account | None:
        try:
            return self._q.account(self._read(), account_id)
        except NotFoundError:
            return None

    def set_receipt_emails(self, address_or_id: str, on: bool) -> Account:
        return self._update_account(address_or_id, "receipt_emails", on)

    def revoke_account(self, address_or_id: str) -> Account:
        return self._update_account(address_or_id, "revoked", True)

    def _update_account(self, address_or_id: str, column: str, value: bool) -> Account:
        q = self._q
        with self._write() as cur:
            account_id = q.find_account(cur, address_or_id)
            q.run(cur, f"UPDATE accounts SET {column} = ? WHERE id = ?", (value, account_id))  # noqa: S608
            return q.account(cur, account_id)

    # --- open tracking -----------------------------------------------------------
    def add_tracking_tokens(self, tokens: Sequence[TrackingToken]) -> None:
        try:
            with self._write() as cur:
                cur.executemany(
                    self.dialect.sql(
                        "INSERT INTO tracking_tokens (token_hash, account_id, sha256,"
                        " message_id, recipient, created) VALUES (?, ?, ?, ?, ?, ?)"
                    ),
                    [
                        (
                            t.token_hash,
                            t.account_id,
                            t.sha256,
                            t.message_id,
                            t.recipient,
                            self.dialect.time_param(t.created),
                        )
                        for t in tokens
                    ],
                )
        except StorageError as e:
            if isinstance(e.__cause__, self.dialect.unique_violation):
                raise ConflictError("a tracking token is already registered") from None
            raise

    def tracking_token(self, token_hash: bytes) -> TrackingToken | None:
        row = self._q.run(
            self._read(),
            "SELECT token_hash, account_id, sha256, message_id, recipient, created"
            " FROM tracking_tokens WHERE token_hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None:
            return None
        return TrackingToken(
            bytes(row[0]),
            int(row[1]),
            str(row[2]),
            str(row[3]),
            str(row[4]),
            self.dialect.time_value(row[5]),
        )

    # --- relay spool and delivery queue ---------------------------------------
    def queue_write(self, write: QueueWrite) -> list[int]:
        try:
            with self._write() as cur:
                return self._queue_write(cur, write)
        except self.dialect.error as e:
            raise StorageError(f"cannot write the relay queue: {e}") from e

    def _queue_write(self, cur: Cursor, write: QueueWrite) -> list[int]:
        q, sql = self._q, self.dialect.sql
        ids: list[int] = []
        for it in write.spool:
            row = q.run(
                cur,
                "INSERT INTO spool (sha256, message_id, account_id, mail_from, received,"
                " node, log_size, kind, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    it.sha256,
                    it.message_id,
                    it.account_id,
                    it.mail_from,
                    it.received.timestamp(),
                    it.node,
                    it.log_size,
                    it.kind,
                    it.data,
                ),
            ).fetchone()
            sid = int(row[0])
            ids.append(sid)
            state = "held" if it.held else "queued"
            cur.executemany(
                sql(
                    "INSERT INTO deliveries (spool_id, recipient, state, next_attempt)"
                    " VALUES (?, ?, ?, ?)"
                ),
                [(sid, r, state, it.received.timestamp()) for r in it.recipients],
            )
        for cond, params in self.dialect.in_lists("spool_id", write.release):
            q.run(
                cur,
                f"UPDATE deliveries SET state = 'queued' WHERE {cond} AND state = 'held'",  # noqa: S608
                params,
            )
        for sid in write.discard:
            row = q.run(
                cur,
                "SELECT COUNT(*) FROM deliveries WHERE spool_id = ? AND state != 'held'",
                (sid,),
            ).fetchone()
            if int(row[0]) == 0:
                q.run(cur, "DELETE FROM deliveries WHERE spool_id = ?", (sid,))
                q.run(cur, "DELETE FROM spool WHERE id = ?", (sid,))
        if write.updates:
            cur.executemany(
                sql(
                    "UPDATE deliveries SET state = ?, next_attempt = ?, last_error = ?,"
                    " warned = ?, attempts = attempts + 1, lease_owner = NULL,"
                    " lease_until = NULL, last_node = COALESCE(?, last_node) WHERE id = ?"
                ),
                [
                    (
                        u.state,
                        u.next_attempt.timestamp() if u.next_attempt else None,
                        u.error,
                        u.warned,
                        u.node,
                        u.delivery_id,
                    )
                    for u in write.updates
                ],
            )
            final = [u.delivery_id for u in write.updates if u.state != "queued"]
            for cond, params in self.dialect.in_lists("id", final):
                q.run(
                    cur,
                    "UPDATE spool SET data = NULL WHERE id IN (SELECT spool_id FROM"  # noqa: S608
                    f" deliveries WHERE {cond}) AND NOT EXISTS (SELECT 1 FROM"
                    " deliveries d WHERE d.spool_id = spool.id"
                    " AND d.state IN ('held', 'queued'))",
                    params,
                )
        return ids

    def claim_deliveries(
        self, node: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        q, t = self._q, now.timestamp()
        # A cheap read first: no write transaction (and no fsync) when nothing is due.
        if (
            q.run(
                self._read(),
                f"SELECT 1 FROM deliveries WHERE {_DUE} LIMIT 1",  # noqa: S608
                (t, t),
            ).fetchone()
            is None
        ):
            return []
        with self._write() as cur:
            # Each due row goes to one claimer: on PostgreSQL rows another node is
            # claiming right now are skipped, not waited for.
            ids = [
                int(r[0])
                for r in q.run(
                    cur,
                    f"SELECT id FROM deliveries WHERE {_DUE} ORDER BY next_attempt, id LIMIT ?"  # noqa: S608
                    + self.dialect.skip_locked,
                    (t, t, limit),
                ).fetchall()
            ]
            rows: list[Any] = []
            for cond, params in self.dialect.in_lists("id", ids):
                q.run(
                    cur,
                    f"UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE {cond}",  # noqa: S608
                    (node, lease_until.timestamp(), *params),
                )
            for cond, params in self.dialect.in_lists("d.id", ids):
                rows += q.run(
                    cur,
                    "SELECT d.id, d.spool_id, d.recipient, d.attempts, d.warned, s.sha256,"  # noqa: S608
                    " s.message_id, s.account_id, s.mail_from, s.received, s.kind,"
                    " d.next_attempt FROM deliveries d JOIN spool s ON s.id = d.spool_id"
                    f" WHERE {cond}",
                    params,
                ).fetchall()
        rows.sort(key=lambda r: (r[11], r[0]))
        return [_delivery(r) for r in rows]

    def spooled_data(self, spool_id: int) -> bytes | None:
        row = self._q.run(
            self._read(), "SELECT data FROM spool WHERE id = ?", (spool_id,)
        ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def held_messages(
        self, received_before: datetime, node: str | None = None
    ) -> list[HeldMessage]:
        rows = self._q.run(
            self._read(),
            "SELECT DISTINCT s.id, s.sha256, s.message_id, s.account_id, s.received,"
            " s.log_size, s.node FROM spool s JOIN deliveries d ON d.spool_id = s.id"
            " WHERE d.state = 'held' AND s.received < ?"
            " AND (CAST(? AS TEXT) IS NULL OR s.node = ?) ORDER BY s.id",
            (received_before.timestamp(), node, node),
        ).fetchall()
        return [
            HeldMessage(
                int(r[0]),
                str(r[1]),
                str(r[2]),
                None if r[3] is None else int(r[3]),
                datetime.fromtimestamp(float(r[4]), UTC),
                int(r[5]),
                str(r[6]),
            )
            for r in rows
        ]

    def renew_leases(self, node: str, ids: Sequence[int], lease_until: datetime) -> int:
        if not ids:
            return 0
        n = 0
        with self._write() as cur:
            for cond, params in self.dialect.in_lists("id", ids):
                n += int(
                    self._q.run(
                        cur,
                        "UPDATE deliveries SET lease_until = ?"  # noqa: S608
                        f" WHERE lease_owner = ? AND state = 'queued' AND {cond}",
                        (lease_until.timestamp(), node, *params),
                    ).rowcount
                )
        return n

    def release_leases(self, node: str) -> int:
        with self._write() as cur:
            return int(
                self._q.run(
                    cur,
                    "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL"
                    " WHERE lease_owner = ?",
                    (node,),
                ).rowcount
            )

    def queue_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(DELIVERY_STATES, 0)
        for state, n in self._q.run(
            self._read(), "SELECT state, COUNT(*) FROM deliveries GROUP BY state"
        ).fetchall():
            counts[str(state)] = int(n)
        return counts

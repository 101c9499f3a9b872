"""The dialect under the shared SQL: what differs between SQLite and PostgreSQL.

Every statement of notary.storage.sql is written once, with ``?`` placeholders,
and run through a :class:`Dialect`, which says only what differs: the
placeholder style, the column types of :data:`SCHEMA`, how a timestamp is
stored, how a list of values is matched, bulk inserts, and the locks
(``BEGIN IMMEDIATE`` already excludes every other writer on SQLite; PostgreSQL
takes advisory and table locks). :class:`SQLBase` is what a backend provides:
the dialect, a reading cursor and one durable write transaction.

Databases made by earlier versions keep opening: :meth:`SQLBase._migrate`
adds the columns they lack, and moves a version-1 log (``entries`` with
``sha256``/``message_id``/``event`` text columns and a text index) to the
current layout (:data:`SCHEMA_VERSION`, kept in ``schema_version``; a
version-2 log only has its number raised: its tokens stay whole): the
entry bytes alone, and ``message_index``, the first 8 bytes of the message's
SHA-256 as an integer beside the entry's index, in levels (see
notary.storage.sql.log). New tables, such as ``delivery_attempts``, are
created by :data:`SCHEMA` itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar, Protocol

#: The tables, with the types each dialect fills in (:attr:`Dialect.types`).
SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    idx {bigint} PRIMARY KEY,
    account_id {bigint},
    entry {blob} NOT NULL,
    tst {blob}
);
CREATE TABLE IF NOT EXISTS message_index (
    level INTEGER NOT NULL,
    msg_key {bigint} NOT NULL,
    idx {bigint} NOT NULL,
    PRIMARY KEY (level, msg_key, idx)
){without_rowid};
CREATE TABLE IF NOT EXISTS tst_templates (id {serial}, fixed {blob} NOT NULL UNIQUE);
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
CREATE INDEX IF NOT EXISTS spool_sha256 ON spool (sha256);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt);
CREATE INDEX IF NOT EXISTS deliveries_spool ON deliveries (spool_id);
CREATE TABLE IF NOT EXISTS delivery_attempts (
    id {serial},
    delivery_id {bigint} NOT NULL REFERENCES deliveries(id),
    recipient TEXT NOT NULL,
    node TEXT NOT NULL,
    started {real} NOT NULL,
    finished {real},
    outcome TEXT,
    reply TEXT,
    queue_id TEXT,
    event TEXT,
    evidence TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS delivery_attempts_delivery ON delivery_attempts (delivery_id);
CREATE UNIQUE INDEX IF NOT EXISTS delivery_attempts_final
    ON delivery_attempts (delivery_id) WHERE outcome = 'final';
CREATE TABLE IF NOT EXISTS tracking_tokens (
    token_hash {blob} PRIMARY KEY,
    account_id {bigint} NOT NULL,
    sha256 TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    created {time} NOT NULL
);
"""

#: The layout :data:`SCHEMA` creates; version 1 had the hex SHA-256, Message-ID
#: and event of each entry in text columns of their own (notary.storage.sql.log);
#: version 2 stored every RFC 3161 token whole, version 3 stores a token in the
#: TSA's template layout as its variable parts (notary.storage.sql.tokens). A
#: version-2 log needs no rewrite: its whole tokens read as they are.
SCHEMA_VERSION = 3

#: Columns that databases created by older versions lack: (table, column, type).
MIGRATIONS = (
    ("accounts", "receipt_emails", "{bool} NOT NULL DEFAULT {false}"),
    ("deliveries", "last_node", "TEXT"),
    ("deliveries", "last_reply", "TEXT"),
    ("deliveries", "last_attempt", "{real}"),
    ("delivery_attempts", "error", "TEXT"),
)


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
    #: Whether the message index is kept in levels (notary.storage.sql.log).
    leveled_index = True
    #: How ``ALTER TABLE`` adds a column.
    add_column = "ADD COLUMN"
    #: Whether a batch of the log may start from the tree its backend last committed,
    #: checked under the lock by :meth:`guard_tree` instead of read (notary.storage.sql.log).
    guards_tree = False
    #: The driver's base error and its unique-constraint error.
    error: type[Exception] = Exception
    unique_violation: type[Exception] = Exception

    def run(self, cur: Cursor, query: str, params: Sequence[Any] = ()) -> Any:
        """Execute ``query`` (written with ``?``) on ``cur``; return the cursor."""
        return cur.execute(self.sql(query), tuple(params))

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
        # executemany takes the rows as they come: no list of copies first.
        cur.executemany(
            self.sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})"),  # noqa: S608
            rows,
        )

    def columns(self, cur: Cursor, table: str) -> set[str]:
        """The names of ``table``'s columns."""
        return {str(r[1]) for r in cur.execute(f"PRAGMA table_info({table})").fetchall()}

    def lock_sequencer(self, cur: Cursor) -> None:
        """Make this write transaction the only sequencing one (SQLite: it already is)."""

    def lock_addresses(self, cur: Cursor) -> None:
        """Serialise address ownership checks (SQLite: the write transaction already does)."""

    def guard_tree(self, cur: Cursor, size: int, root: bytes, time: datetime) -> None:
        """Make the transaction fail (StaleTree) unless the log holds ``size`` entries and
        its latest checkpoint is at ``size`` with ``root`` and ``time`` (:attr:`guards_tree`)."""
        raise NotImplementedError


class SQLBase:
    """What a backend provides to the shared SQL.

    :attr:`dialect`; :meth:`_read`, a cursor that sees committed data; and
    :meth:`_write`, one durable write transaction, serialised with every other
    writer of this object, that turns the driver's unique-constraint error
    into a StorageError caused by it.
    """

    dialect: Dialect

    def _read(self) -> Cursor:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _sequence_write(self) -> AbstractContextManager[Cursor]:
        """The write transaction of one batch of the log: :meth:`_write`, which a backend
        may run with its statements sent together (PostgreSQL's pipeline mode)."""
        return self._write()

    def accounts_version(self) -> int | None:
        """A number that changes whenever an account changes, in any process (no query).

        None when it cannot be known right now: then cache no account.
        """
        return None

    def _accounts_changing(self, cur: Cursor) -> None:
        """Inside the transaction that changes an account (PostgreSQL: NOTIFY)."""

    def _accounts_changed(self) -> None:
        """After that transaction committed (SQLite: bump the version file)."""

    def _migrate(self, cur: Cursor) -> None:
        """Bring a database made by an older version to :data:`SCHEMA_VERSION` (idempotent)."""
        from notary.storage.sql.log import migrate_log_v1

        d = self.dialect
        for table, column, decl in MIGRATIONS:
            if column not in d.columns(cur, table):
                cur.execute(
                    f"ALTER TABLE {table} {d.add_column} {column} " + decl.format(**d.types)
                )
        row = d.run(cur, "SELECT MAX(version) FROM schema_version").fetchone()
        version = None if row is None or row[0] is None else int(row[0])
        if version is None:
            if "sha256" in d.columns(cur, "entries"):
                migrate_log_v1(d, cur)
            d.run(cur, "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif version < SCHEMA_VERSION:  # 2: tst_templates is new (SCHEMA made it)
            d.run(cur, "UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        elif version > SCHEMA_VERSION:
            from notary.errors import StorageError

            raise StorageError(
                f"the database has schema version {version}; this notary knows {SCHEMA_VERSION}",
                hint="upgrade certmail before opening this database",
            )

"""PostgreSQL backend (psycopg 3): for when one machine is not enough.

Several ``certmail notary serve`` processes may share one database. Sequencing
is serialised by a transaction-scoped advisory lock whose key is derived from
the schema, so exactly one process appends to a log at a time while notaries
in other schemas of the same database never wait for it; commits are durable
with PostgreSQL's default ``synchronous_commit=on``. ``schema`` (or
``?schema=`` in the URL) keeps the tables in their own namespace, which the
tests use for isolation. The statements are shared with SQLite
(notary.storage.sql); this module has the connections, transactions, locks
and the dialect.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from datetime import datetime
from itertools import chain, islice
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.pq import TransactionStatus

from notary.errors import StorageError
from notary.storage import StaleTree
from notary.storage.sql import Cursor, Dialect, SQLStorage
from notary.storage.versions import NotifyListener

#: The sequencer's pg_advisory_xact_lock key in the ``public`` schema:
#: "certmail" in ASCII, as a bigint (what every version has used there).
SEQUENCER_LOCK = 0x63657274_6D61696C

#: From this many rows on, a bulk insert is a binary COPY instead: it ends the
#: pipeline (COPY cannot be pipelined) but costs the client less CPU per row than
#: the arrays, which psycopg builds in Python (docs/notary.md, "PostgreSQL's
#: batch": ahead in every run from 512 rows on, not yet at 256). A batch of the
#: 64-client POST /v1/notarize path (~32 entries, ~64 hashes) stays pipelined.
COPY_ROWS = 512


def sequencer_lock_key(schema: str) -> int:
    """The advisory-lock key that serialises the sequencer of the log in ``schema``.

    ``public`` keeps :data:`SEQUENCER_LOCK`, so processes of earlier versions
    and this one still exclude each other there; any other schema gets its
    own key (the first 8 bytes of a SHA-256 of its name, as a signed bigint).
    """
    if schema == "public":
        return SEQUENCER_LOCK
    digest = hashlib.sha256(b"certmail sequencer\x00" + schema.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresDialect(Dialect):
    """PostgreSQL: ``%s`` placeholders, native types, arrays, advisory and table locks."""

    paramstyle = "format"
    types: ClassVar[Mapping[str, str]] = {
        "bigint": "BIGINT",
        "blob": "BYTEA",
        "time": "TIMESTAMPTZ",
        "serial": "BIGSERIAL PRIMARY KEY",
        "bool": "BOOLEAN",
        "false": "FALSE",
        "real": "DOUBLE PRECISION",
        "address_pos": "    pos BIGSERIAL,\n",
        "without_rowid": "",
    }
    max_in = None
    address_order = "pos"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    add_column = "ADD COLUMN IF NOT EXISTS"
    leveled_index = False  # one B-tree: see notary.storage.sql.log
    guards_tree = True  # one round trip a batch: see PostgresStorage._pipelined
    error = psycopg.Error
    unique_violation = psycopg.errors.UniqueViolation

    def __init__(self, lock_key: int) -> None:
        self.lock_key = lock_key
        self._types: dict[str, dict[str, str]] = {}
        #: The pipeline of the write transaction running now (under the storage's
        #: write lock), which :meth:`end_pipeline` ends; None outside one.
        self.pipeline: ExitStack | None = None

    def time_param(self, t: datetime) -> Any:
        return t

    def time_value(self, v: Any) -> datetime:
        assert isinstance(v, datetime)
        return v

    def bulk_insert(
        self, cur: Cursor, table: str, columns: str, rows: Iterable[Sequence[Any]]
    ) -> None:
        """Below :data:`COPY_ROWS` rows, one ``INSERT ... SELECT * FROM unnest(arrays)``,
        the arrays sent in binary: a single statement, which (unlike COPY) pipeline mode
        sends together with the rest of the transaction.
        From :data:`COPY_ROWS` on, a binary COPY after the pipeline is ended (what was
        queued is sent and its first error raised); the transaction goes on without it."""
        names = [c.strip() for c in columns.split(",")]
        types = self._column_types(cur, table)
        it = iter(rows)
        head = list(islice(it, COPY_ROWS))
        if len(head) >= COPY_ROWS:
            self.end_pipeline()
            assert isinstance(cur, psycopg.Cursor)
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([types[n] for n in names])
                for row in chain(head, it):
                    copy.write_row(row)
            return
        if head:
            arrays = ", ".join(f"%b::{types[n]}[]" for n in names)
            query = f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})"  # noqa: S608
            cur.execute(query, [list(col) for col in zip(*head, strict=True)])

    def end_pipeline(self) -> None:
        """End the pipeline of the running write transaction, if it has one."""
        if self.pipeline is not None:
            pipeline, self.pipeline = self.pipeline, None
            pipeline.close()

    def _column_types(self, cur: Cursor, table: str) -> dict[str, str]:
        """``table``'s column names and SQL types (read once: bulk tables never change)."""
        found = self._types.get(table)
        if found is None:
            rows = cur.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s",
                (table,),
            ).fetchall()
            found = self._types[table] = {str(n): str(t) for n, t in rows}
        return found

    def columns(self, cur: Cursor, table: str) -> set[str]:
        rows = cur.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        ).fetchall()
        return {str(r[0]) for r in rows}

    def lock_sequencer(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))

    def lock_addresses(self, cur: Cursor) -> None:
        cur.execute("LOCK TABLE addresses IN EXCLUSIVE MODE")

    def guard_tree(self, cur: Cursor, size: int, root: bytes, time: datetime) -> None:
        """:data:`GUARD_FUNCTION`: SQLSTATE :data:`STALE_TREE` (StaleTree, in
        :meth:`PostgresStorage._pipelined`) unless the latest checkpoint and the entries
        are still at ``size``, read when the statement runs (under the lock)."""
        cur.execute("SELECT certmail_guard_tree(%s, %s, %s)", (size, root, time))


#: The SQLSTATE :data:`GUARD_FUNCTION` raises, and nothing else does: its class is of the
#: range SQL leaves to implementations (first character I-Z) and not one PostgreSQL uses
#: (P0, XX), so no other error of the batch's pipeline (a division by zero, a constraint)
#: is taken for a stale tree.
STALE_TREE = "ZC001"

#: The guard of a batch made on the tree its writer last committed, raising
#: :data:`STALE_TREE` (created with the schema, on every start, under the sequencer's
#: lock). Its tables are the schema's it was created in (``SET search_path FROM
#: CURRENT``), whatever the caller's path.
GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION certmail_guard_tree(
    want_size BIGINT, want_root BYTEA, want_time TIMESTAMPTZ
) RETURNS VOID LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM (SELECT size, root, time FROM checkpoints ORDER BY size DESC LIMIT 1) AS c
        WHERE c.size = want_size AND c.root = want_root AND c.time = want_time
    ) OR (SELECT COALESCE(MAX(idx) + 1, 0) FROM entries) <> want_size THEN
        RAISE EXCEPTION USING ERRCODE = 'ZC001',
            MESSAGE = 'the log changed since this writer last committed to it';
    END IF;
END $$
"""


def _split_schema(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = [(k, v) for k, v in query if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


class PostgresStorage(SQLStorage):
    """The PostgreSQL backend. See notary.storage for each store's durability guarantee."""

    dialect: PostgresDialect

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url, url_schema = _split_schema(url)
        self.schema = schema or url_schema
        if self.schema is not None and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.schema):
            raise StorageError(f"invalid schema name {self.schema!r}")
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[psycopg.Connection[Any]] = []
        self._writer = self._connect(autocommit=True)  # see _pipelined
        with self._writer.transaction():
            row = self._writer.execute("SELECT current_schema()").fetchone()
            self.dialect = PostgresDialect(sequencer_lock_key(str(row[0] if row else "public")))
            with self._writer.cursor() as cur:
                # Serialise concurrent first-time schema creation by several processes.
                self.dialect.lock_sequencer(cur)
                cur.execute(self.dialect.schema())
                self._migrate(cur)
                cur.execute(GUARD_FUNCTION)
        self._channel = f"certmail_accounts_{self.dialect.lock_key & 0xFFFFFFFFFFFFFFFF:x}"
        self._listener: NotifyListener | None = None

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

    def _read(self) -> Cursor:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect(autocommit=True)
            self._local.conn = conn
        return conn.cursor()

    def _write(self) -> AbstractContextManager[Cursor]:
        return self._transaction()

    def _sequence_write(self) -> AbstractContextManager[Cursor]:
        return self._pipelined()

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        with self._write_lock:
            try:
                with self._writer.transaction(), self._writer.cursor() as cur:
                    yield cur
            except psycopg.errors.UniqueViolation as e:
                raise StorageError(f"conflicting write: {e}") from e

    @contextmanager
    def _pipelined(self) -> Iterator[Cursor]:
        """One batch of the log in pipeline mode: BEGIN, the lock, the check that the tree
        is still the one this storage last committed (PostgresDialect.guard_tree), the
        inserts and the COMMIT go in one round trip, which is waited for
        (synchronous_commit on), so the batch is durable when this returns. When the tree
        is not known (the first batch, or after another writer changed it) the lock and
        the read of the tree go first, in a round trip of their own.

        BEGIN and COMMIT are statements of the pipeline (the writer is in autocommit mode):
        psycopg's ``transaction()`` would wait for its BEGIN, a round trip more per batch.
        The pipeline's end (here, or earlier in PostgresDialect.end_pipeline before a COPY)
        raises the first error (a unique violation as itself, not as an aborted
        pipeline); whatever ends the block early rolls the transaction back. After an
        error of the pipeline the writer is a new connection: psycopg's record of the
        statements it prepared on the server may be wrong once a pipeline was aborted
        ("prepared statement ... does not exist" on the next batch)."""
        conn = self._writer
        with self._write_lock:
            aborted = False
            try:
                with ExitStack() as stack:
                    stack.enter_context(conn.pipeline())
                    self.dialect.pipeline = stack
                    with conn.cursor() as cur:
                        cur.execute("BEGIN")
                        yield cur
                        cur.execute("COMMIT")
            except psycopg.Error as e:
                aborted = True
                if isinstance(e, psycopg.errors.UniqueViolation):
                    raise StorageError(f"conflicting write: {e}") from e
                if e.sqlstate == STALE_TREE:  # raised by GUARD_FUNCTION alone
                    raise StaleTree("the log changed since this process last wrote to it") from e
                raise
            finally:
                self.dialect.pipeline = None
                if aborted:
                    self._renew_writer(conn)
                elif not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                    with suppress(psycopg.Error):  # a broken connection has nothing to undo
                        conn.execute("ROLLBACK")

    def _renew_writer(self, old: psycopg.Connection[Any]) -> None:
        """Replace the writer (closing it rolls back what it had begun)."""
        with suppress(psycopg.Error):
            old.close()
        self._all.remove(old)
        self._writer = self._connect(autocommit=True)

    def accounts_version(self) -> int | None:
        if self._listener is None:  # started on first use: CLI commands never need it
            with self._write_lock:
                if self._listener is None:
                    self._listener = NotifyListener(
                        lambda: self._connect(autocommit=True), self._channel
                    )
        return self._listener.read()

    def _accounts_changing(self, cur: Cursor) -> None:
        cur.execute(f"NOTIFY {self._channel}")  # delivered when the transaction commits

    @property
    def sequencer_lock_key(self) -> int:
        """The advisory-lock key of this log's sequencer (see :func:`sequencer_lock_key`)."""
        return self.dialect.lock_key

    def drop_schema(self) -> None:
        """Drop this storage's schema and everything in it (tests only)."""
        if self.schema:
            with self._write() as cur:
                cur.execute(f'DROP SCHEMA "{self.schema}" CASCADE')

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for conn in self._all:
            if not conn.closed:
                conn.close()

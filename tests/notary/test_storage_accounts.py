"""Account settings (receipt emails) on every backend, and the column's migration for
databases created before it existed."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.errors import NotFoundError
from notary.storage import Storage
from tests.fixtures.storage import T0
from tests.notary.storage_backends import BACKENDS, open_backend, require_pg

#: The accounts table as databases created before receipt emails have it.
OLD_SQLITE = """
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash BLOB NOT NULL UNIQUE,
    created TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE addresses (
    address TEXT NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (address, account_id)
);
INSERT INTO accounts (token_hash, created) VALUES (x'01', '2026-01-01T00:00:00.000000+00:00');
INSERT INTO addresses VALUES ('old@x.test', 1);
"""


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield from open_backend(request.param, tmp_path)


def test_receipt_emails_setting(storage: Storage) -> None:
    a = storage.add_account(["a@x.test"], b"h1" * 16, T0)
    b = storage.add_account(["b@x.test"], b"h2" * 16, T0, receipt_emails=True)
    assert not a.receipt_emails and b.receipt_emails
    assert storage.set_receipt_emails("a@x.test", True).receipt_emails
    assert not storage.set_receipt_emails(str(b.id), False).receipt_emails
    got_a, got_b = storage.account(a.id), storage.account(b.id)
    assert got_a is not None and got_a.receipt_emails
    assert got_b is not None and not got_b.receipt_emails
    assert storage.account(10_000) is None
    with pytest.raises(NotFoundError):
        storage.set_receipt_emails("nobody@x.test", True)


def test_sqlite_database_from_before_receipt_emails(tmp_path: Path) -> None:
    from notary.storage.sqlite import SQLiteStorage

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SQLITE)
    s = SQLiteStorage(path)
    try:
        (old,) = s.accounts()
        assert old.addresses == ("old@x.test",) and not old.receipt_emails
        assert s.set_receipt_emails("old@x.test", True).receipt_emails
    finally:
        s.close()
    SQLiteStorage(path).close()  # opening again: the migration is idempotent


@pytest.mark.postgres
def test_postgres_database_from_before_receipt_emails() -> None:
    dsn = require_pg()
    import psycopg

    from notary.storage.postgres import PostgresStorage

    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute(
            "CREATE TABLE accounts (id BIGSERIAL PRIMARY KEY, token_hash BYTEA NOT NULL"
            " UNIQUE, created TIMESTAMPTZ NOT NULL,"
            " revoked BOOLEAN NOT NULL DEFAULT FALSE)"
        )
        conn.execute("INSERT INTO accounts (token_hash, created) VALUES ('\\x01', now())")
    s = PostgresStorage(dsn, schema=schema)
    try:
        old = s.account(1)
        assert old is not None and not old.receipt_emails
        assert s.set_receipt_emails("1", True).receipt_emails
        PostgresStorage(dsn, schema=schema).close()  # idempotent
    finally:
        s.drop_schema()
        s.close()

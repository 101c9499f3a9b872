"""Open each storage backend for the shared test suite (SQLite; PostgreSQL with a DSN)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from notary.storage import Storage

PG_DSN = os.environ.get("CERTMAIL_TEST_POSTGRES_DSN")
NO_PG = "CERTMAIL_TEST_POSTGRES_DSN is not set: no PostgreSQL server to test against"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def pg_url(schema: str) -> str:
    assert PG_DSN
    sep = "&" if "?" in PG_DSN else "?"
    return f"{PG_DSN}{sep}schema={schema}"


def open_backend(kind: str, tmp_path: Path) -> Iterator[Storage]:
    if kind == "sqlite":
        from notary.storage.sqlite import SQLiteStorage

        s = SQLiteStorage(tmp_path / "notary.db")
        yield s
        s.close()
        return
    if not PG_DSN:
        pytest.skip(NO_PG)
    from notary.storage.postgres import PostgresStorage

    p = PostgresStorage(PG_DSN, schema="t_" + uuid.uuid4().hex[:16])
    yield p
    p.drop_schema()
    p.close()

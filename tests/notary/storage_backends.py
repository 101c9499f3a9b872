"""Open each storage backend for the shared test suite (SQLite; PostgreSQL with a DSN).

Without ``CERTMAIL_TEST_POSTGRES_DSN`` the PostgreSQL tests are skipped on a
developer's machine, but fail in CI (``CI=true``): CI must run them
(.ci/run starts the server and sets the DSN).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from notary.storage import Storage

PG_DSN = os.environ.get("CERTMAIL_TEST_POSTGRES_DSN")
NO_PG = "CERTMAIL_TEST_POSTGRES_DSN is not set: no PostgreSQL server to test against"
IN_CI = os.environ.get("CI", "").lower() in {"true", "1", "yes"}


def require_pg() -> str:
    """The test DSN; skip without one, except in CI, where that is a failure."""
    if PG_DSN:
        return PG_DSN
    if IN_CI:
        pytest.fail(f"{NO_PG} (CI must run the PostgreSQL tests)", pytrace=False)
    pytest.skip(NO_PG)


@pytest.fixture
def pg_dsn() -> str:
    """The PostgreSQL test DSN (see :func:`require_pg`)."""
    return require_pg()


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def pg_url(schema: str) -> str:
    dsn = require_pg()
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}schema={schema}"


def open_backend(kind: str, tmp_path: Path) -> Iterator[Storage]:
    if kind == "sqlite":
        from notary.storage.sqlite import SQLiteStorage

        s = SQLiteStorage(tmp_path / "notary.db")
        yield s
        s.close()
        return
    dsn = require_pg()
    from notary.storage.postgres import PostgresStorage

    p = PostgresStorage(dsn, schema="t_" + uuid.uuid4().hex[:16])
    yield p
    p.drop_schema()
    p.close()

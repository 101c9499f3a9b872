"""Open each storage backend for the shared test suite (SQLite; PostgreSQL with a DSN).

Without ``CERTMAIL_TEST_POSTGRES_DSN`` the PostgreSQL tests are skipped on a
developer's machine, but fail in CI (``CI=true``): CI must run them
(.ci/run starts the server and sets the DSN).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from notary.sequencer import Submission
from notary.storage import Storage

if TYPE_CHECKING:
    from notary.storage.postgres import PostgresStorage

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


def pg_writers(prefix: str) -> Iterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two storages (two writers, as two machines would be) on one fresh PostgreSQL log,
    its schema ``prefix`` + a random suffix, dropped afterwards (a fixture's body)."""
    from notary.storage.postgres import PostgresStorage

    a = PostgresStorage(pg_url(prefix + uuid.uuid4().hex[:10]))
    b = PostgresStorage(a.url, schema=a.schema)
    yield a, b
    b.close()
    a.drop_schema()
    a.close()


def submissions(n: int, start: int = 0, tag: bytes = b"s") -> list[Submission]:
    """``n`` acceptance submissions of distinct hashes, numbered from ``start``."""
    return [
        Submission(
            "SubmissionAcceptance", hashlib.sha256(tag + b"%d" % i).hexdigest(), f"<{i}@s>", 1
        )
        for i in range(start, start + n)
    ]

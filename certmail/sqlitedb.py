"""The client's SQLite files opened one way: WAL, ``synchronous=FULL``, schema applied.

With ``synchronous=FULL`` in WAL mode a committed transaction survives a power
loss, so a store built on :class:`SqliteStore` is durable once the method that
commits returns. The ledger (:mod:`certmail.ledger`), the campaign tables
(:mod:`certmail.campaign.store`), the peers database (:mod:`certmail.locate.store`)
and the MDN table (:mod:`certmail.mdn_in`) all open their files here.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Self

__all__ = ["SqliteStore", "connect", "session"]


def connect(
    path: Path, schema: str, *, timeout: float, foreign_keys: bool = False
) -> sqlite3.Connection:
    """``path`` in autocommit mode (transactions are explicit), rows as :class:`sqlite3.Row`,
    WAL and ``synchronous=FULL``, and ``schema`` (idempotent DDL) applied."""
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if foreign_keys:
        db.execute("PRAGMA foreign_keys=ON")
    db.executescript(schema)
    return db


@contextlib.contextmanager
def session(path: Path, schema: str, *, timeout: float = 10) -> Iterator[sqlite3.Connection]:
    """``path`` opened (WAL, ``synchronous=FULL``, ``schema``) for one transaction,
    committed when the block ends without an exception, then closed."""
    conn = sqlite3.connect(path, timeout=timeout)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(schema)
        with conn:
            yield conn
    finally:
        conn.close()


class SqliteStore:
    """A store that keeps one connection to ``path`` (see :func:`connect`); its methods
    change state inside :meth:`_tx`, which commits before it returns."""

    def __init__(
        self, path: Path, schema: str, *, timeout: float, foreign_keys: bool = False
    ) -> None:
        self._db = connect(path, schema, timeout=timeout, foreign_keys=foreign_keys)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed, or rolled back on any exception."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

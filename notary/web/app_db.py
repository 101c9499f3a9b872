"""The sender's view's own SQLite file, ``web.db`` in the notary directory (docs/web.md).

Sessions, sign-in links and the message index of ``GET /app`` live here, not in
the log's database: they are the web page's state, not evidence. WAL with
``synchronous=FULL`` (a write is on disk when it returns), created 0600; every
``serve`` worker process opens the same file, so a session made by one worker
is seen by the others and dies for all of them on sign-out. Writers serialise
with ``BEGIN IMMEDIATE`` across processes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from notary.errors import StorageError

__all__ = ["WEB_DB", "WebDB"]

WEB_DB = "web.db"


class WebDB:
    """One SQLite file: per-thread readers, one serialised writer."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = str(path)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as e:
            raise StorageError(f"cannot create {self.path}: {e}") from e
        self._local = threading.local()
        self._lock = threading.Lock()
        self._writer = self._connect()
        with self._lock:
            self._writer.executescript(schema)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as e:
            raise StorageError(f"cannot open {self.path}: {e}") from e
        return conn

    def read(self) -> sqlite3.Cursor:
        """A cursor of this thread's reading connection (sees committed data)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn.cursor()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Cursor]:
        """One durable write transaction, exclusive across threads and processes."""
        with self._lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn.cursor()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

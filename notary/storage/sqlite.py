"""SQLite backend: the embedded default, one file in the notary's directory.

WAL journal with ``synchronous=FULL``: a commit is on disk (fsynced) when it
returns. Writers serialise with ``BEGIN IMMEDIATE``, which also excludes other
processes (so it is also the sequencing lock); readers use their own
per-thread connections and see committed data. The statements are shared
with PostgreSQL (notary.storage.sql); this module has the connections, the
transactions and the dialect.

The database holds every account's token hash and every private entry: a new
file is created 0600 (its ``-wal`` and ``-shm`` files take the same mode) in
a directory created 0700. Beside it, ``<file>-accounts`` holds the accounts
version every process's token cache checks (notary.storage.versions).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from notary.errors import StorageError
from notary.storage.sql import Cursor, Dialect, SQLStorage
from notary.storage.versions import VersionFile

#: The mode of a database file this backend creates, and of its directory.
FILE_MODE = 0o600
DIR_MODE = 0o700


class SQLiteDialect(Dialect):
    """SQLite: ``?`` placeholders, ISO 8601 text timestamps, 0/1 booleans, rowid order."""

    types: ClassVar[Mapping[str, str]] = {
        "bigint": "INTEGER",
        "blob": "BLOB",
        "time": "TEXT",
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "bool": "INTEGER",
        "false": "0",
        "real": "REAL",
        "address_pos": "",
        "without_rowid": " WITHOUT ROWID",
    }
    error = sqlite3.Error
    unique_violation = sqlite3.IntegrityError


def _create_private(path: Path) -> None:
    """Create the database file 0600 (and its directory 0700) unless it exists."""
    if not path.parent.exists():
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


class SQLiteStorage(SQLStorage):
    """The SQLite backend. See notary.storage for each store's durability guarantee."""

    dialect = SQLiteDialect()

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        try:
            _create_private(Path(self.path))
        except OSError as e:
            raise StorageError(f"cannot create the database {self.path}: {e}") from e
        self._writer = self._connect()
        try:
            self._version = VersionFile(self.path + "-accounts", FILE_MODE)
        except OSError as e:
            raise StorageError(f"cannot open {self.path}-accounts: {e}") from e
        with self._write_lock:
            self._writer.executescript(self.dialect.schema())
        with self._write() as cur:
            self._migrate(cur)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as e:
            raise StorageError(f"cannot open the database {self.path}: {e}") from e
        return conn

    def _read(self) -> Cursor:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn.cursor()

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn.cursor()
            except sqlite3.IntegrityError as e:
                conn.execute("ROLLBACK")
                raise StorageError(f"conflicting write: {e}") from e
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def accounts_version(self) -> int | None:
        return self._version.read()

    def _accounts_changed(self) -> None:
        self._version.bump()

    def durability(self) -> tuple[str, int]:
        """This thread's connection's ``journal_mode`` and ``synchronous`` (2 = FULL)."""
        cur = self._read()
        mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
        sync = cur.execute("PRAGMA synchronous").fetchone()[0]
        return str(mode), int(sync)

    def close(self) -> None:
        self._writer.close()
        self._version.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

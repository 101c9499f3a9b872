"""The accounts version: a number that changes whenever an account changes.

Caches of token → account (:class:`notary.account_cache.AccountCache`) keep an
entry only while this number is the one they saw before reading the account,
so a revocation is seen by the next request of every process. It is read on
every authenticated request, so it must cost no database round trip:

- SQLite (every process is on one machine): :class:`VersionFile`, eight bytes
  in a file next to the database, mapped into memory; a writer adds one under
  an exclusive ``flock`` *after* its transaction commits, so a reader that saw
  the old number read the account before the change or sees the new number.
- PostgreSQL (processes on several machines): :class:`NotifyListener`, a
  thread that ``LISTEN``\\ s on the log's channel with its own connection; a
  writer sends ``NOTIFY`` inside its transaction, which PostgreSQL delivers at
  commit. Each notification moves the local number on. While the listener is
  not connected the version is None: callers cache nothing and ask the
  database every time.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("certmail.notary.storage")

_SIZE = 8


class VersionFile:
    """A shared 64-bit counter in a small file mapped into memory (0600)."""

    def __init__(self, path: str | Path, mode: int = 0o600) -> None:
        self.path = str(path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, mode)
        try:
            if os.fstat(fd).st_size < _SIZE:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    if os.fstat(fd).st_size < _SIZE:
                        os.ftruncate(fd, _SIZE)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            self._mm = mmap.mmap(fd, _SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def read(self) -> int:
        return int.from_bytes(self._mm[:_SIZE], "little")

    def bump(self) -> None:
        """Add one (atomically with every other process's bump)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._mm[:_SIZE] = ((self.read() + 1) % (1 << 64)).to_bytes(_SIZE, "little")
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if not self._mm.closed:
            self._mm.close()
            os.close(self._fd)


class NotifyListener:
    """A local counter moved on by PostgreSQL notifications on ``channel``.

    ``connect`` opens a fresh autocommit connection (in the store's schema).
    """

    def __init__(self, connect: Callable[[], Any], channel: str) -> None:
        self.connect, self.channel = connect, channel
        self._version = 0
        self._connected = False
        self._stop = threading.Event()
        self._conn: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="accounts-listener", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def read(self) -> int | None:
        return self._version if self._connected else None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._conn = self.connect()
                self._conn.execute(f"LISTEN {self.channel}")
                self._version += 1  # whatever changed while not listening
                self._connected = True
                self._ready.set()
                while not self._stop.is_set():
                    for _ in self._conn.notifies(timeout=1.0):
                        self._version += 1
            except Exception as e:  # the connection went away: cache nothing until back
                self._connected = False
                self._ready.set()
                if not self._stop.is_set():
                    log.warning("accounts listener lost its connection: %s", e)
                    self._stop.wait(1.0)
            finally:
                self._connected = False
                conn, self._conn = self._conn, None
                if conn is not None and not conn.closed:
                    conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

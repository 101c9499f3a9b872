"""Rate limits shared by every worker process of one notary (``serve --workers N``).

:class:`SharedRateLimiter` has the interface of :class:`notary.tracking.RateLimiter`
(at most ``limit`` events per key in any ``window`` seconds) but keeps its
events in a small SQLite file in the notary's directory, so N workers hold
one allowance between them, not N. The file is scratch state, not evidence:
``synchronous=OFF`` (nothing is fsynced; after a power cut the worst case is
a window that starts afresh), created 0600. Each check is one short write
transaction on a local file (tens of microseconds), cheaper than anything it
protects (the body read, the log lookup, gpg). Notaries on several machines
each hold their own allowance.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["SharedRateLimiter"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (scope TEXT NOT NULL, key BLOB NOT NULL, t REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_key ON events (scope, key, t);
"""
#: Forget expired events of every key once in so many checks.
_SWEEP_EVERY = 1024


class SharedRateLimiter:
    """At most ``limit`` events per key in any ``window`` seconds, across processes.

    ``scope`` names the limit in the file (several limits share one file);
    ``clock`` is wall time (shared by the processes), injectable for tests.
    """

    def __init__(
        self,
        path: str | Path,
        scope: str,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path, self.scope = str(path), scope
        self.limit, self.window, self.clock = limit, window, clock
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=5.0
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._checks = 0

    def allow(self, key: bytes) -> bool:
        """Count one event for ``key`` if it is within its allowance; say whether it was."""
        now = self.clock()
        c = self._conn
        with self._lock:
            c.execute("BEGIN IMMEDIATE")
            try:
                self._checks += 1
                if self._checks % _SWEEP_EVERY == 0:
                    c.execute(
                        "DELETE FROM events WHERE scope = ? AND t <= ?",
                        (self.scope, now - self.window),
                    )
                (n,) = c.execute(
                    "SELECT COUNT(*) FROM events WHERE scope = ? AND key = ? AND t > ?",
                    (self.scope, key, now - self.window),
                ).fetchone()
                allowed = int(n) < self.limit
                if allowed:
                    c.execute(
                        "INSERT INTO events (scope, key, t) VALUES (?, ?, ?)",
                        (self.scope, key, now),
                    )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return allowed

    def close(self) -> None:
        self._conn.close()

"""The ``released`` marks of sealed and pickup messages: written after the answer, in batches.

A mark is a hint (the log's ContentHandover entry is what says a handover
happened, and a retry finds it there): a release answers first, then its mark
is kept here in memory (:meth:`ReleaseMarks.add`; :meth:`pending` and
:meth:`released_at` show it at once) and written with every other mark since
the last round in one transaction, in a thread, off the event loop, without a
wait for the disk (``synchronous=OFF``: the next durable write or WAL
checkpoint carries it). A crash may lose a mark; the next open of that message
finds the entry and sets it again.

Two marks per release: ``seals.state = 'released'`` and, for a pickup,
``pickups.released`` (the time K_n was first released; the content download
waits for it, notary/pickup.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

__all__ = ["ReleaseMarks"]


class ReleaseMarks:
    """Released marks not written yet, and their writer (one connection of its own)."""

    def __init__(self, db: Path) -> None:
        self._db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA synchronous=OFF")
        self._lock = threading.Lock()  # this connection's; never held by the event loop
        self._todo: dict[str, str | None] = {}  # sha256 -> pickup release time (None: sealed)
        self._task: asyncio.Task[None] | None = None

    def add(self, sha256: str, released: str | None = None) -> None:
        """Mark ``sha256`` released (a pickup: first released at ``released``): at once in
        :meth:`pending`, in ``seals.db`` by the next round (on the event loop only)."""
        if self._todo.get(sha256) is None:
            self._todo[sha256] = released
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    def pending(self, sha256: str) -> bool:
        return sha256 in self._todo

    def released_at(self, sha256: str) -> str | None:
        """A pickup's release time, while its mark is not written yet."""
        return self._todo.get(sha256)

    async def _flush(self) -> None:
        while self._todo:  # changed on the event loop only
            todo = dict(self._todo)
            await asyncio.to_thread(self.write, todo)
            for sha256 in todo:
                if self._todo.get(sha256) == todo[sha256]:
                    del self._todo[sha256]

    def write(self, todo: dict[str, str | None]) -> None:
        """Write ``todo``'s marks in one transaction (any thread)."""
        pickups = [(at, h) for h, at in todo.items() if at is not None]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "UPDATE seals SET state = 'released' WHERE sha256 = ? AND state = 'sealed'",
                    [(h,) for h in todo],
                )
                if pickups:  # only a notary with pickups has them (and the table)
                    self._db.executemany(
                        "UPDATE pickups SET released = ? WHERE sha256 = ? AND released IS NULL",
                        pickups,
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def set_state(self, sha256: str, state: str) -> None:
        """Set a seal's state now, not durably (a hint like the marks)."""
        with self._lock:
            self._db.execute("UPDATE seals SET state = ? WHERE sha256 = ?", (state, sha256))

    def close(self) -> None:
        """Write what is left (the shutdown), then close."""
        self.write(dict(self._todo))
        self._todo.clear()
        self._db.close()

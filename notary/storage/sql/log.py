"""The log's SQL (notary.storage.LogStore): entries, tree hashes, checkpoints."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from notary.errors import StorageError
from notary.storage import NewEntry, StoredCheckpoint, StoredEntry
from notary.storage.sql.dialect import Cursor, Dialect, SQLBase

_ENTRY_COLS = "idx, account_id, sha256, message_id, event, entry, tst"
_CHECKPOINT_COLS = "size, root, time, note"


def _entry(row: Sequence[Any]) -> StoredEntry:
    idx, account_id, sha256, message_id, event, entry, tst = row
    return StoredEntry(
        index=int(idx),
        account_id=None if account_id is None else int(account_id),
        sha256=str(sha256),
        message_id=str(message_id),
        event=str(event),
        entry=bytes(entry),
        tst=None if tst is None else bytes(tst),
    )


def checkpoint(d: Dialect, cur: Cursor, size: int | None) -> StoredCheckpoint | None:
    """The checkpoint at ``size``, or the latest one (``size`` None)."""
    if size is None:
        q = f"SELECT {_CHECKPOINT_COLS} FROM checkpoints ORDER BY size DESC LIMIT 1"  # noqa: S608
        row = d.run(cur, q).fetchone()
    else:
        q = f"SELECT {_CHECKPOINT_COLS} FROM checkpoints WHERE size = ?"  # noqa: S608
        row = d.run(cur, q, (size,)).fetchone()
    if row is None:
        return None
    return StoredCheckpoint(int(row[0]), bytes(row[1]), d.time_value(row[2]), bytes(row[3]))


def read_hashes(d: Dialect, cur: Cursor, indexes: Sequence[int]) -> list[bytes]:
    found: dict[int, bytes] = {}
    for cond, params in d.in_lists("idx", sorted(set(indexes))):
        for idx, h in d.run(cur, f"SELECT idx, hash FROM hashes WHERE {cond}", params):  # noqa: S608
            found[int(idx)] = bytes(h)
    try:
        return [found[i] for i in indexes]
    except KeyError as e:
        raise StorageError(f"stored hash {e.args[0]} is missing: the log is damaged") from None


class SQLTransaction:
    """A LogTransaction over a backend's write transaction that holds the sequencing lock."""

    def __init__(self, d: Dialect, cur: Cursor) -> None:
        self.d, self.cur = d, cur

    def tree_size(self) -> int:
        row = self.d.run(self.cur, "SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()
        return int(row[0]) if row else 0

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return checkpoint(self.d, self.cur, None)

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return read_hashes(self.d, self.cur, indexes)

    def append(
        self,
        start: int,
        entries: Sequence[NewEntry],
        hashes: Sequence[bytes],
        hash_start: int,
        checkpoint: StoredCheckpoint,
    ) -> None:
        d = self.d
        d.bulk_insert(
            self.cur,
            "entries",
            _ENTRY_COLS,
            (
                (start + i, e.account_id, e.sha256, e.message_id, e.event, e.entry, e.tst)
                for i, e in enumerate(entries)
            ),
        )
        d.bulk_insert(
            self.cur, "hashes", "idx, hash", ((hash_start + i, h) for i, h in enumerate(hashes))
        )
        self.d.run(
            self.cur,
            f"INSERT INTO checkpoints ({_CHECKPOINT_COLS}) VALUES (?, ?, ?, ?)",  # noqa: S608
            (checkpoint.size, checkpoint.root_hash, d.time_param(checkpoint.time), checkpoint.note),
        )


class LogSQL(SQLBase):
    """The LogStore methods of a backend."""

    @contextmanager
    def sequence(self) -> Iterator[SQLTransaction]:
        with self._write() as cur:
            self.dialect.lock_sequencer(cur)
            yield SQLTransaction(self.dialect, cur)

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return read_hashes(self.dialect, self._read(), indexes)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return checkpoint(self.dialect, self._read(), None)

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        return checkpoint(self.dialect, self._read(), size)

    def entry(self, index: int) -> StoredEntry | None:
        row = self.dialect.run(
            self._read(),
            f"SELECT {_ENTRY_COLS} FROM entries WHERE idx = ?",  # noqa: S608
            (index,),
        ).fetchone()
        return None if row is None else _entry(row)

    def entries_for_message(self, sha256: str) -> list[StoredEntry]:
        rows = self.dialect.run(
            self._read(),
            f"SELECT {_ENTRY_COLS} FROM entries WHERE sha256 = ? ORDER BY idx",  # noqa: S608
            (sha256,),
        ).fetchall()
        return [_entry(r) for r in rows]

    def entries_for_account(self, sha256: str, account_id: int) -> list[StoredEntry]:
        # A ContentHandover is the account's only if the account made the first
        # SubmissionAcceptance of the acknowledged message (sha256 and Message-ID).
        rows = self.dialect.run(
            self._read(),
            f"SELECT {_ENTRY_COLS} FROM entries e WHERE e.sha256 = ? AND e.account_id = ?"  # noqa: S608
            " AND (e.event != 'ContentHandover' OR e.account_id = ("
            "SELECT a.account_id FROM entries a WHERE a.sha256 = e.sha256"
            " AND a.message_id = e.message_id AND a.event = 'SubmissionAcceptance'"
            " ORDER BY a.idx LIMIT 1)) ORDER BY e.idx",
            (sha256, account_id),
        ).fetchall()
        return [_entry(r) for r in rows]

    def iter_entries(self, start: int = 0) -> Iterator[StoredEntry]:
        cur = self.dialect.run(
            self._read(),
            f"SELECT {_ENTRY_COLS} FROM entries WHERE idx >= ? ORDER BY idx",  # noqa: S608
            (start,),
        )
        for row in cur:
            yield _entry(row)

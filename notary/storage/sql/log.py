"""The log's SQL (notary.storage.LogStore): entries, tree hashes, checkpoints.

An entry is stored as its exact bytes (with its account and RFC 3161 token);
the message's SHA-256, Message-ID and event are read back from those bytes,
never kept twice. ``message_index`` finds a message's entries by the first 8
bytes of its SHA-256 as a signed 64-bit integer (:func:`message_key`); two
messages may share a key, so readers compare the full SHA-256 of the entry.

Random keys in one B-tree would cost a page write per entry once the index
outgrows a batch (the version-1 text index: 12.3 KB written per entry at 10^7
entries). So the index is kept in levels, like an LSM tree, all in one table
ordered by (level, key): a batch goes into level 0, which stays small
(:data:`LEVEL0_ROWS`; a larger batch into the first level that can hold it);
whenever the log passes a multiple of level L's capacity (``LEVEL0_ROWS *
FANOUT**L``) level L is moved, in key order, into level L + 1, so the levels
follow from the tree size and no sizes are stored. Each key is written once
per level (a few dozen bytes each time, about log8 of the log's size times),
and a lookup probes every level (:data:`MAX_LEVELS` seeks of one index).

PostgreSQL keeps one level (:attr:`Dialect.leveled_index` is off there): moving
a level is a logged insert and delete of every row, which costs it more than
random inserts into its B-tree, whose pages it writes to the WAL in full only
once per checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from notary.errors import StorageError
from notary.storage import NewEntry, StaleTree, StoredCheckpoint, StoredEntry
from notary.storage.sql.dialect import Cursor, Dialect, SQLBase
from notary.storage.sql.tokens import TokenColumn

_ENTRY_COLS = "idx, account_id, entry, tst"
LEVEL0_ROWS = 8192
FANOUT = 8
MAX_LEVELS = 16
_LEVELS = ",".join(str(i) for i in range(MAX_LEVELS))
_CHECKPOINT_COLS = "size, root, time, note"
#: Batches that read the tree under the lock after one found it changed (StaleTree).
UNGUARDED_AFTER_STALE = 64

#: A log's size and its latest checkpoint.
TreeState = tuple[int, StoredCheckpoint | None]


def message_key(sha256_hex: str) -> int:
    """The ``message_index`` key of a message: its SHA-256's first 8 bytes, signed."""
    return int.from_bytes(bytes.fromhex(sha256_hex[:16]), "big", signed=True)


class _Rows:
    """Turns ``entries`` rows into StoredEntry (the token rebuilt: notary.storage.sql.tokens)."""

    def __init__(self, tokens: TokenColumn, cursor: Callable[[], Cursor]) -> None:
        self.tokens, self.cursor = tokens, cursor

    def __call__(self, row: Sequence[Any]) -> StoredEntry:
        idx, account_id, entry, tst = row
        data = bytes(entry)
        st = json.loads(data)  # the statement (notary.evidence): event, message.sha256, message.id
        sha256 = str(st["message"]["sha256"])
        return StoredEntry(
            index=int(idx),
            account_id=None if account_id is None else int(account_id),
            sha256=sha256,
            message_id=str(st["message"]["id"]),
            event=str(st["event"]),
            entry=data,
            tst=None if tst is None else self.tokens.decode(bytes(tst), sha256, self.cursor),
        )


def _for_message(d: Dialect, cur: Cursor, sha256: str, rows_to: _Rows) -> list[StoredEntry]:
    rows = d.run(
        cur,
        f"SELECT {', '.join('e.' + c for c in _ENTRY_COLS.split(', '))}"  # noqa: S608
        " FROM message_index m JOIN entries e ON e.idx = m.idx"
        f" WHERE m.level IN ({_LEVELS}) AND m.msg_key = ? ORDER BY m.idx",
        (message_key(sha256),),
    ).fetchall()
    return [e for e in map(rows_to, rows) if e.sha256 == sha256]


def migrate_log_v1(d: Dialect, cur: Cursor) -> None:
    """Move a version-1 ``entries`` table (text columns, text index) to the current layout."""
    cur.execute("DROP INDEX IF EXISTS entries_sha256")
    cur.execute(
        f"CREATE TABLE entries_v2 (idx {d.types['bigint']} PRIMARY KEY,"
        f" account_id {d.types['bigint']}, entry {d.types['blob']} NOT NULL,"
        f" tst {d.types['blob']})"
    )
    cur.execute(f"INSERT INTO entries_v2 ({_ENTRY_COLS}) SELECT {_ENTRY_COLS} FROM entries")  # noqa: S608
    keys = [
        (message_key(str(h)), int(i)) for i, h in cur.execute("SELECT idx, sha256 FROM entries")
    ]
    cur.execute("DROP TABLE entries")
    cur.execute("ALTER TABLE entries_v2 RENAME TO entries")
    index_keys(d, cur, keys, 0, len(keys))


def _capacity(level: int) -> int:
    return int(LEVEL0_ROWS * FANOUT**level)


def index_keys(
    d: Dialect, cur: Cursor, keys: Sequence[tuple[int, int]], start: int, end: int
) -> None:
    """Index the (key, entry index) pairs of entries ``start``..``end`` (module docstring).

    The levels follow from the tree size alone: level L is moved up whenever
    the log passes a multiple of its capacity, so it never holds much more
    than that, and no sizes need to be kept.
    """
    if not keys:
        return
    if not d.leveled_index:
        d.bulk_insert(cur, "message_index", "level, msg_key, idx", ((0, k, i) for k, i in keys))
        return
    level = 0  # a batch larger than level 0 goes straight to the first level that holds it
    while level + 1 < MAX_LEVELS and len(keys) > _capacity(level):
        level += 1
    d.bulk_insert(cur, "message_index", "level, msg_key, idx", ((level, k, i) for k, i in keys))
    for lv in range(MAX_LEVELS - 1):
        cap = _capacity(lv)
        if end // cap == start // cap:
            break  # the capacities are multiples of each other: no higher one was passed
        d.run(
            cur,
            "INSERT INTO message_index (level, msg_key, idx) SELECT ?, msg_key, idx"
            " FROM message_index WHERE level = ? ORDER BY msg_key, idx",
            (lv + 1, lv),
        )
        d.run(cur, "DELETE FROM message_index WHERE level = ?", (lv,))


def checkpoint(
    d: Dialect, cur: Cursor, size: int | None, *, at_least: bool = False
) -> StoredCheckpoint | None:
    """The checkpoint at ``size`` (the first at or above it, ``at_least``), or the latest
    one (``size`` None)."""
    if at_least:
        q = f"SELECT {_CHECKPOINT_COLS} FROM checkpoints WHERE size >= ? ORDER BY size LIMIT 1"  # noqa: S608
        row = d.run(cur, q, (size,)).fetchone()
    elif size is None:
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

    def __init__(
        self, d: Dialect, cur: Cursor, tokens: TokenColumn, known: TreeState | None = None
    ) -> None:
        self.d, self.cur, self.tokens = d, cur, tokens
        #: Token templates this transaction added (cached once it commits).
        self.added_templates: dict[bytes, int] = {}
        self._state: TreeState | None = None
        #: The tree once this transaction commits: its append's, else the one it read.
        self.after: TreeState | None = None
        if known is not None and known[1] is not None:
            # The tree this backend last committed, checked under the lock by a statement
            # sent with the rest of the batch (no round trip of its own): if another writer
            # changed it since, the transaction fails with StaleTree and writes nothing.
            cp = known[1]
            d.guard_tree(cur, known[0], cp.root_hash, cp.time)
            self._state = known

    def _tree_state(self) -> tuple[int, StoredCheckpoint | None]:
        # The size and the latest checkpoint in one statement (one round trip),
        # read once per transaction: nobody else appends while it holds the lock.
        if self._state is None:
            row = self.d.run(
                self.cur,
                "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM entries),"  # noqa: S608
                f" {', '.join('c.' + c for c in _CHECKPOINT_COLS.split(', '))}"
                " FROM (SELECT 1 AS one) AS o LEFT JOIN (SELECT"
                f" {_CHECKPOINT_COLS} FROM checkpoints ORDER BY size DESC LIMIT 1) AS c ON 1 = 1",
            ).fetchone()
            cp = None
            if row[1] is not None:
                cp = StoredCheckpoint(
                    int(row[1]), bytes(row[2]), self.d.time_value(row[3]), bytes(row[4])
                )
            self._state = (int(row[0]), cp)
        self.after = self._state
        return self._state

    def tree_size(self) -> int:
        return self._tree_state()[0]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return self._tree_state()[1]

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
        self._state = None  # the size and checkpoint change with this append
        self.after = (start + len(entries), checkpoint)
        tsts = [self._tst(e) for e in entries]  # before the insert: they may add a template
        d.bulk_insert(
            self.cur,
            "entries",
            _ENTRY_COLS,
            (
                (start + i, e.account_id, e.entry, t)
                for i, (e, t) in enumerate(zip(entries, tsts, strict=True))
            ),
        )
        keys = [(message_key(e.sha256), start + i) for i, e in enumerate(entries)]
        index_keys(d, self.cur, keys, start, start + len(entries))
        d.bulk_insert(
            self.cur, "hashes", "idx, hash", ((hash_start + i, h) for i, h in enumerate(hashes))
        )
        self.d.run(
            self.cur,
            f"INSERT INTO checkpoints ({_CHECKPOINT_COLS}) VALUES (?, ?, ?, ?)",  # noqa: S608
            (checkpoint.size, checkpoint.root_hash, d.time_param(checkpoint.time), checkpoint.note),
        )

    def _tst(self, e: NewEntry) -> bytes | None:
        if e.tst is None:
            return None
        return self.tokens.encode(self.cur, e.tst, e.sha256, self.added_templates)


class LogSQL(SQLBase):
    """The LogStore methods of a backend."""

    _token_column: TokenColumn | None = None

    @property
    def _tokens(self) -> TokenColumn:
        if self._token_column is None:
            self._token_column = TokenColumn(self.dialect)
        return self._token_column

    def _rows(self) -> _Rows:
        return _Rows(self._tokens, self._read)

    #: The tree as this backend's last sequencing transaction left it (None: unknown),
    #: and how many batches still read the tree instead (after a StaleTree).
    _known_tree: TreeState | None = None
    _unguarded: int = 0

    @contextmanager
    def sequence(self) -> Iterator[SQLTransaction]:
        known, self._known_tree = self._known_tree, None
        if not self.dialect.guards_tree or self._unguarded:
            self._unguarded, known = max(self._unguarded - 1, 0), None
        try:
            with self._sequence_write() as cur:
                self.dialect.lock_sequencer(cur)
                tx = SQLTransaction(self.dialect, cur, self._tokens, known)
                yield tx
        except StaleTree:
            # Another writer appends to this log too: read the tree for a while, so
            # alternating writers do not each make every batch twice.
            self._unguarded = UNGUARDED_AFTER_STALE
            raise
        self._tokens.committed(tx.added_templates)
        self._known_tree = tx.after

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return read_hashes(self.dialect, self._read(), indexes)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return checkpoint(self.dialect, self._read(), None)

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        return checkpoint(self.dialect, self._read(), size)

    def checkpoint_from(self, size: int) -> StoredCheckpoint | None:
        return checkpoint(self.dialect, self._read(), size, at_least=True)

    def entry(self, index: int) -> StoredEntry | None:
        row = self.dialect.run(
            self._read(),
            f"SELECT {_ENTRY_COLS} FROM entries WHERE idx = ?",  # noqa: S608
            (index,),
        ).fetchone()
        return None if row is None else self._rows()(row)

    def entries_for_message(self, sha256: str) -> list[StoredEntry]:
        return _for_message(self.dialect, self._read(), sha256, self._rows())

    def entries_for_account(self, sha256: str, account_id: int) -> list[StoredEntry]:
        # A ContentHandover is the account's only if the account made the first
        # SubmissionAcceptance of the acknowledged message (sha256 and Message-ID).
        every = _for_message(self.dialect, self._read(), sha256, self._rows())
        first: dict[str, int | None] = {}
        for e in every:
            if e.event == "SubmissionAcceptance":
                first.setdefault(e.message_id, e.account_id)
        return [
            e
            for e in every
            if e.account_id == account_id
            and (e.event != "ContentHandover" or first.get(e.message_id) == account_id)
        ]

    def iter_entries(
        self, start: int = 0, stop: int | None = None, *, tokens: bool = True
    ) -> Iterator[StoredEntry]:
        cols = _ENTRY_COLS if tokens else _ENTRY_COLS.replace("tst", "NULL")
        bound, params = ("", (start,)) if stop is None else (" AND idx < ?", (start, stop))
        cur = self.dialect.run(
            self._read(),
            f"SELECT {cols} FROM entries WHERE idx >= ?{bound} ORDER BY idx",  # noqa: S608
            params,
        )
        rows_to = self._rows()
        for row in cur:
            yield rows_to(row)

"""Databases made by the version-1 layout open, migrate once, and keep their log.

Version 1 (up to this change) kept each entry's hex SHA-256, Message-ID and
event in text columns of ``entries``, with a text index on the hash. The
test builds a real log, rewrites it into exactly that layout with the
driver (the DDL below is version 1's, verbatim), reopens it with the current
code, and checks the entries, the lookups, the schema version and that the
sequencer carries on from the same tree.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notary.merkle import prove_inclusion, tree_hash
from notary.note import Signer
from notary.sequencer import Sequencer, Submission
from notary.storage import Storage
from notary.storage.sql.dialect import SCHEMA_VERSION
from tests.notary.storage_backends import BACKENDS, require_pg

V1_ENTRIES = """
CREATE TABLE entries (
    idx {bigint} PRIMARY KEY,
    account_id {bigint},
    sha256 TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event TEXT NOT NULL,
    entry {blob} NOT NULL,
    tst {blob}
);
CREATE INDEX IF NOT EXISTS entries_sha256 ON entries (sha256);
"""


def _subs(n: int, tag: str) -> list[Submission]:
    return [
        Submission(
            "SubmissionAcceptance",
            hashlib.sha256(f"{tag}{i}".encode()).hexdigest(),
            f"<{tag}{i}@x>",
            1,
            {"submitter": "a@example.test", "channel": "api"},
        )
        for i in range(n)
    ]


class _Backend:
    """Open the store, and run raw SQL on its database as version 1's code did."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = tmp_path / "n.db"
        self.schema = "t_" + uuid.uuid4().hex[:16]

    def open(self) -> Storage:
        if self.kind == "sqlite":
            from notary.storage.sqlite import SQLiteStorage

            return SQLiteStorage(self.path)
        from notary.storage.postgres import PostgresStorage

        return PostgresStorage(require_pg(), schema=self.schema)

    def raw(self, script: list[tuple[str, Any]]) -> None:
        if self.kind == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.path)
            with conn:
                for q, params in script:
                    conn.executemany(q, params) if isinstance(params, list) else conn.execute(q)
            conn.close()
            return
        import psycopg

        with psycopg.connect(require_pg()) as pg:
            pg.execute(f'SET search_path TO "{self.schema}"')
            for q, params in script:
                q = q.replace("?", "%s")
                with pg.cursor() as cur:
                    cur.executemany(q, params) if isinstance(params, list) else cur.execute(q)

    def types(self) -> dict[str, str]:
        if self.kind == "sqlite":
            return {"bigint": "INTEGER", "blob": "BLOB"}
        return {"bigint": "BIGINT", "blob": "BYTEA"}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Backend]:
    b = _Backend(request.param, tmp_path)
    yield b
    if b.kind == "postgres":
        st = b.open()
        st.drop_schema()  # type: ignore[attr-defined]
        st.close()


def _to_version_1(b: _Backend, st: Storage) -> None:
    """Rewrite the log's tables into version 1's layout (what an old notary left)."""
    rows = [
        (e.index, e.account_id, e.sha256, e.message_id, e.event, e.entry, e.tst)
        for e in st.iter_entries()
    ]
    st.close()
    ddl = V1_ENTRIES.format(**b.types())
    b.raw(
        [
            ("DROP TABLE entries", None),
            ("DROP TABLE message_index", None),
            ("DROP TABLE schema_version", None),
            *((q, None) for q in ddl.split(";") if q.strip()),
            (
                "INSERT INTO entries (idx, account_id, sha256, message_id, event, entry, tst)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            ),
        ]
    )


def test_a_version_1_log_migrates_on_open_and_carries_on(backend: _Backend) -> None:
    st = backend.open()
    signer = Signer.generate("migrate.test/log")
    seq = Sequencer(st, signer)
    first = [r for b in range(3) for r in seq.commit_batch(_subs(5, f"b{b}-"))]
    _to_version_1(backend, st)

    st = backend.open()  # migrates
    try:
        assert len(list(st.iter_entries())) == 15
        for i, r in enumerate(first):
            e = st.entry(i)
            assert e is not None and e.entry == r.entry
            assert [x.index for x in st.entries_for_message(e.sha256)] == [i]
            assert json.loads(e.entry)["message"]["id"] == e.message_id
        assert st.entries_for_account(st.entry(3).sha256, 1)[0].index == 3  # type: ignore[union-attr]
        seq = Sequencer(st, signer)  # the tree and its checkpoint are intact: it signs on
        (more,) = seq.commit_batch(_subs(1, "after-"))
        assert more.proof.index == 15
        root = tree_hash(16, st)
        assert prove_inclusion(16, 2, st) and st.latest_checkpoint().root_hash == root  # type: ignore[union-attr]
        more.verify(signer.verifier())
    finally:
        st.close()
    st = backend.open()  # a second open finds version 2 and changes nothing
    try:
        assert len(list(st.iter_entries())) == 16
    finally:
        st.close()
    _assert_layout(backend)


def _assert_layout(b: _Backend) -> None:
    if b.kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(b.path)
        cols = {r[1] for r in conn.execute("PRAGMA table_info(entries)")}
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        conn.close()
        assert "entries_sha256" not in indexes
    else:
        import psycopg

        with psycopg.connect(require_pg()) as pg:
            cols = {
                r[0]
                for r in pg.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = %s AND table_name = 'entries'",
                    (b.schema,),
                )
            }
            versions = [
                r[0] for r in pg.execute(f'SELECT version FROM "{b.schema}".schema_version')
            ]
    assert cols == {"idx", "account_id", "entry", "tst"}  # nothing copied from the statement
    assert versions == [SCHEMA_VERSION]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    from notary.errors import StorageError
    from notary.storage.sqlite import SQLiteStorage

    SQLiteStorage(tmp_path / "n.db").close()
    import sqlite3

    conn = sqlite3.connect(tmp_path / "n.db")
    with conn:
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(StorageError, match="schema version 99"):
        SQLiteStorage(tmp_path / "n.db")

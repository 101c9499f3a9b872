"""Open-tracking token hashes on every backend (docs/ack.md), and their table's creation
in databases made before it existed."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.errors import ConflictError
from notary.storage import Storage, TrackingToken
from tests.fixtures.storage import T0
from tests.notary.storage_backends import BACKENDS, open_backend


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield from open_backend(request.param, tmp_path)


def _tok(name: str, account_id: int = 1) -> TrackingToken:
    return TrackingToken(
        hashlib.sha256(name.encode()).digest(),
        account_id,
        "ab" * 32,
        "<m@x.test>",
        f"{name}@x.test",
        T0,
    )


def test_tracking_tokens_round_trip_and_conflict(storage: Storage) -> None:
    a, b = _tok("a"), _tok("b", 2)
    storage.add_tracking_tokens([a, b])
    assert storage.tracking_token(a.token_hash) == a
    assert storage.tracking_token(b.token_hash) == b
    assert storage.tracking_token(hashlib.sha256(b"c").digest()) is None
    # All or nothing: a batch with one repeat stores none of its tokens.
    c = _tok("c")
    with pytest.raises(ConflictError):
        storage.add_tracking_tokens([c, a])
    assert storage.tracking_token(c.token_hash) is None


def test_sqlite_database_from_before_tracking(tmp_path: Path) -> None:
    from notary.storage.sqlite import SQLiteStorage

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE entries (idx INTEGER PRIMARY KEY, account_id INTEGER,"
            " sha256 TEXT NOT NULL, message_id TEXT NOT NULL, event TEXT NOT NULL,"
            " entry BLOB NOT NULL, tst BLOB)"
        )
    s = SQLiteStorage(path)
    try:
        s.add_tracking_tokens([_tok("old")])
        assert s.tracking_token(_tok("old").token_hash) == _tok("old")
    finally:
        s.close()

"""PostgreSQL's batch from the tree it last committed: one round trip, guarded.

Once a PostgresStorage has committed a batch it knows the tree (size and latest
checkpoint); the next batch starts from it and sends the lock, a guard that the
tree is still that one, the inserts and COMMIT together. Another writer's append
makes the guard fail: the batch writes nothing (StaleTree) and the sequencer
makes it again from the tree read under the lock (notary.storage.sql.log).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from notary.errors import StorageError
from notary.merkle import leaf_hash, verify_inclusion
from notary.note import Signer
from notary.sequencer import Sequencer, Submission
from notary.storage import StaleTree, StoredCheckpoint, postgres
from notary.storage.sql import log as sql_log
from tests.notary.storage_backends import pg_writers, submissions

pytestmark = pytest.mark.postgres


@pytest.fixture
def two() -> Iterator[tuple[postgres.PostgresStorage, postgres.PostgresStorage]]:
    """Two storages (two writers, as two machines would be) on one log."""
    yield from pg_writers("t_guard_")


def _subs(n: int, start: int = 0) -> list[Submission]:
    return submissions(n, start)


def _waits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts from now on the times a pipeline waits for results (a round trip each: a
    fetch, a sync or its end)."""
    count = [0]
    fetch = psycopg.Pipeline._fetch_gen

    def spy(self: psycopg.Pipeline, *, flush: bool):  # type: ignore[no-untyped-def]
        if self.result_queue:
            count[0] += 1
        return fetch(self, flush=flush)

    monkeypatch.setattr(psycopg.Pipeline, "_fetch_gen", spy)
    return count


def test_a_batch_on_the_tree_it_last_committed_is_one_round_trip(
    two: tuple[postgres.PostgresStorage, postgres.PostgresStorage],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _ = two
    seq = Sequencer(a, Signer.generate("guard.test/log"))
    seq.commit_batch(_subs(4))  # reads the tree (and, once, the tables' column types)
    waits = _waits(monkeypatch)
    for i in range(3):
        seq.commit_batch(_subs(3, 4 + 3 * i))
    assert waits[0] == 3  # one a batch
    a._unguarded = 3  # as after a stale batch: the tree is read, in a round trip of its own
    for i in range(3):
        seq.commit_batch(_subs(1, 13 + i))
    assert waits[0] == 3 + 6
    assert a.latest_checkpoint().size == 16  # type: ignore[union-attr]


def test_a_stale_batch_writes_nothing(
    two: tuple[postgres.PostgresStorage, postgres.PostgresStorage],
) -> None:
    a, b = two
    Sequencer(a, Signer.generate("guard.test/log")).commit_batch(_subs(4))
    Sequencer(b, Signer.generate("guard.test/log")).commit_batch(_subs(3, 4))  # a is stale
    cp = StoredCheckpoint(100, b"\1" * 32, datetime.now(UTC), b"note")
    with pytest.raises(StaleTree), a.sequence() as tx:
        assert tx.tree_size() == 4  # as a last committed it, not read
        tx.append(4, [], [b"\2" * 32], 1000, cp)
    with pytest.raises(StorageError, match="missing"):
        a.read_hashes([1000])
    assert a.checkpoint_at(100) is None
    assert a.latest_checkpoint().size == 7  # type: ignore[union-attr]
    with a.sequence() as tx:
        assert tx.tree_size() == 7  # read under the lock after the stale one


def test_writers_taking_turns_each_make_their_batch_again(
    two: tuple[postgres.PostgresStorage, postgres.PostgresStorage],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every batch stale (its writer guards again at once): each is made again on the
    tree read under the lock, lands after the other's, and the log stays one tree;
    statements psycopg prepared (from 5 runs on) survive the aborted pipelines."""
    monkeypatch.setattr(sql_log, "UNGUARDED_AFTER_STALE", 0)
    signer = Signer.generate("guard.test/log")
    seqs = [Sequencer(s, signer) for s in two]
    receipts = []
    for i in range(16):
        receipts += seqs[i % 2].commit_batch(_subs(2, 2 * i))
    assert [r.proof.index for r in receipts] == list(range(32))
    assert [e.entry for e in two[0].iter_entries()] == [r.entry for r in receipts]
    for r in receipts:  # each against the checkpoint of its batch, as stored
        cp = two[0].checkpoint_at(r.proof.index // 2 * 2 + 2)
        assert cp is not None
        verify_inclusion(leaf_hash(r.entry), r.proof.index, cp.size, r.proof.hashes, cp.root_hash)
    assert all(s.fatal is None for s in seqs)


def test_only_the_guard_signals_a_stale_tree(
    two: tuple[postgres.PostgresStorage, postgres.PostgresStorage],
) -> None:
    """Another error of the batch's pipeline (here a division by zero, which the guard
    once used as its signal) is that error, never StaleTree; the guard's SQLSTATE is."""
    a, _ = two
    Sequencer(a, Signer.generate("guard.test/log")).commit_batch(_subs(2))
    with pytest.raises(psycopg.errors.DivisionByZero), a.sequence() as tx:
        tx.cur.execute("SELECT 1 / 0")  # type: ignore[attr-defined]
    with pytest.raises(StaleTree) as stale:
        with a.sequence() as tx:  # a read, then a guard on a tree that is not there
            size = tx.tree_size()
            cp = tx.latest_checkpoint()
            assert cp is not None
            a.dialect.guard_tree(tx.cur, size + 1, cp.root_hash, cp.time)  # type: ignore[attr-defined]
    cause = stale.value.__cause__
    assert isinstance(cause, psycopg.Error) and cause.sqlstate == postgres.STALE_TREE
    assert a.latest_checkpoint().size == 2  # type: ignore[union-attr]

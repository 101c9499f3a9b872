"""The next batch is prepared while one commits (notary.sequencer_loop), and that never
costs durability: a failed commit fails its own waiters only, and the batch prepared
meanwhile is committed on the tree as it is then, after whatever another writer added."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from notary.merkle import leaf_hash, verify_inclusion
from notary.note import Signer
from notary.receipt import Receipt
from notary.sequencer import Sequencer, Submission
from notary.storage import postgres
from tests.notary.storage_backends import pg_writers, submissions

pytestmark = pytest.mark.postgres


@pytest.fixture
def two() -> Iterator[tuple[postgres.PostgresStorage, postgres.PostgresStorage]]:
    """Two writers on one log."""
    yield from pg_writers("t_overlap_")


def _subs(n: int, start: int = 0) -> list[Submission]:
    return submissions(n, start)


def _check(storage: postgres.PostgresStorage, receipts: list[Receipt], start: int) -> None:
    """The receipts are entries ``start..`` of the log, proved against their checkpoint."""
    assert [r.proof.index for r in receipts] == list(range(start, start + len(receipts)))
    assert [e.entry for e in storage.iter_entries(start)] == [r.entry for r in receipts]
    cp = storage.checkpoint_at(start + len(receipts))
    assert cp is not None
    for r in receipts:
        verify_inclusion(leaf_hash(r.entry), r.proof.index, cp.size, r.proof.hashes, cp.root_hash)


async def _until(cond: Callable[[], bool]) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def test_a_commit_failing_while_the_next_batch_is_prepared(
    two: tuple[postgres.PostgresStorage, postgres.PostgresStorage],
) -> None:
    """The first batch's commit waits for the sequencing lock (held by another session)
    while the second batch is prepared; then its connection is killed. Its waiters get
    the error; the second batch is committed after the other writer's entries (the tree
    this process knew was stale) and its receipts prove against the stored tree."""
    a, b = two
    signer = Signer.generate("overlap.test/log")
    clocked: list[datetime] = []

    def clock() -> datetime:
        clocked.append(datetime.now(UTC))
        return clocked[-1]

    seq = Sequencer(a, signer, clock=clock)
    seq.commit_batch(_subs(2))  # a knows the tree at 2 ...
    Sequencer(b, signer).commit_batch(_subs(3, 2))  # ... which another writer takes to 5

    async def run() -> list[Receipt]:
        await seq.start()
        lock = psycopg.connect(a.url, autocommit=True)
        try:
            lock.execute("SELECT pg_advisory_lock(%s)", (a.sequencer_lock_key,))
            first = seq.enqueue(_subs(2, 5))
            pid = a._writer.info.backend_pid

            def waits() -> bool:
                row = lock.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                return row is not None and row[0] == "Lock"

            await _until(waits)  # the first batch's commit is in flight
            before = len(clocked)
            second = seq.enqueue(_subs(3, 7))
            await _until(lambda: len(clocked) > before)  # the second is being prepared
            lock.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(psycopg.Error):
                await first
            assert not second.done()
        finally:
            lock.close()  # releases the lock
        try:
            return await second
        finally:
            await seq.stop()

    receipts = asyncio.run(run())
    _check(a, receipts, 5)
    assert a.latest_checkpoint().size == 8  # type: ignore[union-attr]
    assert seq.fatal is None and seq.metrics.failed_batches == 1


def test_a_batch_prepared_before_another_writers_checkpoint_is_made_again_after_it(
    two: tuple[postgres.PostgresStorage, postgres.PostgresStorage],
) -> None:
    """A prepared batch's time must be after the last checkpoint's as read under the lock:
    another writer's later checkpoint makes it restate its entries at the clock's time
    (the checkpoints' times keep increasing along the log)."""
    a, b = two
    signer = Signer.generate("overlap.test/log")
    now = [datetime(2030, 1, 1, tzinfo=UTC)]

    def tick() -> datetime:
        now[0] += timedelta(seconds=1)
        return now[0]

    mine, other = Sequencer(a, signer, clock=tick), Sequencer(b, signer, clock=tick)
    mine.commit_batch(_subs(1))
    prepared = mine.prepare(_subs(2, 1))
    other.commit_batch(_subs(1, 3))  # later than the prepared batch's time
    receipts = mine.commit_prepared(prepared)
    _check(a, receipts, 2)
    assert [r.entry for r in receipts] != prepared.entries
    times = [a.checkpoint_at(n).time for n in (1, 2, 4)]  # type: ignore[union-attr]
    assert times[0] < prepared.time < times[1] < times[2] == now[0]

"""The next batch is prepared while one commits (notary.sequencer_loop), and that never
costs durability: a failed commit fails its own waiters only, and the batch prepared
meanwhile is committed on the tree as it is then, after whatever another writer added."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from keys.tsa import generate_tsa_pki
from notary.errors import SequencerError
from notary.merkle import leaf_hash, verify_inclusion
from notary.note import Signer
from notary.receipt import Receipt
from notary.rfc3161 import TimeStampAuthority
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
    stored = [e.entry for e in storage.iter_entries(start)][: len(receipts)]
    assert stored == [r.entry for r in receipts]
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


class _Lock:
    """Another session holding the sequencing lock, and what it sees of ``storage``'s."""

    def __init__(self, storage: postgres.PostgresStorage) -> None:
        self.storage = storage
        self.conn = psycopg.connect(storage.url, autocommit=True)
        self.conn.execute("SELECT pg_advisory_lock(%s)", (storage.sequencer_lock_key,))

    def waited_for(self) -> bool:
        pid = self.storage._writer.info.backend_pid
        row = self.conn.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        return row is not None and row[0] == "Lock"

    def release(self) -> None:
        self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.storage.sequencer_lock_key,))

    def close(self) -> None:
        self.conn.close()


def _counting_clock() -> tuple[Callable[[], datetime], list[datetime]]:
    clocked: list[datetime] = []

    def clock() -> datetime:
        clocked.append(datetime.now(UTC))
        return clocked[-1]

    return clock, clocked


def test_the_next_commit_starts_in_the_committing_thread(
    two: tuple[postgres.PostgresStorage, postgres.PostgresStorage],
) -> None:
    """The batch gathered while one commits is committed by the same thread as soon as
    that commit returns: with the event loop blocked, both batches land."""
    a, _ = two
    clock, clocked = _counting_clock()
    seq = Sequencer(a, Signer.generate("overlap.test/log"), clock=clock)
    seq.commit_batch(_subs(1))
    landed = threading.Event()
    seq.on_commit(lambda size: landed.set() if size == 6 else None)

    async def run() -> tuple[list[Receipt], list[Receipt]]:
        await seq.start()
        lock = _Lock(a)
        try:
            first = seq.enqueue(_subs(2, 1))
            await _until(lock.waited_for)
            before = len(clocked)
            second = seq.enqueue(_subs(3, 3))
            await _until(lambda: len(clocked) > before)  # taken into the next batch
            lock.release()
            assert landed.wait(5)  # the loop is blocked here: the thread chained it
            return await first, await second
        finally:
            lock.close()
            await seq.stop()

    first, second = asyncio.run(run())
    _check(a, first, 1)
    _check(a, second, 3)
    assert seq.metrics.batches == 3


def test_stopping_while_a_batch_commits_commits_none_after_it(
    two: tuple[postgres.PostgresStorage, postgres.PostgresStorage],
) -> None:
    """Stopped while a commit waits for the lock and the next batch is gathered: both
    batches' waiters hear that the notary is shutting down, and the thread commits the
    one in flight, never the one after it."""
    a, _ = two
    clock, clocked = _counting_clock()
    seq = Sequencer(a, Signer.generate("overlap.test/log"), clock=clock)
    seq.commit_batch(_subs(1))

    async def run() -> None:
        await seq.start()
        lock = _Lock(a)
        try:
            first = seq.enqueue(_subs(2, 1))
            await _until(lock.waited_for)
            before = len(clocked)
            second = seq.enqueue(_subs(3, 3))
            await _until(lambda: len(clocked) > before)
            await seq.stop()
            for fut in (first, second):
                with pytest.raises(SequencerError, match="shutting down"):
                    await fut
            lock.release()
        finally:
            lock.close()

    asyncio.run(run())  # waits for the committing thread
    assert a.latest_checkpoint().size == 3  # type: ignore[union-attr]


class _Flaky:
    """A TSA that fails on one digest."""

    def __init__(self, tsa: TimeStampAuthority, bad: str) -> None:
        self.tsa, self.bad = tsa, bytes.fromhex(bad)
        self.failed = threading.Event()

    def stamp(self, digest: bytes, hash_name: str = "sha256", *, cert_req: bool = True) -> bytes:
        if digest == self.bad:
            self.failed.set()
            raise SequencerError("the TSA failed")
        return self.tsa.stamp(digest, hash_name, cert_req=cert_req)


def test_a_batch_whose_preparation_failed_fails_alone(
    two: tuple[postgres.PostgresStorage, postgres.PostgresStorage], tmp_path: Path
) -> None:
    """The next batch's tokens fail while a batch commits: the batch committing, and the
    one after the failed one, land; the failed one's waiters alone get the error."""
    a, _ = two
    stamped = [replace(s, timestamp=True) for s in _subs(7)]
    tsa = _Flaky(
        TimeStampAuthority(generate_tsa_pki(tmp_path / "pki", "Flaky TSA")), stamped[3].sha256
    )
    seq = Sequencer(a, Signer.generate("overlap.test/log"), tsa=tsa)
    seq.commit_batch(stamped[:1])

    async def run() -> tuple[list[Receipt], list[Receipt]]:
        await seq.start()
        lock = _Lock(a)
        try:
            first = seq.enqueue(stamped[1:3])
            await _until(lock.waited_for)
            bad = seq.enqueue(stamped[3:5])
            await _until(tsa.failed.is_set)
            lock.release()
            got = await first
            with pytest.raises(SequencerError, match="the TSA failed"):
                await bad
            return got, await seq.submit(stamped[5:])
        finally:
            lock.close()
            await seq.stop()

    first, after = asyncio.run(run())
    _check(a, first, 1)
    _check(a, after, 3)
    assert all(r.tst is not None for r in first + after)
    assert seq.metrics.failed_batches == 1

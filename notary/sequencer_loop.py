"""The sequencer's asyncio group commit, with the next batch made while one commits.

Submissions gather in the sequencer's pending pool. A batch is everything
pending when the previous one has committed (up to ``max_batch``), as before;
but while a batch commits, what arrives is taken into the next batch at once
and prepared in a thread (:meth:`~notary.sequencer.Sequencer.prepare`: the
RFC 3161 tokens, the statements, the leaf hashes; the parts that do not depend
on the tree), so the wait for the database's flush is no longer idle sequencer
time, and only the tree's part is left when the commit returns.

Durability is unchanged (DESIGN §5): a waiter gets its receipts only once its
own batch has committed. The next batch is prepared, never written, while the
previous one commits; if that commit fails, its waiters get the error and the
next batch is committed on its own, from the tree read under the lock (the
storage trusts no tree it remembers after a failed transaction), its time
checked against that tree's last checkpoint
(:meth:`~notary.sequencer.Sequencer.commit_prepared`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from notary.errors import SequencerError

if TYPE_CHECKING:
    from notary.receipt import Receipt
    from notary.sequencer import Prepared, Sequencer, Submission

log = logging.getLogger("certmail.notary.sequencer")


class _Batch:
    """The requests of one batch and its preparation, one chunk in a thread at a time."""

    def __init__(self, seq: Sequencer) -> None:
        self.seq = seq
        self.waiters: list[tuple[list[Submission], asyncio.Future[list[Receipt]]]] = []
        self.count = 0
        self.prepared: Prepared | None = None
        self.chunk: asyncio.Future[Prepared] | None = None
        self.unprepared: list[Submission] = []

    def take(self) -> bool:
        """Move pending requests into this batch (up to ``max_batch``); True if any."""
        pending, took = self.seq._pending, False
        while pending and (
            not self.waiters or self.count + len(pending[0][0]) <= self.seq.max_batch
        ):
            items, fut = pending.pop(0)
            self.waiters.append((items, fut))
            self.unprepared += items
            self.count += len(items)
            took = True
        return took

    def start_chunk(self) -> None:
        """Prepare what was taken and is not yet, in a thread (one chunk at a time)."""
        items, self.unprepared = self.unprepared, []
        time = None if self.prepared is None else self.prepared.time
        self.chunk = asyncio.ensure_future(asyncio.to_thread(self.seq.prepare, items, time))

    async def join_chunk(self) -> None:
        if self.chunk is not None:
            chunk, self.chunk = self.chunk, None
            part = await chunk
            self.prepared = part if self.prepared is None else self.prepared.joined(part)

    async def start_commit(self) -> asyncio.Future[list[Receipt]]:
        """Start committing this batch, in a thread, which first prepares what was taken
        and is not prepared yet; the future of its receipts (or of its error)."""
        try:
            await self.join_chunk()  # almost always done already
        except Exception as e:  # its preparation failed: so does the batch
            failed: asyncio.Future[list[Receipt]] = asyncio.get_running_loop().create_future()
            failed.set_exception(e)
            return failed
        prepared, rest, self.unprepared = self.prepared, self.unprepared, []
        return asyncio.ensure_future(asyncio.to_thread(self.seq.commit_rest, prepared, rest))

    def fail(self, e: BaseException) -> None:
        for _, fut in self.waiters:
            if not fut.done():
                fut.set_exception(e)

    def answer(self, receipts: list[Receipt]) -> None:
        pos = 0
        for items, fut in self.waiters:
            if not fut.done():
                fut.set_result(receipts[pos : pos + len(items)])
            pos += len(items)


async def _prepare_during(
    seq: Sequencer, wake: asyncio.Event, commit: asyncio.Future[list[Receipt]], nxt: _Batch
) -> None:
    """Until ``commit`` is done: take what arrives into ``nxt`` and prepare it. A chunk
    that failed stops this; :meth:`_Batch.finish` raises its error for the whole batch."""
    while not commit.done():
        chunk = nxt.chunk
        if chunk is not None and not chunk.done():
            await _either(commit, chunk)
            continue
        if chunk is not None and chunk.exception() is not None:
            break
        if seq._pending:
            if not nxt.take():  # full: the rest waits for the batch after
                break
            await nxt.join_chunk()
            nxt.start_chunk()
            continue
        wake.clear()
        woken = asyncio.ensure_future(wake.wait())
        await _either(commit, woken)
        woken.cancel()
    await asyncio.wait({commit})


async def _either(a: asyncio.Future[Any], b: asyncio.Future[Any]) -> None:
    await asyncio.wait((a, b), return_when=asyncio.FIRST_COMPLETED)


async def group_commit(seq: Sequencer, wake: asyncio.Event) -> None:
    """The sequencer's batching loop (module docstring); runs until cancelled.

    When a commit returns, the next batch's commit starts before the finished batch's
    waiters are answered (their handlers then run while it commits), unless the
    sequencer's :meth:`~notary.sequencer.Sequencer._gather` needs the answers out first
    (:attr:`~notary.sequencer.Sequencer.answer_before_gather`)."""
    batch = nxt = _Batch(seq)
    done: tuple[_Batch, asyncio.Future[list[Receipt]]] | None = None
    try:
        while True:
            if done is not None and (seq.answer_before_gather or not nxt.waiters):
                _answer(seq, *done)
                done = None
            if not nxt.waiters:
                await wake.wait()
                wake.clear()
                if not seq._pending:
                    continue
            await seq._gather()
            batch, nxt = nxt, _Batch(seq)
            batch.take()
            commit = await batch.start_commit()
            if done is not None:
                _answer(seq, *done)
                done = None
            await _prepare_during(seq, wake, commit, nxt)
            done = (batch, commit)
    except asyncio.CancelledError:
        if done is not None and done[1].done():  # committed (or failed): say which
            _answer(seq, *done)
        for b in (batch, nxt, *(done[:1] if done else ())):
            b.fail(SequencerError("the notary is shutting down"))
        raise


def _answer(seq: Sequencer, batch: _Batch, commit: asyncio.Future[list[Receipt]]) -> None:
    try:
        receipts = commit.result()
    except Exception as e:  # one batch failed: its callers hear why
        _failed(seq, batch, e)
        return
    batch.answer(receipts)


def _failed(seq: Sequencer, batch: _Batch, e: Exception) -> None:
    seq.metrics.batch_failed()
    log.error("batch of %d failed: %s", batch.count, e)
    batch.fail(e)

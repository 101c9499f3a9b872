"""The sequencer's group commit: commits chained in one thread, the next batch made meanwhile.

Submissions gather in the sequencer's pending pool. A batch is everything
pending when the previous one has committed (up to ``max_batch``), as before.
While a batch commits, what arrives is taken into the next batch at once and
prepared in a thread (:meth:`~notary.sequencer.Sequencer.prepare`: the RFC 3161
tokens, the statements, the leaf hashes; the parts that do not depend on the
tree), one chunk at a time. When a commit returns, its own thread takes what is
still pending into the next batch and commits it at once (what is not prepared
yet is prepared there first), and only tells the event loop which waiters to
answer: the loop, busy with the requests' HTTP, is no longer between two
commits (it heard a commit 5-7.5 ms late on a loaded machine). A sequencer whose
:meth:`~notary.sequencer.Sequencer._gather` must run (on the loop) before each
batch (:attr:`~notary.sequencer.Sequencer.answer_before_gather`) gets one commit
a thread, started by the loop after the last one's waiters are answered.

Durability is unchanged (DESIGN §5): a waiter gets its receipts only once its
own batch has committed. The next batch is prepared, never written, while the
previous one commits; if that commit fails, its waiters alone get the error and
the next batch is committed on its own, from the tree read under the lock (the
storage trusts no tree it remembers after a failed transaction), its time
checked against that tree's last checkpoint
(:meth:`~notary.sequencer.Sequencer.commit_prepared`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

from notary.errors import SequencerError

if TYPE_CHECKING:
    from notary.receipt import Receipt
    from notary.sequencer import Prepared, Sequencer, Submission

log = logging.getLogger("certmail.notary.sequencer")

Waiter = tuple[list["Submission"], "asyncio.Future[list[Receipt]]"]


class _Chunk:
    """Part of a batch prepared in a thread; waited for by the loop or the committer."""

    def __init__(self, seq: Sequencer, items: list[Submission], prepared: Prepared | None) -> None:
        self.seq, self.items = seq, items
        self.time = None if prepared is None else prepared.time
        self.ready = threading.Event()
        self.result: Prepared | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.result = self.seq.prepare(self.items, self.time)
        except Exception as e:  # the whole batch fails with it (_Batch.commit)
            self.error = e
        finally:
            self.ready.set()


class _Batch:
    """The requests of one batch and its preparation, one chunk in a thread at a time."""

    def __init__(self, seq: Sequencer) -> None:
        self.seq = seq
        self.waiters: list[Waiter] = []
        self.count = 0
        self.prepared: Prepared | None = None
        self.chunk: _Chunk | None = None
        self.unprepared: list[Submission] = []
        self.outcome: list[Receipt] | Exception | None = None  # once committed or failed

    def take(self) -> bool:
        """Move pending requests into this batch (up to ``max_batch``); True if any.
        Under the chain's lock (the loop and the committing thread both take)."""
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

    def next_chunk(self) -> _Chunk | None:
        """The chunk to prepare what was taken and is not yet, if the last one is done
        (it is joined first); None if there is none to start, or the last one failed (the
        batch fails with it, :meth:`commit`; what it took still goes into it)."""
        chunk = self.chunk
        if not self.unprepared or (chunk is not None and (not chunk.ready.is_set() or chunk.error)):
            return None
        self._join()
        self.chunk = _Chunk(self.seq, self.unprepared, self.prepared)
        self.unprepared = []
        return self.chunk

    def _join(self) -> None:
        if self.chunk is not None:
            chunk, self.chunk = self.chunk, None
            chunk.ready.wait()  # almost always done already
            if chunk.error is not None:
                raise chunk.error
            assert chunk.result is not None
            self.prepared = (
                chunk.result if self.prepared is None else self.prepared.joined(chunk.result)
            )

    def commit(self) -> list[Receipt]:
        """Commit this batch (in the committing thread), first preparing what is not."""
        self._join()
        prepared, rest, self.unprepared = self.prepared, self.unprepared, []
        return self.seq.commit_rest(prepared, rest)

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


class _Chain:
    """The committing thread and what it shares with the loop (under ``lock``): the
    batch being gathered (``nxt``), the one committing, whether to stop."""

    def __init__(self, seq: Sequencer, wake: asyncio.Event) -> None:
        self.seq, self.wake = seq, wake
        self.loop = asyncio.get_running_loop()
        self.lock = threading.Lock()
        self.nxt = _Batch(seq)
        self.committing: _Batch | None = None
        self.stopping = False

    def start(self) -> None:
        """On the loop, no commit running: commit what is gathered and pending."""
        with self.lock:
            batch, self.nxt = self.nxt, _Batch(self.seq)
            batch.take()
            self.committing = batch
        self.loop.run_in_executor(None, self.run, batch)

    def prepare(self) -> None:
        """On the loop, a commit running: take what arrived into the next batch and start
        preparing what it holds unprepared (one chunk at a time)."""
        with self.lock:
            nxt = self.nxt
            if self.committing is None:
                return
            nxt.take()
            chunk = nxt.next_chunk()
            if chunk is not None:
                fut = self.loop.run_in_executor(None, chunk.run)
                fut.add_done_callback(lambda _: self.wake.set())

    def run(self, batch: _Batch) -> None:
        """The committing thread: commit ``batch``, then the next one while there is one
        (and the sequencer needs no ``_gather`` between them); each batch's result goes
        to the loop, whose waiters it answers."""
        chain = not self.seq.answer_before_gather
        while True:
            result: list[Receipt] | Exception
            try:
                result = batch.commit()
            except Exception as e:  # this batch fails; the next one is tried on its own
                result = e
            with self.lock:
                batch.outcome, nxt = result, None
                if chain and not self.stopping:
                    self.nxt.take()
                    if self.nxt.waiters:
                        nxt, self.nxt = self.nxt, _Batch(self.seq)
                        self.committing = nxt
            self._tell(batch, nxt is None)
            if nxt is None:
                return
            batch = nxt

    def _tell(self, batch: _Batch, last: bool) -> None:
        try:
            self.loop.call_soon_threadsafe(self._finished, batch, last)
        except RuntimeError:  # the loop is closed: group_commit failed these waiters
            pass

    def _finished(self, batch: _Batch, last: bool) -> None:
        """On the loop: answer ``batch``'s waiters; after the ``last`` batch of a thread,
        the loop starts the next one (so its ``_gather`` runs after these answers)."""
        if last:
            with self.lock:
                self.committing = None
        self._settle(batch)
        self.wake.set()

    def _settle(self, batch: _Batch) -> None:
        result, batch.outcome = batch.outcome, None  # settled once
        if isinstance(result, Exception):  # one batch failed: its callers hear why
            self.seq.metrics.batch_failed()
            log.error("batch of %d failed: %s", batch.count, result)
            batch.fail(result)
        elif result is not None:
            batch.answer(result)

    def shut(self) -> None:
        """No batch after the one committing; a batch committed (or failed) is answered,
        every other waiter is failed."""
        with self.lock:
            self.stopping = True
            batches = [b for b in (self.committing, self.nxt) if b is not None]
        for b in batches:
            self._settle(b)
            b.fail(SequencerError("the notary is shutting down"))


async def group_commit(seq: Sequencer, wake: asyncio.Event) -> None:
    """The sequencer's batching loop (module docstring); runs until cancelled. Woken by
    a submission, a chunk prepared or a batch committed."""
    chain = _Chain(seq, wake)
    try:
        while True:
            await wake.wait()
            wake.clear()
            if chain.committing is not None:
                chain.prepare()
            elif seq._pending or chain.nxt.waiters:
                await seq._gather()
                chain.start()
    except asyncio.CancelledError:
        chain.shut()
        raise

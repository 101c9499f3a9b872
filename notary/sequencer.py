"""The sequencer: turns submissions into log entries, one batch at a time.

Group commit: submissions gather in a pending pool while the previous batch
commits; each batch is one storage transaction with one checkpoint signature.
Callers get their receipts only after the batch is durable. What does not depend
on the tree (tokens, statements, leaf hashes: :meth:`Sequencer.prepare`) is made
while the previous batch commits, and the committing thread commits the next batch
as soon as one returns (notary.sequencer_loop). Before signing, the
sequencer checks that the new tree is consistent with the last checkpoint
(RFC 9162 §2.1.4) and that time moved forward; it refuses to sign otherwise.

Stored hashes never change once committed, so the sequencer keeps the ones
its batches wrote or read (the tree's right edge, at most
:data:`COMMITTED_HASHES`) and the next batch reads them from memory instead
of the database; the check against the last checkpoint is then made over the
hashes this process committed, and a sequencer that starts (or another
process) reads them all from the log.

Errors are split as in Sunlight: a failure of one batch (the database briefly
unavailable, the clock not moving forward) fails that batch's submissions; an
inconsistency between the stored tree and the last checkpoint is fatal and
stops signing until an operator looks.
"""

from __future__ import annotations

import asyncio
import logging
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from keys.errors import VerificationError
from notary.checkpoint import Checkpoint, sign_checkpoint
from notary.errors import SequencerError
from notary.evidence import statement
from notary.merkle import (
    Hash,
    HashReader,
    leaf_hash,
    prove_consistency,
    prove_inclusion_many,
    stored_hash_count,
    stored_hashes_for_batch,
    tree_hash,
    verify_consistency,
)
from notary.note import Signer
from notary.receipt import Receipt
from notary.sequencer_loop import group_commit
from notary.storage import LogStore, NewEntry, StaleTree, StoredCheckpoint
from notary.tlogproof import TlogProof

log = logging.getLogger("certmail.notary.sequencer")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


class Stamper(Protocol):
    """What the sequencer needs of the RFC 3161 TSA."""

    def stamp(
        self, digest: bytes, hash_name: str = "sha256", *, cert_req: bool = True
    ) -> bytes: ...


@dataclass(frozen=True)
class Submission:
    """One piece of evidence to log. ``timestamp`` asks for an RFC 3161 token."""

    event: str
    sha256: str
    message_id: str
    account_id: int | None
    extra: Mapping[str, Any] = field(default_factory=dict)
    timestamp: bool = False


@dataclass(frozen=True)
class Prepared:
    """A batch's work that does not depend on the tree (:meth:`Sequencer.prepare`)."""

    time: datetime
    items: list[Submission]
    tsts: list[bytes | None]
    entries: list[bytes]
    leaves: list[Hash]

    def joined(self, more: Prepared) -> Prepared:
        """This batch with ``more`` (prepared at the same time) after it."""
        return Prepared(
            self.time,
            self.items + more.items,
            self.tsts + more.tsts,
            self.entries + more.entries,
            self.leaves + more.leaves,
        )


@dataclass
class Metrics:
    """Counters the HTTP API exposes in Prometheus format."""

    entries: int = 0
    tree_size: int = 0
    batches: int = 0
    batch_size_sum: int = 0
    batch_size_buckets: dict[int, int] = field(
        default_factory=lambda: dict.fromkeys((1, 4, 16, 64, 256, 1024, 4096, 16384), 0)
    )
    commit_seconds_sum: float = 0.0
    commit_seconds_buckets: dict[float, int] = field(
        default_factory=lambda: dict.fromkeys((0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0), 0)
    )
    failed_batches: int = 0
    forwarded: int = 0

    def forward(self, size: int) -> None:
        """``size`` submissions were sent to the worker that sequences (notary.sequencer_share)."""
        self.forwarded += size

    def batch_failed(self) -> None:
        """One batch failed to commit (the sequencer calls this once per failure)."""
        self.failed_batches += 1

    def observe(self, size: int, seconds: float, tree_size: int) -> None:
        self.entries += size
        self.tree_size = tree_size
        self.batches += 1
        self.batch_size_sum += size
        for b in self.batch_size_buckets:
            if size <= b:
                self.batch_size_buckets[b] += 1
        self.commit_seconds_sum += seconds
        for s in self.commit_seconds_buckets:
            if seconds <= s:
                self.commit_seconds_buckets[s] += 1


class _Layered:
    """A HashReader over hashes made in memory, then ``committed``, then storage.

    ``committed`` holds stored hashes already durable in the log (a stored
    hash never changes once committed, whichever process wrote it), so the
    next batch reads the tree's right edge from memory, not the database.
    """

    def __init__(self, backing: HashReader, committed: dict[int, Hash]) -> None:
        self.backing = backing
        self.committed = committed
        self.mem: dict[int, Hash] = {}

    def add(self, start: int, hashes: Sequence[Hash]) -> None:
        self.mem.update(zip(range(start, start + len(hashes)), hashes, strict=True))

    def read_hashes(self, indexes: Sequence[int]) -> list[Hash]:
        mem, committed = self.mem, self.committed
        missing = [i for i in indexes if i not in mem and i not in committed]
        if missing:
            self.add_many(missing, self.backing.read_hashes(missing))
        return [mem[i] if i in mem else committed[i] for i in indexes]

    def add_many(self, indexes: Sequence[int], hashes: Sequence[Hash]) -> None:
        self.mem.update(zip(indexes, hashes, strict=True))


#: Most committed stored hashes the sequencer keeps between batches.
COMMITTED_HASHES = 1 << 16


class Sequencer:
    """Appends submissions to the log in batches; see the module docstring."""

    def __init__(
        self,
        storage: LogStore,
        signer: Signer,
        *,
        tsa: Stamper | None = None,
        clock: Clock = utc_now,
        max_batch: int = 16384,
        metrics: Metrics | None = None,
    ) -> None:
        self.storage = storage
        self.signer = signer
        self.origin = signer.name
        self.tsa = tsa
        self.clock = clock
        self.max_batch = max_batch
        self.metrics = metrics or Metrics()
        self.fatal: SequencerError | None = None
        self._pending: list[tuple[list[Submission], asyncio.Future[list[Receipt]]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._committed: dict[int, Hash] = {}
        self._listeners: list[Callable[[int], None]] = []

    def on_commit(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call ``listener(size)`` after each batch this sequencer commits, with the log's
        new size, in the committing thread (so it must be quick and thread-safe, e.g.
        ``loop.call_soon_threadsafe``); what it raises is logged, never the batch's. Other
        processes' batches are not seen here (but a follower of
        :mod:`notary.sequencer_share` hears the leader's, on its event loop). Returns the
        function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _committed_to(self, size: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(size)
            except Exception:  # a listener's failure is not the batch's
                log.exception("a commit listener failed")

    # --- the synchronous core ------------------------------------------------
    def commit_batch(
        self, items: Sequence[Submission], *, sign_empty: bool = False
    ) -> list[Receipt]:
        """Log ``items`` as one batch, durably, and return their receipts in order.

        With no items nothing happens, unless ``sign_empty`` asks for the first
        checkpoint of an empty log.
        """
        if self.fatal is not None:
            raise self.fatal
        if not items and not sign_empty:
            return []
        started = _time.perf_counter()
        return self.commit_prepared(self.prepare(items), sign_empty=sign_empty, started=started)

    def prepare(self, items: Sequence[Submission], time: datetime | None = None) -> Prepared:
        """The part of a batch that does not depend on the tree: ``items``' RFC 3161
        tokens, statements at ``time`` (else the clock's) and leaf hashes. Nothing is
        written; :meth:`commit_prepared` commits it (notary.sequencer_loop makes the next
        batch's while one commits)."""
        now = self.clock() if time is None else time
        if now.tzinfo is None:
            raise SequencerError("the clock returned a naive datetime")
        tsts = self._stamp(items)
        entries = self._statements(items, now)
        return Prepared(now, list(items), tsts, entries, [leaf_hash(e) for e in entries])

    def commit_rest(self, prepared: Prepared | None, rest: Sequence[Submission]) -> list[Receipt]:
        """:meth:`commit_prepared` of ``prepared`` with ``rest`` prepared and added (at
        its time)."""
        if rest:
            more = self.prepare(rest, None if prepared is None else prepared.time)
            prepared = more if prepared is None else prepared.joined(more)
        if prepared is None or not prepared.items:
            return []  # only empty submissions: nothing to log
        return self.commit_prepared(prepared)

    def _statements(self, items: Sequence[Submission], now: datetime) -> list[bytes]:
        return [
            statement(
                s.event,
                time=now,
                notary=self.origin,
                sha256=s.sha256,
                message_id=s.message_id,
                **s.extra,
            )
            for s in items
        ]

    def commit_prepared(
        self, prepared: Prepared, *, sign_empty: bool = False, started: float | None = None
    ) -> list[Receipt]:
        """Commit a batch :meth:`prepare` made, durably; its receipts in order. Its time
        must be after the last checkpoint's as read under the lock (another writer's
        may be later): if not, its statements are made again at the clock's time."""
        if self.fatal is not None:
            raise self.fatal
        started = _time.perf_counter() if started is None else started
        try:
            done = self._sequence(prepared, sign_empty)
        except StaleTree:
            # The batch started from the tree this process last committed, and another
            # writer has appended since: it wrote nothing. Again, on the tree read now.
            done = self._sequence(prepared, sign_empty)
        if done is None:
            return []
        size, new_size, prepared, note, reader = done
        # Committed: every hash the proofs need is in memory or in storage, and
        # what this batch wrote or read is durable, so later batches may reuse it.
        reader.backing = self.storage
        self._remember(reader.mem)
        proofs = prove_inclusion_many(new_size, range(size, new_size), reader)
        receipts = [
            Receipt(e, TlogProof(size + i, tuple(p), note), t)
            for i, (e, t, p) in enumerate(zip(prepared.entries, prepared.tsts, proofs, strict=True))
        ]
        self.metrics.observe(len(prepared.items), _time.perf_counter() - started, new_size)
        self._committed_to(new_size)
        return receipts

    def _sequence(
        self, prepared: Prepared, sign_empty: bool
    ) -> tuple[int, int, Prepared, bytes, _Layered] | None:
        """One storage transaction of :meth:`commit_prepared`: (old size, new size, the
        batch as committed, the signed note, the hashes read and made), or None
        (``sign_empty`` with a checkpoint already there)."""
        items = prepared.items
        with self.storage.sequence() as tx:
            size = tx.tree_size()
            last = tx.latest_checkpoint()
            last_size = last.size if last else 0
            if sign_empty and last is not None:
                return None
            if last_size != size:
                self._fail(
                    f"the log holds {size} entries but its last checkpoint covers {last_size}"
                )
            # The batch's time is checked against the tree as it is under the lock (or as
            # the guard of the transaction checks it is there), so batches from several
            # processes are ordered by it too.
            if last is not None and prepared.time <= last.time:
                now = self._signing_time(last)
                entries = self._statements(items, now)
                prepared = Prepared(
                    now, items, prepared.tsts, entries, [leaf_hash(e) for e in entries]
                )
            reader = _Layered(tx, self._committed)
            hash_start = stored_hash_count(size)
            new_hashes = stored_hashes_for_batch(size, prepared.leaves, reader)
            reader.add(hash_start, new_hashes)
            new_size = size + len(items)
            root = tree_hash(new_size, reader)
            if last is not None and last.size > 0:
                self._check_consistent(last, new_size, root, reader)
            note = sign_checkpoint(Checkpoint(self.origin, new_size, root), self.signer)
            tx.append(
                size,
                [
                    NewEntry(s.account_id, s.sha256, s.message_id, s.event, e, t)
                    for s, e, t in zip(items, prepared.entries, prepared.tsts, strict=True)
                ],
                new_hashes,
                hash_start,
                StoredCheckpoint(new_size, root, prepared.time, note),
            )
        return size, new_size, prepared, note, reader

    def _stamp(self, items: Sequence[Submission]) -> list[bytes | None]:
        """An RFC 3161 token for each item that asks for one (else None)."""
        # The log's tokens carry no certificates (RFC 3161 certReq false): the chain is
        # served once (GET /v1/tsa/chain) and is in every proof bundle (tsa-chain.pem).
        return [
            self.tsa.stamp(bytes.fromhex(s.sha256), cert_req=False)
            if (s.timestamp and self.tsa)
            else None
            for s in items
        ]

    def _signing_time(self, last: StoredCheckpoint | None) -> datetime:
        """The clock's time for the next checkpoint; it must be aware and after ``last``."""
        now = self.clock()
        if now.tzinfo is None:
            raise SequencerError("the clock returned a naive datetime")
        if last is not None and now <= last.time:
            raise SequencerError(
                f"refusing to sign: time did not move forward ({now.isoformat()} is not"
                f" after the last checkpoint's {last.time.isoformat()})"
            )
        return now

    def _remember(self, hashes: dict[int, Hash]) -> None:
        committed = self._committed
        committed.update(hashes)
        if len(committed) > COMMITTED_HASHES:  # keep the newest half (insertion order)
            for i in list(committed)[: len(committed) // 2]:
                del committed[i]

    def _check_consistent(
        self, last: StoredCheckpoint, new_size: int, root: bytes, reader: _Layered
    ) -> None:
        try:
            old_root = tree_hash(last.size, reader)
            if old_root != last.root_hash:
                raise VerificationError("stored hashes do not give the last checkpoint's root")
            proof = prove_consistency(last.size, new_size, reader)
            verify_consistency(last.size, new_size, proof, last.root_hash, root)
        except VerificationError as e:
            self._fail(f"new tree is not consistent with the last checkpoint: {e.message}")

    def _fail(self, why: str) -> None:
        self.fatal = SequencerError(
            f"refusing to sign: {why}",
            hint="the log is damaged or was changed behind the notary's back; stop and investigate",
        )
        log.critical("sequencer stopped: %s", why)
        raise self.fatal

    # --- the asyncio group commit ----------------------------------------------
    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="sequencer")

    async def stop(self) -> None:
        """Finish the batch in flight, fail what is still pending, stop the loop."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(SequencerError("the notary is shutting down"))
        self._pending.clear()
        self._wake = None  # a later submit is refused, never left waiting

    def enqueue(self, items: Sequence[Submission]) -> asyncio.Future[list[Receipt]]:
        """Queue ``items`` for the next batch (on the loop's thread); the future gets
        their receipts once committed, or the batch's error."""
        if self._wake is None:
            raise SequencerError("the sequencer is not running")
        fut: asyncio.Future[list[Receipt]] = asyncio.get_running_loop().create_future()
        self._pending.append((list(items), fut))
        self._wake.set()
        return fut

    async def submit(self, items: Sequence[Submission]) -> list[Receipt]:
        """Queue ``items`` for the next batch; return their receipts once committed."""
        return await self.enqueue(items)

    #: Whether a finished batch's waiters are answered before :meth:`_gather` (which may
    #: wait for them to send more) and the next batch is started by the event loop after
    #: both, not chained in the committing thread as soon as a commit returns
    #: (notary.sequencer_loop).
    answer_before_gather = False

    async def _gather(self) -> None:
        """Before each batch: start it at once (a subclass may wait a moment for more)."""

    async def _run(self) -> None:
        assert self._wake is not None
        await group_commit(self, self._wake)

"""Group commit for the spool and the delivery queue.

Callers hand over spool items, releases, discards and delivery outcomes; one
background task applies everything pending as one :class:`QueueWrite`, in one
durable transaction (one fsync), and wakes the callers that wait for it. Like
the sequencer: a failed transaction fails exactly the callers of that batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from notary.errors import StorageError
from notary.storage import DeliveryUpdate, QueueStore, QueueWrite, SpoolItem

log = logging.getLogger("certmail.notary.relay")

_Op = tuple[str, object, "asyncio.Future[int | None] | None"]


class QueueWriter:
    """Batches queue changes into one transaction (see the module docstring)."""

    def __init__(self, storage: QueueStore, *, max_batch: int = 1024) -> None:
        self.storage = storage
        self.max_batch = max_batch
        self._pending: list[_Op] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        #: Called after a batch that released messages commits (the worker's wake).
        self.on_release: Callable[[], None] | None = None

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="relay-queue-writer")

    async def stop(self) -> None:
        """Apply what is pending, then stop."""
        if self._task is None:
            return
        while self._pending:
            await asyncio.sleep(0.01)
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    def _put(self, kind: str, value: object, wait: bool) -> asyncio.Future[int | None] | None:
        if self._wake is None:
            raise StorageError("the relay's queue writer is not running")
        fut: asyncio.Future[int | None] | None = (
            asyncio.get_running_loop().create_future() if wait else None
        )
        self._pending.append((kind, value, fut))
        self._wake.set()
        return fut

    async def spool(self, item: SpoolItem) -> int:
        """Spool a message durably; its id once committed."""
        fut = self._put("spool", item, True)
        assert fut is not None
        sid = await fut
        assert sid is not None
        return sid

    async def release(self, spool_id: int) -> None:
        """Queue a held message's deliveries (its acceptance is logged); wait for the commit."""
        fut = self._put("release", spool_id, True)
        assert fut is not None
        await fut

    def release_soon(self, spool_id: int) -> None:
        """Like :meth:`release` without waiting (recovery covers a crash before it commits)."""
        self._put("release", spool_id, False)

    async def discard(self, spool_id: int) -> None:
        fut = self._put("discard", spool_id, True)
        assert fut is not None
        await fut

    async def update(self, update: DeliveryUpdate) -> None:
        fut = self._put("update", update, True)
        assert fut is not None
        await fut

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                write = QueueWrite()
                for kind, value, _ in batch:
                    if kind == "spool":
                        assert isinstance(value, SpoolItem)
                        write.spool.append(value)
                    elif kind == "release":
                        assert isinstance(value, int)
                        write.release.append(value)
                    elif kind == "discard":
                        assert isinstance(value, int)
                        write.discard.append(value)
                    else:
                        assert isinstance(value, DeliveryUpdate)
                        write.updates.append(value)
                try:
                    ids = await asyncio.to_thread(self.storage.queue_write, write)
                except Exception as e:
                    log.error("queue write of %d changes failed: %s", len(batch), e)
                    err = e if isinstance(e, StorageError) else StorageError(str(e))
                    for _, _, fut in batch:
                        if fut is not None and not fut.done():
                            fut.set_exception(err)
                    continue
                self.batches += 1
                if write.release and self.on_release is not None:
                    self.on_release()
                it = iter(ids)
                for kind, _, fut in batch:
                    value = next(it) if kind == "spool" else None
                    if fut is not None and not fut.done():
                        fut.set_result(value)

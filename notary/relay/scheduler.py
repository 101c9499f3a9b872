"""Which deliveries run when: claims, concurrency per destination, leases (DESIGN §5).

The scheduler claims due deliveries from the shared queue (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, with a lease so several serve processes share it) and
runs at most ``concurrency`` attempts at once, at most ``per_destination`` per
recipient domain: a claimed delivery whose domain is busy is handed back (due
again after ``postpone`` seconds, no attempt counted) instead of taking a
slot, so one slow domain never holds every slot and the others go on. While an
attempt runs its lease is renewed every third of the lease time, so a slow
attempt is never taken over by another node while it is still going. What an
attempt does is the worker's (:mod:`notary.relay.worker`).

Dead destinations (Postfix's rule): when an attempt to a destination gets no
reply at all (no host would connect, the greeting never came, the attempt's
deadline cut it off) the worker marks the destination dead for a backoff
(``retry_initial``, doubled after each failed probe up to ``retry_max``).
Until then its claimed deliveries are not tried: each is deferred at once,
"delivery temporarily suspended: <the reason>", due again when the backoff
ends (an attempt counted, the delivery's deadline and delay notice as for any
deferral). After it, one delivery at a time is tried (the probe; the others
are handed back as for a busy destination); a failed probe marks it dead
again, any reply from a server (2xx, 4xx or 5xx) clears the mark. The mark is
per serve process, in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from notary.relay.settings import WorkerSettings
from notary.storage import Delivery, QueueStore

log = logging.getLogger("certmail.notary.relay")


def destination(d: Delivery) -> str:
    """The destination whose concurrency is limited: the recipient's domain."""
    return d.recipient.rpartition("@")[2].lower()


@dataclass
class Dead:
    """A destination that answered nothing: deliveries wait until ``until``."""

    why: str
    until: datetime
    backoff: float
    #: The delivery trying the destination again after the backoff, while it runs.
    probe: int | None = None


class Scheduler:
    """Runs ``attempt(delivery)`` for due deliveries within the bounds above."""

    def __init__(
        self,
        storage: QueueStore,
        settings: WorkerSettings,
        clock: Callable[[], datetime],
        attempt: Callable[[Delivery], Awaitable[None]],
        suspend: Callable[[Delivery, str, datetime], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.storage = storage
        self.s = settings
        self.clock = clock
        self.attempt = attempt
        #: ``suspend(delivery, why, until)`` defers a delivery to a dead destination; an
        #: ``async def``, whose call the scheduler runs as a task.
        self.suspend = suspend
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        #: Deliveries with an attempt in flight (their leases are renewed).
        self.inflight: set[int] = set()
        #: Attempts in flight per destination (:func:`destination`).
        self.busy: dict[str, int] = {}
        #: Destinations that answered nothing, until their backoff ends (:class:`Dead`).
        self.dead: dict[str, Dead] = {}

    async def start(self) -> None:
        self._wake = asyncio.Event()
        released = await asyncio.to_thread(self.storage.release_leases, self.s.node)
        if released:
            log.info("took back %d deliveries this node had leased before it stopped", released)
        self._task = asyncio.create_task(self._run(), name="relay-delivery")
        self._renewer = asyncio.create_task(self._renew(), name="relay-lease-renewal")

    async def stop(self) -> None:
        for attr in ("_task", "_renewer"):
            task = getattr(self, attr)
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                setattr(self, attr, None)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _claim(self, free: int) -> list[Delivery]:
        now = self.clock()
        try:
            return await asyncio.to_thread(
                self.storage.claim_deliveries,
                self.s.node,
                now,
                now + timedelta(seconds=self.s.lease),
                free,
            )
        except Exception as e:
            log.error("cannot claim deliveries: %s", e)
            return []

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            free = self.s.concurrency - len(self._tasks)
            claimed = await self._claim(free) if free > 0 else []
            later: list[int] = []
            for d in claimed:
                dest = destination(d)
                what = self._verdict(d, dest)
                if what == "busy":
                    later.append(d.id)
                    continue
                if what == "suspend":
                    dead = self.dead[dest]
                    assert self.suspend is not None  # _verdict suspends only with one
                    job = self.suspend(d, dead.why, dead.until)
                else:
                    self.busy[dest] = self.busy.get(dest, 0) + 1
                    job = self._one(d, dest)
                t = asyncio.create_task(job, name=f"deliver-{d.id}")
                self._tasks.add(t)
                t.add_done_callback(self._done)
            if later:  # their destination is busy: give them back, not a slot each
                await self._postpone(later)
            if len(claimed) >= free > 0:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.s.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await asyncio.sleep(0.003)  # gather a few more before the next claim

    def _verdict(self, d: Delivery, dest: str) -> str:
        """``run`` it, give it back (``busy``) or ``suspend`` it (its destination is dead)."""
        if d.settled is not None:
            return "run"
        dead = self.dead.get(dest)
        if dead is not None and self.suspend is not None and self.clock() < dead.until:
            return "suspend"
        if self.busy.get(dest, 0) >= self.s.per_destination:
            return "busy"
        if dead is not None:
            if dead.probe is not None:
                return "busy"  # one attempt at a time while it is being tried again
            dead.probe = d.id
        return "run"

    def unreachable(self, d: Delivery, why: str) -> None:
        """An attempt to ``d``'s destination got no reply: mark it dead (or keep it so)."""
        dest, now = destination(d), self.clock()
        dead = self.dead.get(dest)
        if dead is None:
            backoff = self.s.retry_initial
            self.dead[dest] = Dead(why, now + timedelta(seconds=backoff), backoff)
            log.info(
                "destination %s is not answering (%s): deliveries wait %g s", dest, why, backoff
            )
            return
        dead.why = why
        if dead.probe == d.id:  # the probe failed: back off longer
            dead.backoff = min(dead.backoff * 2, self.s.retry_max)
            dead.probe = None
        dead.until = max(dead.until, now + timedelta(seconds=dead.backoff))

    def reachable(self, d: Delivery) -> None:
        """A server of ``d``'s destination replied: it is not dead (any more)."""
        if self.dead.pop(destination(d), None) is not None:
            log.info("destination %s answers again", destination(d))

    async def _one(self, d: Delivery, dest: str) -> None:
        self.inflight.add(d.id)
        try:
            await self.attempt(d)
        finally:
            self.inflight.discard(d.id)
            self.busy[dest] -= 1
            if self.busy[dest] <= 0:
                del self.busy[dest]
            dead = self.dead.get(dest)
            if dead is not None and dead.probe == d.id:  # ended without a verdict
                dead.probe = None

    async def _postpone(self, ids: list[int]) -> None:
        until = self.clock() + timedelta(seconds=self.s.postpone)
        try:
            await asyncio.to_thread(self.storage.postpone_deliveries, self.s.node, ids, until)
        except Exception as e:  # their leases expire instead
            log.error("cannot postpone %d deliveries: %s", len(ids), e)

    async def _renew(self) -> None:
        """Every third of the lease, extend the leases of the attempts in flight."""
        while True:
            await asyncio.sleep(self.s.lease / 3)
            ids = sorted(self.inflight)
            if not ids:
                continue
            until = self.clock() + timedelta(seconds=self.s.lease)
            try:
                held = await asyncio.to_thread(self.storage.renew_leases, self.s.node, ids, until)
            except Exception as e:
                log.error("cannot renew the leases of %d deliveries: %s", len(ids), e)
                continue
            if held < len(ids):
                log.debug("renewed %d of %d leases (the others just finished)", held, len(ids))

    def _done(self, t: asyncio.Task[None]) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("delivery task failed: %r", t.exception())
        self.wake()

"""The delivery worker: hands spooled messages to recipients' servers and logs what they said.

Only headers are prepended (Received, the evidence header and, when the relay
has a DKIM key, a DKIM-Signature); the submitted bytes follow unchanged. Its
parts: :mod:`notary.relay.scheduler` decides which deliveries run when
(claims, leases, at most ``per_destination`` attempts per recipient domain, so
one slow domain never holds every slot); :mod:`notary.relay.attempt` makes one
attempt (route, hosts in turn, what the replies mean); this module runs it
under a hard deadline (``asyncio.timeout`` over routing, connecting, the
greeting and the transaction) and records what came of it:

- ``RelayToNonERDS`` or ``RelayToNonERDSFailure``: recorded, logged, settled;
- a 4xx reply or no connection: retry with exponential backoff; past the
  deadline ``RelayToNonERDSFailure`` (reason ``deadline``); past the warning
  time the sender gets one delay notice (:mod:`notary.relay.notifying`); no reply
  from any server also marks the destination dead for a while, and its other
  deliveries are deferred untried meanwhile (the scheduler's dead destinations).

The intent of each attempt is committed before it starts and its final
outcome before it is logged (one per delivery, a unique key); a delivery claimed
again after a crash is settled from a recorded outcome without being sent again.
Only a crash between the next hop's commit on the final dot and the recording of
its reply makes a second copy (docs/relay.md, "Crashes"); nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from keys.errors import Error
from notary.receipt import Receipt
from notary.relay import mx
from notary.relay.attempt import Outcome, queue_id, send_attempt
from notary.relay.budget import ByteBudget
from notary.relay.notifying import queue_delay_notice, queue_receipt_email
from notary.relay.scheduler import Scheduler, destination
from notary.relay.settings import WorkerSettings
from notary.relay.smtp_client import Pool
from notary.relay.writer import QueueWriter
from notary.sequencer import Submission
from notary.storage import AccountStore, Delivery, DeliveryUpdate, QueueStore

__all__ = ["EVIDENCE_HEADER", "DeliveryWorker", "WorkerSettings", "destination"]

if TYPE_CHECKING:
    from notary.service import NotaryService

log = logging.getLogger("certmail.notary.relay")

EVIDENCE_HEADER = "Certmail-Evidence"


class DeliveryWorker:
    """Claims due deliveries and runs them concurrently (see the module docstring)."""

    def __init__(
        self,
        service: NotaryService,
        writer: QueueWriter,
        settings: WorkerSettings,
        *,
        dkim_sign: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.service = service
        self.storage: QueueStore = service.storage
        self.accounts: AccountStore = service.storage
        self.writer = writer
        self.s = settings
        self.clock = service.clock
        self.dkim_sign = dkim_sign
        self.resolver = mx.make_resolver(settings.dns_server)
        self._cache: dict[int, list[Any]] = {}
        self.budget = ByteBudget(settings.memory_budget)
        self.pool = Pool()
        self.scheduler = Scheduler(
            self.storage, settings, self.clock, self._attempt, self._suspended
        )
        self.delivered = 0
        self.failed = 0
        self.deferred = 0

    # --- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        await self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        await self.pool.close()

    def wake(self) -> None:
        self.scheduler.wake()

    def cache(self, spool_id: int, data: bytes, recipients: int) -> None:
        """Keep a just-spooled message's bytes for its first delivery attempts."""
        self._cache[spool_id] = [data, recipients]

    def uncache(self, spool_id: int) -> None:
        self._cache.pop(spool_id, None)

    def _data(self, d: Delivery) -> bytes | None:
        entry = self._cache.get(d.spool_id)
        if entry is None:
            return None
        entry[1] -= 1
        if entry[1] <= 0:
            del self._cache[d.spool_id]
        data: bytes = entry[0]
        return data

    # --- one delivery --------------------------------------------------------------
    def headers(self, d: Delivery, data: bytes) -> bytes:
        """The header lines prepended to the submitted bytes for this recipient."""
        received = (
            f"Received: by {self.s.helo} (certmail notary relay) with ESMTPSA id {d.spool_id}\r\n"
            f"\tfor <{d.recipient}>; {format_datetime(d.received)}\r\n"
        )
        evidence = (
            f"{EVIDENCE_HEADER}: sha256={d.sha256}; notary={self.service.origin}\r\n"
            if d.kind == "message"
            else ""
        )
        dkim = self.dkim_sign(data) if self.dkim_sign is not None else b""
        return received.encode("utf-8") + evidence.encode("utf-8") + dkim

    async def _attempt(self, d: Delivery) -> None:
        if d.settled is not None:
            await self._settle(d, *d.settled)
        else:
            await self._deliver(d)

    async def _deliver(self, d: Delivery) -> None:
        data = self._data(d)
        if data is not None:
            await self._deliver_bytes(d, data)
            return
        size = await asyncio.to_thread(self.storage.spooled_size, d.spool_id)
        # A large message's bytes (and the copies made to send them) count against
        # the budget from the moment they are read back until the attempt ends.
        async with self.budget.hold(size or 0):
            if size is not None:
                data = await asyncio.to_thread(self.storage.spooled_data, d.spool_id)
            if data is None:
                log.error("spooled message %d is missing; delivery %d fails", d.spool_id, d.id)
                await self._final(
                    d,
                    "RelayToNonERDSFailure",
                    {"recipient": d.recipient, "reason": "spool-missing", "reply": None},
                )
                return
            await self._deliver_bytes(d, data)

    async def _deliver_bytes(self, d: Delivery, data: bytes) -> None:
        try:
            prefix = (
                await asyncio.to_thread(self.headers, d, data)
                if self.dkim_sign
                else (self.headers(d, data))
            )
        except Error as e:  # e.g. DKIM signing failed: deliver unsigned rather than never
            log.error("cannot sign message %s: %s", d.sha256, e.message)
            self.dkim_sign = None
            prefix = self.headers(d, data)
        # The intent is durable before anything is sent (reconciled after a crash).
        attempt = await asyncio.to_thread(
            self.storage.start_attempt, d.id, d.recipient, self.s.node, self.clock()
        )
        try:
            async with asyncio.timeout(self.s.attempt_deadline):
                out = await send_attempt(self.pool, self.resolver, self.s, d, prefix, data)
        except TimeoutError:
            out = Outcome(why=f"attempt deadline ({self.s.attempt_deadline:g} s) exceeded")
        del data
        if out.event is None and out.reply is None:  # no server said anything
            self.scheduler.unreachable(d, out.why)
        elif out.reply is not None or out.extra.get("reply") is not None:
            self.scheduler.reachable(d)
        if out.event is None:
            await self._retry(d, out.why, out.reply, attempt=attempt)
        else:
            await self._final(d, out.event, out.extra, attempt=attempt)

    async def _settle(self, d: Delivery, event: str, evidence: str) -> None:
        """Finish a delivery whose final outcome an earlier attempt recorded (then died):
        log its evidence unless the log already has it; never send it again."""
        entries = await asyncio.to_thread(self.service.storage.entries_for_message, d.sha256)
        logged = any(
            e.event == event
            and e.account_id == d.account_id
            and json.loads(e.entry).get("recipient") == d.recipient
            for e in entries
        )
        log.info(
            "delivery %d (%s to %s) had its outcome recorded before a restart: %s%s",
            d.id,
            d.sha256,
            d.recipient,
            event,
            " (already logged)" if logged else "",
        )
        await self._final(d, event, json.loads(evidence), recorded=True, logged=logged)

    async def _log(self, d: Delivery, event: str, extra: dict[str, Any]) -> Receipt | None:
        """Log the evidence, retrying while the log is unavailable (within the lease)."""
        if d.kind != "message":
            return None
        delay = 0.5
        deadline = asyncio.get_running_loop().time() + self.s.lease * 0.8
        while True:
            try:
                receipts = await self.service.sequencer.submit(
                    [Submission(event, d.sha256, d.message_id, d.account_id, extra)]
                )
                return receipts[0] if receipts else None
            except Exception as e:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("cannot log %s for delivery %d yet: %s", event, d.id, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _final(
        self,
        d: Delivery,
        event: str,
        extra: dict[str, Any],
        *,
        attempt: int | None = None,
        recorded: bool = False,
        logged: bool = False,
    ) -> None:
        """Record the outcome durably (one per delivery), log it, then settle the delivery."""
        now = self.clock()
        reply = extra.get("reply")
        if not recorded:
            if attempt is None:
                attempt = await asyncio.to_thread(
                    self.storage.start_attempt, d.id, d.recipient, self.s.node, now
                )
            qid = queue_id(reply) if event == "RelayToNonERDS" else None
            first = await asyncio.to_thread(
                self.storage.record_final, attempt, event, json.dumps(extra), reply, qid, now
            )
            if not first:  # another attempt recorded (and logs) this delivery's outcome
                log.warning("delivery %d already has an outcome; not logging %s again", d.id, event)
                logged = True
        receipt = None if logged else await self._log(d, event, extra)
        delivered = event == "RelayToNonERDS"
        await self.writer.update(
            DeliveryUpdate(
                d.id,
                "delivered" if delivered else "failed",
                error=None if delivered else str(extra.get("reason")),
                warned=d.warned,
                node=self.s.node,
                reply=reply if isinstance(reply, dict) else None,
                attempted=now,
            )
        )
        if delivered:
            self.delivered += 1
        else:
            self.failed += 1
            log.info("delivery of %s to %s failed: %s", d.sha256, d.recipient, extra)
        if receipt is not None and d.account_id is not None:
            try:
                await queue_receipt_email(self, d, event, receipt, extra)
            except Exception as e:  # the evidence stands; the email is a convenience
                log.error("cannot send the %s receipt email for %s: %s", event, d.sha256, e)

    async def _suspended(self, d: Delivery, why: str, until: datetime) -> None:
        """Defer ``d`` without trying: its destination is dead until ``until`` (scheduler)."""
        await self._retry(d, f"delivery temporarily suspended: {why}", at=until)

    async def _retry(
        self,
        d: Delivery,
        why: str,
        reply: dict[str, Any] | None = None,
        *,
        attempt: int | None = None,
        at: datetime | None = None,
    ) -> None:
        now = self.clock()
        age = (now - d.received).total_seconds()
        last_reply = reply or d.last_reply
        if age >= self.s.deadline:
            await self._final(
                d,
                "RelayToNonERDSFailure",
                {
                    "recipient": d.recipient,
                    "reason": "deadline",
                    "detail": f"not delivered within {int(self.s.deadline)} s; last: {why}"[:2000],
                    "reply": last_reply,
                    "attempts": d.attempts + 1,
                },
                attempt=attempt,
            )
            return
        delay = min(self.s.retry_initial * (2 ** min(d.attempts, 30)), self.s.retry_max)
        until = d.received + timedelta(seconds=self.s.deadline)
        next_attempt = min(at or now + timedelta(seconds=delay), until)
        warned = d.warned
        if not warned and age >= self.s.warn_after and d.kind == "message":
            await queue_delay_notice(self, d, why, last_reply, now, until)
            warned = True
        self.deferred += 1
        log.info("delivery of %s to %s deferred: %s", d.sha256, d.recipient, why)
        await self.writer.update(
            DeliveryUpdate(
                d.id,
                "queued",
                next_attempt=next_attempt,
                error=why[:2000],
                warned=warned,
                node=self.s.node,
                reply=reply,
                attempted=now,
            )
        )

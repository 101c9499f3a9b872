"""The delivery worker: hands spooled messages to recipients' servers and logs what they said.

Per recipient: the smarthost when one is set, else the domain's MX hosts
(:mod:`notary.relay.mx`). Only headers are prepended (Received, the evidence
header and, when the relay has a DKIM key, a DKIM-Signature); the submitted
bytes follow unchanged. Outcomes (ETSI EN 319 522 events, docs/relay.md):

- 250 after DATA: ``RelayToNonERDS`` with the host, its full reply and TLS details;
- a 5xx reply, a domain without mail (null MX, NXDOMAIN): ``RelayToNonERDSFailure``;
- a 4xx reply or no connection: retry with exponential backoff; past the
  deadline ``RelayToNonERDSFailure`` (reason ``deadline``); past the warning
  time the sender gets one delay notice.

Each attempt has a hard deadline (``asyncio.timeout`` over routing, connecting,
the greeting and the transaction), and at most ``per_destination`` attempts run
per recipient domain: a claimed delivery whose domain is busy is handed back
(due again shortly, no attempt counted) so one slow domain never holds every slot.

Deliveries are claimed with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)
so several serve processes share the queue. While an attempt runs its lease is
renewed every third of the lease time, so a slow attempt (many MX hosts, a big
message over a slow link) is never taken over by another node while it is still
going. The intent of each attempt is committed before it starts and its final
outcome before it is logged (one per delivery, a unique key); a delivery claimed
again after a crash is settled from a recorded outcome without being sent again.
Only a crash between the next hop's commit on the final dot and the recording of
its reply makes a second copy (docs/relay.md, "Crashes"); nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from keys.errors import Error, TemporaryError
from notary.receipt import Receipt
from notary.relay import mx
from notary.relay.budget import ByteBudget
from notary.relay.smtp_client import Pool, SMTPConnectionError, SMTPRejected
from notary.relay.writer import QueueWriter
from notary.sequencer import Submission
from notary.storage import AccountStore, Delivery, DeliveryUpdate, QueueStore, SpoolItem

if TYPE_CHECKING:
    from notary.service import NotaryService

log = logging.getLogger("certmail.notary.relay")

EVIDENCE_HEADER = "Certmail-Evidence"


@dataclass
class WorkerSettings:
    """How the worker delivers and retries (seconds)."""

    node: str
    helo: str
    smarthost: tuple[str, int] | None = None
    mx_port: int = mx.SMTP_PORT
    dns_server: str = ""
    concurrency: int = 100
    #: Attempts in flight per destination (recipient domain), as Postfix's
    #: default_destination_concurrency_limit.
    per_destination: int = 20
    #: A hard limit on one attempt: routing, connecting, greeting, the transaction.
    attempt_deadline: float = 300.0
    #: A delivery whose destination is busy is due again after this long.
    postpone: float = 1.0
    poll_interval: float = 1.0
    lease: float = 600.0
    retry_initial: float = 60.0
    retry_max: float = 3600.0
    deadline: float = 24 * 3600.0
    warn_after: float = 12 * 3600.0
    #: Bytes of large messages (over 1 MiB) being delivered at once (notary.relay.budget).
    memory_budget: int = 50 * 1024 * 1024
    timeout: float = 60.0


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
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        #: Deliveries with an attempt in flight (their leases are renewed).
        self.inflight: set[int] = set()
        #: Attempts in flight per destination (:func:`destination`).
        self._busy: dict[str, int] = {}
        self.delivered = 0
        self.failed = 0
        self.deferred = 0

    # --- lifecycle -------------------------------------------------------------
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
        await self.pool.close()

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def cache(self, spool_id: int, data: bytes, recipients: int) -> None:
        """Keep a just-spooled message's bytes for its first delivery attempts."""
        self._cache[spool_id] = [data, recipients]

    def uncache(self, spool_id: int) -> None:
        self._cache.pop(spool_id, None)

    # --- the loop ----------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            free = self.s.concurrency - len(self._tasks)
            claimed: list[Delivery] = []
            if free > 0:
                now = self.clock()
                try:
                    claimed = await asyncio.to_thread(
                        self.storage.claim_deliveries,
                        self.s.node,
                        now,
                        now + timedelta(seconds=self.s.lease),
                        free,
                    )
                except Exception as e:
                    log.error("cannot claim deliveries: %s", e)
            later: list[int] = []
            for d in claimed:
                dest = destination(d)
                if self._busy.get(dest, 0) >= self.s.per_destination and d.settled is None:
                    later.append(d.id)
                    continue
                self._busy[dest] = self._busy.get(dest, 0) + 1
                t = asyncio.create_task(self._attempt(d), name=f"deliver-{d.id}")
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
        self.inflight.add(d.id)
        try:
            if d.settled is not None:
                await self._settle(d, *d.settled)
            else:
                await self._deliver(d)
        finally:
            self.inflight.discard(d.id)
            dest = destination(d)
            self._busy[dest] -= 1
            if self._busy[dest] <= 0:
                del self._busy[dest]

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
                out = await self._send(d, prefix, data)
        except TimeoutError:
            out = _Outcome(why=f"attempt deadline ({self.s.attempt_deadline:g} s) exceeded")
        del data
        if out.event is None:
            await self._retry(d, out.why, out.reply, attempt=attempt)
        else:
            await self._final(d, out.event, out.extra, attempt=attempt)

    async def _send(self, d: Delivery, prefix: bytes, data: bytes) -> _Outcome:
        """Route and try the hosts in turn (the part under the attempt's deadline)."""
        domain = d.recipient.rpartition("@")[2]
        try:
            if self.s.smarthost:
                hosts = [mx.MailHost(self.s.smarthost[0], self.s.smarthost[0], self.s.smarthost[1])]
            else:
                hosts = await mx.mail_hosts(domain, port=self.s.mx_port, resolver=self.resolver)
        except mx.PermanentRouteError as e:
            return _Outcome(
                "RelayToNonERDSFailure",
                {
                    "recipient": d.recipient,
                    "reason": "no-route",
                    "detail": e.message,
                    "reply": None,
                },
            )
        except TemporaryError as e:
            return _Outcome(why=e.message)
        last = _Outcome(why="no host to try")
        for mh in hosts:
            host, port = mh.host, mh.port
            try:
                sent = await self.pool.send(
                    mh.address,
                    port,
                    mail_from=d.mail_from,
                    recipient=d.recipient,
                    data=data,
                    prefix=prefix,
                    helo=self.s.helo,
                    timeout=self.s.timeout,
                )
            except SMTPConnectionError as e:
                last = _Outcome(why=e.message)
                continue
            except SMTPRejected as e:
                if e.permanent:
                    return _Outcome(
                        "RelayToNonERDSFailure",
                        {
                            "recipient": d.recipient,
                            "reason": "rejected",
                            "host": host,
                            "address": mh.address,
                            "port": port,
                            "stage": e.stage,
                            "reply": e.reply.to_json(),
                            "tls": e.tls.to_json() if e.tls else None,
                        },
                    )
                return _Outcome(
                    why=f"{host}[{mh.address}]:{port} {e.stage}: {e.reply.code} {e.reply.text}",
                    reply=e.reply.to_json(),
                )
            return _Outcome(
                "RelayToNonERDS",
                {
                    "recipient": d.recipient,
                    "host": host,
                    "address": mh.address,
                    "port": port,
                    "reply": sent.reply.to_json(),
                    "tls": sent.tls.to_json() if sent.tls else None,
                    "attempts": d.attempts + 1,
                },
            )
        return last

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
            queue_id = _queue_id(reply) if event == "RelayToNonERDS" else None
            first = await asyncio.to_thread(
                self.storage.record_final, attempt, event, json.dumps(extra), reply, queue_id, now
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
                await self._receipt_email(d, event, receipt, extra)
            except Exception as e:  # the evidence stands; the email is a convenience
                log.error("cannot send the %s receipt email for %s: %s", event, d.sha256, e)

    async def _spool_notice(self, to: str, msg: bytes, mid: str, sha: str, now: datetime) -> None:
        """Queue a notice the notary writes itself (a DSN) to ``to``."""
        await self.writer.spool(
            SpoolItem(
                sha, mid, None, "", (to,), msg, now, self.s.node, 0, kind="notice", held=False
            )
        )

    async def _receipt_email(
        self, d: Delivery, event: str, receipt: Receipt, extra: dict[str, Any]
    ) -> None:
        """Queue a receipt email to the sender when its account asked for them (for a
        failure: the failure DSN, with the receipt)."""
        from notary.relay.notices import RecipientStatus, receipt_email, status_code

        assert d.account_id is not None
        account = await asyncio.to_thread(self.accounts.account, d.account_id)
        if account is None or not account.receipt_emails:
            return
        now = self.clock()
        failure = None
        if event == "RelayToNonERDSFailure":
            reply = extra.get("reply") or d.last_reply
            default = _FAILURE_STATUS.get(str(extra.get("reason")), "5.0.0")
            status = status_code(reply, default) if extra.get("reason") == "rejected" else default
            failure = (d.received, RecipientStatus(d.recipient, "failed", status, reply, now))
        msg, mid, sha = receipt_email(
            self.s.helo,
            d.mail_from,
            event,
            d.sha256,
            d.message_id,
            receipt.to_json(),
            now,
            self.service.origin,
            recipient=d.recipient,
            failure=failure,
        )
        await self._spool_notice(d.mail_from, msg, mid, sha, now)

    async def _retry(
        self,
        d: Delivery,
        why: str,
        reply: dict[str, Any] | None = None,
        *,
        attempt: int | None = None,
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
        next_attempt = min(now + timedelta(seconds=delay), until)
        warned = d.warned
        if not warned and age >= self.s.warn_after and d.kind == "message":
            await self._notify_delay(d, why, last_reply, now, until)
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

    async def _notify_delay(
        self,
        d: Delivery,
        why: str,
        reply: dict[str, Any] | None,
        now: datetime,
        until: datetime,
    ) -> None:
        """Queue one delay notice (an RFC 3464 DSN, Action: delayed) to the sender."""
        from notary.relay.notices import RecipientStatus, delay_notice, status_code

        rs = RecipientStatus(d.recipient, "delayed", status_code(reply, "4.4.1"), reply, now, until)
        msg, mid, sha = delay_notice(self.s.helo, d, rs, now, self.service.origin, why)
        await self._spool_notice(d.mail_from, msg, mid, sha, now)


#: RFC 3463 status of a failure that no server reply states.
_FAILURE_STATUS = {"deadline": "5.4.7", "no-route": "5.1.2", "spool-missing": "5.3.0"}
_QUEUE_ID = re.compile(r"(?:queued as|id[= ])\s*<?([A-Za-z0-9._@-]+)>?", re.IGNORECASE)


def _queue_id(reply: Any) -> str | None:
    """The next hop's queue id from its 250 text ("2.0.0 Ok: queued as 4XyZ"), if it says one."""
    if not isinstance(reply, dict):
        return None
    m = _QUEUE_ID.search(str(reply.get("text", "")))
    return m.group(1)[:200] if m else None


def destination(d: Delivery) -> str:
    """The destination whose concurrency is limited: the recipient's domain."""
    return d.recipient.rpartition("@")[2].lower()


@dataclass(frozen=True)
class _Outcome:
    """What one attempt came to: a final event (with its evidence) or a reason to retry."""

    event: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    why: str = ""
    reply: dict[str, Any] | None = None

"""The notices the delivery worker queues: receipt emails, failure and delay DSNs (docs/relay.md).

They are built by :mod:`notary.relay.notices` (RFC 3464 DSNs, receipt emails)
and go through the same spool, queue and delivery as any message, as mail the
notary writes itself (``kind="notice"``: no evidence is logged for them).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

from notary.receipt import Receipt
from notary.relay.notices import RecipientStatus, delay_notice, receipt_email, status_code
from notary.storage import Delivery, SpoolItem

if TYPE_CHECKING:
    from notary.relay.worker import DeliveryWorker

#: RFC 3463 status of a failure that no server reply states.
FAILURE_STATUS = {"deadline": "5.4.7", "no-route": "5.1.2", "spool-missing": "5.3.0"}


async def spool_notice(
    w: DeliveryWorker, to: str, msg: bytes, mid: str, sha: str, now: datetime
) -> None:
    """Queue a notice the notary writes itself (a DSN) to ``to`` (none to the null
    reverse-path ``<>``: nobody to tell, RFC 5321 §4.5.5)."""
    if not to:
        return
    await w.writer.spool(
        SpoolItem(sha, mid, None, "", (to,), msg, now, w.s.node, 0, kind="notice", held=False)
    )


async def queue_receipt_email(
    w: DeliveryWorker, d: Delivery, event: str, receipt: Receipt, extra: dict[str, Any]
) -> None:
    """Queue the sender's mail about a logged outcome.

    A failure always bounces to the envelope sender (the message's MAIL FROM, as
    an MTA does; none for ``<>``): the failure DSN, with the receipt attached when
    the account asked for receipt emails. A delivery is mailed about only then.
    """
    assert d.account_id is not None
    failed = event == "RelayToNonERDSFailure"
    if not d.mail_from:
        return
    account = await asyncio.to_thread(w.accounts.account, d.account_id)
    wants = account is not None and account.receipt_emails
    if not (wants or failed):
        return
    now = w.clock()
    failure = None
    if failed:
        reply = extra.get("reply") or d.last_reply
        default = FAILURE_STATUS.get(str(extra.get("reason")), "5.0.0")
        status = status_code(reply, default) if extra.get("reason") == "rejected" else default
        failure = (d.received, RecipientStatus(d.recipient, "failed", status, reply, now))
    msg, mid, sha = receipt_email(
        w.s.helo,
        d.mail_from,
        event,
        d.sha256,
        d.message_id,
        receipt.to_json() if wants else None,
        now,
        w.service.origin,
        recipient=d.recipient,
        failure=failure,
    )
    await spool_notice(w, d.mail_from, msg, mid, sha, now)


async def queue_delay_notice(
    w: DeliveryWorker,
    d: Delivery,
    why: str,
    reply: dict[str, Any] | None,
    now: datetime,
    until: datetime,
) -> None:
    """Queue one delay notice (an RFC 3464 DSN, Action: delayed) to the sender."""
    rs = RecipientStatus(d.recipient, "delayed", status_code(reply, "4.4.1"), reply, now, until)
    msg, mid, sha = delay_notice(w.s.helo, d, rs, now, w.service.origin, why)
    await spool_notice(w, d.mail_from, msg, mid, sha, now)

"""The sender's notice when a sealed message expires unopened (docs/sealed.md, "Expiry").

When :meth:`notary.seals.Seals.sweep` has logged ``ContentHandoverFailure`` for
the recipients of an expired seal, :func:`queue_expiry_notice` queues one plain
notice to the sender: which message, which recipients did not open it before
the expiry, that the key share K_n was destroyed, and each failure's receipt
attached as JSON (as receipt emails attach theirs). It is written by
:func:`notary.relay.notices.notice_with_receipts` and goes through the relay's
spool and delivery queue as mail the notary writes itself (``kind="notice"``,
null reverse-path), so the relay delivers it (or retries it) after a restart.

To whom: the ``submitter`` of the message's SubmissionAcceptance (the envelope
sender the relay accepted, an address of the account: where its receipt emails
and DSNs go), else the account's first registered address.

Exactly once: the notice's spool row is keyed by :func:`notice_key` (a hash of
the sealed message's SHA-256) and is written only when no row has that key.
The sweep calls this while it holds the seal's exclusive lock (one sweep of a
seal at a time, across the processes on one notary directory) and destroys the
share only afterwards: a sweep interrupted before the spool commit writes it
next time; one interrupted after it finds the row and writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from notary.evidence import format_time, parse_statement
from notary.relay.notices import notice_with_receipts
from notary.relay.runtime import default_node
from notary.storage import QueueWrite, SpoolItem

if TYPE_CHECKING:
    from notary.seals import Seal
    from notary.service import NotaryService

__all__ = ["expiry_notice", "notice_key", "queue_expiry_notice", "sender_address"]

log = logging.getLogger(__name__)

EVENT = "ContentHandoverFailure"


def notice_key(sha256: str) -> str:
    """The spool key of the expiry notice of the sealed message ``sha256``."""
    return hashlib.sha256(b"certmail sealed expiry notice\n" + sha256.encode()).hexdigest()


def sender_address(service: NotaryService, seal: Seal) -> str | None:
    """Where the notice goes (the module docstring); None when the account is gone."""
    for e in service.storage.entries_for_message(seal.sha256):
        if e.event == "SubmissionAcceptance" and e.message_id == seal.message_id:
            stmt = parse_statement(e.entry)
            if stmt.get("submitter") and not stmt.get("blind"):
                return str(stmt["submitter"])
    account = service.storage.account(seal.account_id)
    if account is None or not account.addresses:
        return None
    return account.addresses[0]


def expiry_notice(
    service: NotaryService, seal: Seal, to: str, receipts: Sequence[tuple[str, dict[str, Any]]]
) -> tuple[bytes, str, str]:
    """The notice for ``seal``: ``receipts`` are (recipient, ContentHandoverFailure receipt)."""
    expired = format_time(seal.expires)
    who = "\r\n".join(f"    {r}" for r, _ in receipts)
    text = (
        f"Your {seal.mode} message {seal.message_id} expired at {expired}\r\n"
        f"before these recipients opened it:\r\n\r\n{who}\r\n\r\n"
        f"  message sha256: {seal.sha256}\r\n\r\n"
        f"The notary {service.origin} logged {EVENT} for each of them and\r\n"
        f"destroyed its key share of the message: nobody can open it any more\r\n"
        f"(and the notary never could read it). Send it again if it is still needed.\r\n\r\n"
        f"The receipts are attached; check them offline with certmail, or see:\r\n"
        f"  certmail receipts {seal.sha256}\r\n"
    )
    names = [EVENT] if len(receipts) == 1 else [f"{EVENT}-{i}" for i in range(1, len(receipts) + 1)]
    attached = [(n, r) for n, (_, r) in zip(names, receipts, strict=True)]
    subject = f"{seal.mode.capitalize()} message not opened: {seal.message_id}"
    return notice_with_receipts(
        service.config.relay_hostname, to, subject, text, attached, service.clock()
    )


def queue_expiry_notice(service: NotaryService, seal: Seal, failures: Sequence[Any]) -> bool:
    """Spool the expiry notice of ``seal`` unless it is spooled already (blocking; call it
    under the seal's lock). ``failures`` are the (entry, statement) pairs of its logged
    ContentHandoverFailure. Whether a notice was spooled now."""
    key = notice_key(seal.sha256)
    if not failures or service.storage.notice_spooled(key):
        return False
    to = sender_address(service, seal)
    if to is None:
        log.warning(
            "no address for the expiry notice of %s (account %d)", seal.sha256, seal.account_id
        )
        return False
    cp = service.storage.latest_checkpoint()
    assert cp is not None  # the failures are logged, so a checkpoint covers them
    receipts = [
        (str(stmt.get("recipient", "")), service.receipt_for(e, cp.size, cp.note).to_json())
        for e, stmt in failures
    ]
    msg, mid, _ = expiry_notice(service, seal, to, receipts)
    node = default_node(str(service.config.directory.resolve()))
    item = SpoolItem(
        key, mid, seal.account_id, "", (to,), msg, service.clock(), node, 0, "notice", False
    )
    service.storage.queue_write(QueueWrite(spool=[item]))
    return True

"""Mail the notary writes itself: delay notices and receipt emails.

These are plain RFC 5322 messages sent with the null reverse-path (``MAIL
FROM:<>``, RFC 5321 §4.5.5) so that they never bounce back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from notary.storage import Delivery


def _message_id(domain: str) -> str:
    return f"<{secrets.token_hex(16)}@{domain}>"


def delay_notice(
    domain: str, d: Delivery, why: str, now: datetime, origin: str, deadline: float
) -> tuple[bytes, str, str]:
    """A delay notice for the sender of ``d``; returns (bytes, Message-ID, sha256)."""
    mid = _message_id(domain)
    body = (
        f"Your message {d.message_id} to {d.recipient} has not been delivered yet.\r\n"
        f"\r\n"
        f"  message sha256: {d.sha256}\r\n"
        f"  accepted:       {format_datetime(d.received)}\r\n"
        f"  last attempt:   {why[:900]}\r\n"
        f"\r\n"
        f"The notary {origin} keeps trying until {int(deadline // 3600)} hours after\r\n"
        f"acceptance, then records the failure. Nothing needs to be done now;\r\n"
        f"follow it with: certmail receipts {d.sha256}\r\n"
    )
    head = (
        f"From: certmail notary <postmaster@{domain}>\r\n"
        f"To: <{d.mail_from}>\r\n"
        f"Subject: Delivery delayed: {d.message_id}\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: {mid}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"\r\n"
    )
    msg = (head + body).encode("utf-8")
    return msg, mid, hashlib.sha256(msg).hexdigest()


def receipt_email(
    domain: str, to: str, event: str, sha256: str, message_id: str,
    receipt: dict[str, Any], now: datetime, origin: str, *, recipient: str = "",
) -> tuple[bytes, str, str]:
    """A receipt email: a short text and the receipt (DESIGN §4.3) attached as JSON.

    The attachment is ``receipt-<event>.json`` (``application/json``), exactly
    what ``GET /v1/messages/{sha256}/receipts`` returns for that entry.
    """
    mid = _message_id(domain)
    boundary = "certmail-" + secrets.token_hex(12)
    attachment = base64.encodebytes(json.dumps(receipt, indent=1).encode()).decode()
    attachment = attachment.replace("\n", "\r\n")
    to_line = f"\r\n  recipient:      {recipient}" if recipient else ""
    text = (
        f"The notary {origin} logged {event} for your message {message_id}.\r\n"
        f"\r\n  message sha256: {sha256}{to_line}\r\n\r\n"
        f"The receipt is attached; check it offline with certmail.\r\n"
    )
    msg = (
        f"From: certmail notary <postmaster@{domain}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {event}: {message_id}\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: {mid}\r\n"
        f"Auto-Submitted: auto-generated\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"--{boundary}\r\n"
        f'Content-Type: application/json; name="receipt-{event}.json"\r\n'
        f'Content-Disposition: attachment; filename="receipt-{event}.json"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{attachment}\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    return msg, mid, hashlib.sha256(msg).hexdigest()

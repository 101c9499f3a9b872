"""Mail the notary writes itself: delivery status notifications, receipt emails, notices.

Delay notices and failure notices are DSNs (RFC 3464): ``multipart/report;
report-type=delivery-status`` (RFC 6522) holding a human-readable part and a
``message/delivery-status`` part (per-message fields, then per-recipient
fields: Final-Recipient, Action, Status (RFC 3463 codes), Diagnostic-Code,
Last-Attempt-Date, Will-Retry-Until). All are sent with the null reverse-path
(``MAIL FROM:<>``, RFC 5321 §4.5.5) so that they never bounce back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from notary.storage import Delivery

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")


def _message_id(domain: str) -> str:
    return f"<{secrets.token_hex(16)}@{domain}>"


def duration(seconds: float) -> str:
    """A span of time for people: ``2 hours 5 minutes``, ``3 minutes 20 seconds``, ``4 seconds``."""
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    units = [(days, "day"), (hours, "hour"), (minutes, "minute"), (s, "second")]
    parts = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in units if n]
    return " ".join(parts[:2]) or "0 seconds"


@dataclass(frozen=True)
class RecipientStatus:
    """The per-recipient fields of a DSN (RFC 3464 §2.3)."""

    recipient: str
    action: str  # "delayed" or "failed"
    status: str  # RFC 3463 code, e.g. 4.4.1
    reply: dict[str, Any] | None = None  # the server's last reply {code, text}
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None


def status_code(reply: dict[str, Any] | None, default: str) -> str:
    """The RFC 3463 status of a reply: its enhanced code, else its class with ``default``."""
    if reply is None:
        return default
    m = _ENHANCED.match(str(reply.get("text", "")))
    if m:
        return m.group(1)
    return f"{str(reply.get('code', default))[0]}.0.0"


def delivery_status(domain: str, arrival: datetime, rs: RecipientStatus) -> str:
    """The ``message/delivery-status`` body (CRLF lines)."""
    lines = [f"Reporting-MTA: dns; {domain}", f"Arrival-Date: {format_datetime(arrival)}", ""]
    lines += [
        f"Final-Recipient: rfc822; {rs.recipient}",
        f"Action: {rs.action}",
        f"Status: {rs.status}",
    ]
    if rs.reply is not None:
        text = " ".join(str(rs.reply.get("text", "")).split())[:900]
        lines.append(f"Diagnostic-Code: smtp; {rs.reply.get('code')} {text}")
    if rs.last_attempt is not None:
        lines.append(f"Last-Attempt-Date: {format_datetime(rs.last_attempt)}")
    if rs.will_retry_until is not None:
        lines.append(f"Will-Retry-Until: {format_datetime(rs.will_retry_until)}")
    return "\r\n".join(lines) + "\r\n"


def _report(
    domain: str,
    to: str,
    subject: str,
    now: datetime,
    text: str,
    status: str,
    extra_part: str = "",
) -> tuple[bytes, str, str]:
    mid = _message_id(domain)
    boundary = "certmail-" + secrets.token_hex(12)
    msg = (
        f"From: certmail notary <postmaster@{domain}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: {mid}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n'
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n{status}\r\n"
        + (f"--{boundary}\r\n{extra_part}\r\n" if extra_part else "")
        + f"--{boundary}--\r\n"
    ).encode("utf-8")
    return msg, mid, hashlib.sha256(msg).hexdigest()


def delay_notice(
    domain: str, d: Delivery, rs: RecipientStatus, now: datetime, origin: str, why: str
) -> tuple[bytes, str, str]:
    """A delay DSN (Action: delayed) for the sender of ``d``: (bytes, Message-ID, sha256)."""
    until = rs.will_retry_until or now
    text = (
        f"Your message {d.message_id} to {d.recipient} has not been delivered yet:\r\n"
        f"it was accepted {duration((now - d.received).total_seconds())} ago.\r\n"
        f"\r\n"
        f"  message sha256: {d.sha256}\r\n"
        f"  accepted:       {format_datetime(d.received)}\r\n"
        f"  last attempt:   {why[:900]}\r\n"
        f"\r\n"
        f"The notary {origin} keeps trying until {format_datetime(until)}\r\n"
        f"({duration((until - d.received).total_seconds())} after acceptance), then records\r\n"
        f"the failure. Nothing needs to be done now; follow it with:\r\n"
        f"  certmail receipts {d.sha256}\r\n"
    )
    return _report(
        domain,
        d.mail_from,
        f"Delivery delayed: {d.message_id}",
        now,
        text,
        delivery_status(domain, d.received, rs),
    )


def _json_part(event: str, receipt: dict[str, Any]) -> str:
    attachment = base64.encodebytes(json.dumps(receipt, indent=1).encode()).decode()
    attachment = attachment.replace("\n", "\r\n")
    return (
        f'Content-Type: application/json; name="receipt-{event}.json"\r\n'
        f'Content-Disposition: attachment; filename="receipt-{event}.json"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{attachment}"
    )


def receipt_email(
    domain: str,
    to: str,
    event: str,
    sha256: str,
    message_id: str,
    receipt: dict[str, Any] | None,
    now: datetime,
    origin: str,
    *,
    recipient: str = "",
    failure: tuple[datetime, RecipientStatus] | None = None,
) -> tuple[bytes, str, str]:
    """A receipt email: a short text and the receipt (DESIGN §4.3) attached as JSON.

    The attachment is ``receipt-<event>.json`` (``application/json``), exactly
    what ``GET /v1/messages/{sha256}/receipts`` returns for that entry. With
    ``failure`` (the message's arrival and the recipient's status) it is the
    failure DSN: ``multipart/report`` with the receipt as its third part, or
    without one (``receipt`` None: an account without receipt emails).
    """
    to_line = f"\r\n  recipient:      {recipient}" if recipient else ""
    where = (
        "The receipt is attached; check it offline with certmail.\r\n"
        if receipt is not None
        else f"The receipt is in the notary's log:\r\n  certmail receipts {sha256}\r\n"
    )
    text = (
        f"The notary {origin} logged {event} for your message {message_id}.\r\n"
        f"\r\n  message sha256: {sha256}{to_line}\r\n\r\n{where}"
    )
    if failure is not None:
        arrival, rs = failure
        return _report(
            domain,
            to,
            f"{event}: {message_id}",
            now,
            ("Your message could not be delivered.\r\n" + text),
            delivery_status(domain, arrival, rs),
            _json_part(event, receipt) if receipt is not None else "",
        )
    if receipt is None:
        raise ValueError("a receipt email without a failure needs the receipt")
    return notice_with_receipts(domain, to, f"{event}: {message_id}", text, [(event, receipt)], now)


def notice_with_receipts(
    domain: str,
    to: str,
    subject: str,
    text: str,
    receipts: Sequence[tuple[str, dict[str, Any]]],
    now: datetime,
) -> tuple[bytes, str, str]:
    """A notice the notary writes (``multipart/mixed``): ``text`` (CRLF lines), then each
    ``(name, receipt)`` attached as ``receipt-<name>.json``; (bytes, Message-ID, sha256)."""
    mid = _message_id(domain)
    boundary = "certmail-" + secrets.token_hex(12)
    parts = "".join(f"--{boundary}\r\n{_json_part(n, r)}\r\n" for n, r in receipts)
    msg = (
        f"From: certmail notary <postmaster@{domain}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: {mid}\r\n"
        f"Auto-Submitted: auto-generated\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"{parts}"
        f"--{boundary}--\r\n"
    ).encode()
    return msg, mid, hashlib.sha256(msg).hexdigest()

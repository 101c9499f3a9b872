"""RFC 8098 message disposition notifications, PGP-signed (RFC 3156), sent by the recipient.

:func:`build_mdn` writes a ``multipart/report; report-type=disposition-notification``
entity (a human-readable part and the ``message/disposition-notification``
part), :func:`signed_mdn` wraps it in ``multipart/signed`` with a detached
OpenPGP signature over its exact bytes, and :func:`send_mdn` submits those
bytes unchanged (null reverse-path, RFC 8098 §2.1) through the recipient's
own SMTP server. Sent only when the recipient consents (docs/ack.md).
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from keys.errors import Error

from .compose import canonical_text, encode_header_value, new_boundary, new_message_id, now_date
from .rfc3156 import write_signed

if TYPE_CHECKING:
    from keys.gpg import Keyring

__all__ = ["Mdn", "build_mdn", "send_mdn", "signed_mdn"]

DISPOSITION = "manual-action/MDN-sent-manually; displayed"


@dataclass(frozen=True)
class Mdn:
    """What the notification says."""

    original_message_id: str
    final_recipient: str  # the recipient's address
    notify: str  # the Disposition-Notification-To address
    subject: str
    sha256: str | None = None  # the notarized hash, when known


def _check(value: str, what: str) -> str:
    if any(c in value for c in "\r\n") or not value.isprintable():
        raise Error(f"the {what} cannot go in a notification: {value[:60]!r}")
    return value


def build_mdn(mdn: Mdn, *, reporting_ua: str = "certmail") -> bytes:
    """The ``multipart/report`` entity (its Content-Type field first), CRLF line ends."""
    b = new_boundary()
    mid = _check(mdn.original_message_id, "Message-ID")
    rcpt = _check(mdn.final_recipient, "recipient")
    human = (
        f"The message {mid} sent to {rcpt} was displayed to the recipient.\n"
        "This only says the message was displayed; it does not say it was read or "
        "understood.\n"
    )
    if mdn.sha256:
        human += f"Notarized message SHA-256: {mdn.sha256}\n"
    fields = (
        f"Reporting-UA: {reporting_ua}\r\n"
        f"Original-Recipient: rfc822;{rcpt}\r\n"
        f"Final-Recipient: rfc822;{rcpt}\r\n"
        f"Original-Message-ID: {mid}\r\n"
        f"Disposition: {DISPOSITION}\r\n"
    )
    out = (
        (
            f"Content-Type: multipart/report; report-type=disposition-notification;\r\n"
            f' boundary="{b}"\r\n\r\n'
            f"--{b}\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + canonical_text(human.encode())
        + (
            f"\r\n--{b}\r\n"
            "Content-Type: message/disposition-notification\r\n\r\n"
            f"{fields}"
            f"\r\n--{b}--\r\n"
        ).encode()
    )
    return out


def signed_mdn(keyring: Keyring, mdn: Mdn, *, date: str | None = None) -> bytes:
    """The complete MDN message: ``multipart/signed`` over :func:`build_mdn`'s exact bytes."""
    report = build_mdn(mdn)
    sig, micalg = keyring.sign_detached(report, mdn.final_recipient)
    subject = encode_header_value(f"Displayed: {mdn.subject}" if mdn.subject else "Displayed")
    fields = [
        f"From: {_check(mdn.final_recipient, 'recipient')}",
        f"To: {_check(mdn.notify, 'notification address')}",
        f"Subject: {subject}",
        f"Date: {date or now_date()}",
        f"Message-ID: {new_message_id(mdn.final_recipient.rpartition('@')[2])}",
        f"References: {mdn.original_message_id}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
    ]
    out = io.BytesIO()
    write_signed(out, io.BytesIO(report), sig, micalg, fields)
    data = out.getvalue()
    # Re-verify what leaves: the signature over the exact bytes of part 1.
    from .mime import canonicalize, parse_entity
    from .rfc3156 import signed_parts

    sp = signed_parts(parse_entity(canonicalize(data)))
    keyring.verify_detached(sp.signed, sp.signature)
    return data


def send_mdn(keyring: Keyring, mdn: Mdn, smtp_url: str) -> str:
    """Sign and submit the MDN through ``smtp_url``; return the server's reply."""
    from .smtp import parse_smtp_url, send_file

    data = signed_mdn(keyring, mdn)
    with tempfile.TemporaryDirectory(prefix="certmail-mdn-") as d:
        path = Path(d) / "mdn.eml"
        path.write_bytes(data)
        reply = send_file(parse_smtp_url(smtp_url), "", [mdn.notify], path)
    return f"{reply.code} {reply.reply}"

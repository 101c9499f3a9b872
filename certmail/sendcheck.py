"""Before a message is sealed: the sender's settings, its header fields, its size.

The facade (:class:`certmail.api.Certmail`) calls these in ``send`` before it
scans, composes and encrypts anything, so a message that cannot go (no
identity, no SMTP server, too large for the notary relay) is refused with
nothing stored and no copy left behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from keys.errors import Error

from .compose import Headers, check_address, date_from, new_message_id, now_date
from .smtp import parse_smtp_url

if TYPE_CHECKING:
    from .config import Settings
    from .outbox import Outbox

__all__ = [
    "check_send_settings",
    "check_size",
    "make_headers",
    "relay_limit",
    "should_compress",
    "too_large",
]


def check_send_settings(settings: Settings, via: str, to: Sequence[str], cc: Sequence[str]) -> None:
    """Refuse a send without an identity, recipients, valid addresses or (direct) SMTP URL."""
    s = settings
    if not s.email:
        raise Error("no sender identity", hint="certmail init --email ADDR --name NAME")
    if not to:
        raise Error("no recipients", hint="give --to ADDR")
    for a in (s.email, *to, *cc):
        check_address(a)
    if via == "smtp":
        if not s.smtp_url:
            raise Error(
                "no SMTP server configured",
                hint="set CERTMAIL_SMTP_URL=smtp://user:pass@host:587",
            )
        parse_smtp_url(s.smtp_url)


def make_headers(
    settings: Settings,
    clock: Callable[[], datetime] | None,
    to: Sequence[str],
    cc: Sequence[str],
    subject: str,
) -> Headers:
    """The outgoing header fields: a new Message-ID at the sender's domain, Date from ``clock``."""
    email = settings.email or ""
    return Headers(
        from_addr=email,
        to=tuple(to),
        cc=tuple(cc),
        subject=subject,
        message_id=new_message_id(email.rpartition("@")[2].lower()),
        date=date_from(clock()) if clock else now_date(),
        from_name=settings.name or None,
    )


def relay_limit(outbox: Outbox, via: str) -> int | None:
    """The relay's advertised message size limit (``GET /v1/relay``), if it can be asked."""
    from keys.errors import TemporaryError

    if via != "relay":
        return None
    try:
        return outbox.relay_endpoint().max_message_bytes
    except TemporaryError:
        return None  # unreachable: the message is queued, the relay checks it later


def check_size(limit: int, body: int, attachments: Sequence[Path]) -> None:
    """Refuse, before scanning and encrypting, a message the relay cannot take."""
    from .msgsize import estimate

    for p in attachments:
        if not p.is_file():
            return  # the scan says which file is missing
    expected = estimate(body, attachments, compress=True)
    if expected > limit:
        raise too_large(expected, limit, estimated=True)


def should_compress(body: int, paths: Sequence[Path], limit: int | None) -> bool:
    """Whether to compress the inner entity before encryption (docs/send-open.md)."""
    from .msgsize import should_compress as wanted

    return all(p.is_file() for p in paths) and wanted(body, paths, limit)


def too_large(size: int, limit: int, *, estimated: bool = False) -> Error:
    """The error for a message over the relay's limit, saying what fits and what to do."""
    from .msgsize import largest_attachment

    mb = 1_000_000
    what = f"about {size / mb:.1f} MB" if estimated else f"{size / mb:.1f} MB"
    fits = largest_attachment(limit, compress=True) / mb
    return Error(
        f"the message would be {what}, and the notary relay takes at most {limit / mb:.1f} MB"
        f" (attachments of up to about {fits:.1f} MB in total fit); nothing was sent or stored",
        hint="send it with --via smtp (your own SMTP server; the notary notarizes its hash)",
    )

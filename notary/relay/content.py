"""Checks on a submitted message's header section (RFC 5322) before it is accepted.

Only the header section is parsed; the bytes are never changed. A refusal is
a :class:`RelayRefusal` carrying the SMTP reply (RFC 5321 §4.2, enhanced status
codes per RFC 3463).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses

from notary.errors import NotaryError

MAX_HEADER_BYTES = 256 * 1024
_MESSAGE_ID = re.compile(r"<[\x21-\x3d\x3f-\x7e]{1,994}>")  # printable ASCII, no '>'
_HEADER_END = re.compile(rb"\r?\n\r?\n")


class RelayRefusal(NotaryError):
    """The relay refuses a command or message; ``reply`` is the full SMTP reply line."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


@dataclass(frozen=True)
class MessageInfo:
    """What the relay needs from a message's header section."""

    message_id: str
    senders: tuple[str, ...]
    recipients: frozenset[str]
    encrypted: bool


def _addresses(values: list[str]) -> list[str]:
    return [a.strip().lower() for _, a in getaddresses(values) if a.strip()]


def inspect(data: bytes) -> MessageInfo:
    """Parse the header section of ``data``; raise RelayRefusal when it is unusable."""
    m = _HEADER_END.search(data, 0, MAX_HEADER_BYTES + 4)
    if m is None:
        raise RelayRefusal("554 5.6.0 no header section (or one over 256 KiB)")
    try:
        # UTF-8 header fields (RFC 6532) as text; other 8-bit bytes stay surrogates.
        text = data[: m.end()].decode("utf-8", "surrogateescape")
        msg = HeaderParser(policy=compat32).parsestr(text)
    except (ValueError, TypeError, UnicodeError):
        raise RelayRefusal("554 5.6.0 the header section cannot be parsed") from None
    mids = msg.get_all("Message-ID") or []
    if len(mids) != 1 or not _MESSAGE_ID.fullmatch(str(mids[0]).strip()):
        raise RelayRefusal("554 5.6.0 exactly one Message-ID header (<id@domain>) is required")
    froms = msg.get_all("From") or []
    senders = _addresses([str(v) for v in froms])
    if len(froms) != 1 or not senders:
        raise RelayRefusal("554 5.6.0 exactly one From header with an address is required")
    rcpts = _addresses([str(v) for v in (msg.get_all("To") or []) + (msg.get_all("Cc") or [])])
    ctype = str(msg.get("Content-Type", "")).split(";", 1)[0].strip().lower()
    params = {k.lower(): v.lower() for k, v in msg.get_params([], header="Content-Type")[1:]}
    encrypted = (
        ctype == "multipart/encrypted"
        or ctype == "application/pgp-encrypted"
        or (ctype in ("application/pkcs7-mime", "application/x-pkcs7-mime")
            and params.get("smime-type", "enveloped-data")
            in ("enveloped-data", "authenveloped-data"))
    )
    return MessageInfo(str(mids[0]).strip(), tuple(senders), frozenset(rcpts), encrypted)


def check_sender(info: MessageInfo, own: frozenset[str]) -> None:
    """Every From: address must be one of the account's own."""
    foreign = [a for a in info.senders if a not in own]
    if foreign:
        raise RelayRefusal(
            f"550 5.7.1 From: {foreign[0]} is not an address of the authenticated account"
        )


def check_recipients(info: MessageInfo, rcpt_tos: list[str]) -> None:
    """Every envelope recipient must be named in To: or Cc:."""
    missing = [r for r in rcpt_tos if r.lower() not in info.recipients]
    if missing:
        raise RelayRefusal(f"550 5.7.1 recipient {missing[0]} is not in the To: or Cc: header")

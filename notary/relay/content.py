"""Checks on a submitted message before it is accepted (RFC 5321 §2.3.8, RFC 5322, RFC 3156).

- Line endings: every CR and LF in DATA must be part of a CRLF pair (RFC 5321
  §2.3.8). A bare CR or LF is what SMTP smuggling hides a second transaction
  behind, so it is refused with ``550 5.5.2`` (Postfix's wording for
  ``smtpd_forbid_bare_newline = reject``), and nothing is stored. The relay's
  DATA reader (:mod:`notary.relay.incoming`, like aiosmtpd's) ends DATA only
  at CRLF.CRLF, splits lines only at CRLF and removes a leading dot only
  after CRLF: it notes a bare CR or LF as the data streams by, and
  :func:`check_line_endings` makes the same check on bytes in memory.
  A NUL is refused too (``550 5.6.0``; see :func:`check_line_endings`).
- The header section is read strictly (:mod:`notary.relay.headers`) and every
  originator address must be the account's. Envelope recipients need not be
  named in To:/Cc: (blind copies), but a Bcc: field naming addresses is
  refused: the relay cannot remove it.
- Ciphertext: a message counts as encrypted, and is not scanned, only where
  its bytes are OpenPGP (RFC 3156 §4 multipart/encrypted around an armored
  message) or CMS (S/MIME application/pkcs7-mime enveloped-data) ciphertext
  (:mod:`notary.relay.ciphertext`); what lies outside the ciphertext is scanned.

Only the message is read; the bytes are never changed. A refusal is a
:class:`RelayRefusal` carrying the SMTP reply (RFC 5321 §4.2, enhanced status
codes per RFC 3463).
"""

from __future__ import annotations

import binascii
import dataclasses
import re
from dataclasses import dataclass, replace
from email.message import Message
from email.utils import getaddresses

from notary.mime import split
from notary.relay.ciphertext import armored_openpgp_message, is_cms_enveloped
from notary.relay.headers import (
    MAX_HEADER_BYTES,
    HeaderSection,
    RelayRefusal,
    bare_line_ending,
    field_title,
    originators,
    parse_header_section,
)

__all__ = [
    "MessageInfo",
    "RelayRefusal",
    "check_bcc",
    "check_line_endings",
    "check_sender",
    "inspect",
    "inspect_header",
    "locate_ciphertext",
    "scan_input",
]

_MESSAGE_ID = re.compile(r"<[\x21-\x3d\x3f-\x7e]{1,994}>")  # printable ASCII, no '>'
MAX_PARTS = 16


@dataclass(frozen=True)
class MessageInfo:
    """What the relay needs from a message."""

    message_id: str
    #: (field, address) of every From, Sender, Resent-From and Resent-Sender address.
    originators: tuple[tuple[str, str], ...]
    #: The addresses named in To: and Cc: (envelope recipients beyond them are blind copies).
    recipients: frozenset[str]
    #: Where the ciphertext lies in the message (start, end), when it really is encrypted.
    ciphertext: tuple[int, int] | None
    section: HeaderSection | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def encrypted(self) -> bool:
        return self.ciphertext is not None

    @property
    def senders(self) -> tuple[str, ...]:
        return tuple(a for _, a in self.originators)


def check_line_endings(data: bytes) -> None:
    """Refuse DATA with a CR or LF outside a CRLF pair, or a NUL (SMTP smuggling).

    NUL is not 8BITMIME text (RFC 6152; the relay offers no BINARYMIME), and
    some servers skip it, reading ``CRLF NUL . CRLF`` as the end of the data.
    """
    bare = bare_line_ending(data)
    if bare:
        raise RelayRefusal(f"550 5.5.2 Error: bare <{bare}> received")
    if b"\0" in data:
        raise RelayRefusal("550 5.6.0 Error: NUL in message data")


def _content_type(section: HeaderSection) -> tuple[str, dict[str, str]]:
    msg = Message()
    msg["Content-Type"] = section.get("content-type") or "text/plain"
    params = msg.get_params([], header="Content-Type")
    return msg.get_content_type(), {k.lower(): str(v) for k, v in params[1:]}


def _parts(data: bytes, start: int, boundary: str) -> list[tuple[int, int]] | None:
    """(start, end) of each body part of the multipart body at ``data[start:]``, or None.

    RFC 2046 §5.1.1 through the one splitter, :func:`notary.mime.split`.
    """
    if not boundary or len(boundary) > 70:
        return None
    found = split(data, boundary.encode("ascii", "replace"), start, max_parts=MAX_PARTS)
    return found.parts if found.closed else None


def _ciphertext(data: bytes, section: HeaderSection) -> tuple[int, int] | None:
    """Where the message's ciphertext lies, if it really is encrypted (module docstring)."""
    ctype, params = _content_type(section)
    body_at = len(section.block) + 2
    if (
        ctype == "multipart/encrypted"
        and params.get("protocol", "").lower() == "application/pgp-encrypted"
    ):
        spans = _parts(data, body_at, params.get("boundary", ""))
        if spans is None or len(spans) != 2:
            return None
        c1, e1 = spans[1]
        try:  # each part's header section lies in its first MAX_HEADER_BYTES + 4 bytes
            control, payload = (
                parse_header_section(data[s : min(e, s + MAX_HEADER_BYTES + 4)] + b"\r\n")
                for s, e in spans
            )
        except RelayRefusal:
            return None
        if (
            _content_type(control)[0] != "application/pgp-encrypted"
            or _content_type(payload)[0] != "application/octet-stream"
            or (payload.get("content-transfer-encoding") or "7bit").lower()
            not in ("7bit", "8bit", "binary")
        ):
            return None
        start = c1 + len(payload.block) + 2
        armor = armored_openpgp_message(data, start, e1)
        return None if armor is None else (start, e1)
    if (
        ctype in ("application/pkcs7-mime", "application/x-pkcs7-mime")
        and params.get("smime-type", "enveloped-data").lower()
        in ("enveloped-data", "authenveloped-data")
        and (section.get("content-transfer-encoding") or "").lower() == "base64"
    ):
        try:
            der = binascii.a2b_base64(data[body_at:].replace(b"\r\n", b""), strict_mode=True)
        except binascii.Error:
            return None
        return (body_at, len(data)) if is_cms_enveloped(der) else None
    return None


def inspect_header(head: bytes) -> MessageInfo:
    """Read the header section at the start of ``head`` (no ciphertext located yet)."""
    section = parse_header_section(head)
    mids = section.get_all("message-id")
    if len(mids) != 1 or not _MESSAGE_ID.fullmatch(mids[0]):
        raise RelayRefusal("554 5.6.0 exactly one Message-ID header (<id@domain>) is required")
    senders = originators(section)
    check_bcc(section)
    rcpts = [
        a.strip().lower()
        for _, a in getaddresses(section.get_all("to") + section.get_all("cc"))
        if a.strip()
    ]
    return MessageInfo(mids[0], senders, frozenset(rcpts), None, section)


def locate_ciphertext(info: MessageInfo, data: bytes) -> MessageInfo:
    """``info`` (from :func:`inspect_header` of ``data``) with the ciphertext located."""
    assert info.section is not None
    return replace(info, ciphertext=_ciphertext(data, info.section))


def inspect(data: bytes) -> MessageInfo:
    """Read ``data`` (see the module docstring); raise RelayRefusal when it is unusable."""
    check_line_endings(data)
    return locate_ciphertext(inspect_header(data), data)


def scan_input(data: bytes, info: MessageInfo) -> bytes:
    """What the virus scanner must see: the message without its ciphertext."""
    if info.ciphertext is None:
        return data
    start, end = info.ciphertext
    return data[:start] + data[end:]


def check_sender(info: MessageInfo, own: frozenset[str]) -> None:
    """Every originator address (From, Sender, Resent-From, Resent-Sender) must be own."""
    for field, address in info.originators:
        if address not in own:
            raise RelayRefusal(
                f"550 5.7.1 {field_title(field)}: {address} is not an address of the "
                "authenticated account"
            )


def check_bcc(section: HeaderSection) -> None:
    """Refuse a Bcc: field that names addresses (RFC 5322 §3.6.3).

    Blind copies are envelope recipients the header does not name. The relay
    never changes the bytes it notarizes, so it cannot remove such a field,
    and every recipient would see it.
    """
    for value in section.get_all("bcc"):
        if any(a.strip() for _, a in getaddresses([value])):
            raise RelayRefusal(
                "554 5.6.0 a Bcc header field would show its addresses to every recipient "
                "(the relay does not change messages); name blind copies in RCPT TO only"
            )

"""Header fields (RFC 5322, RFC 2047): the protected fields of a message decoded for
display, the From field read strictly, addresses compared.

Split from :mod:`certmail.mime` (which re-exports every name here): these read the
email package's parsed fields, not the raw bytes. This module imports no GnuPG.
"""

from __future__ import annotations

import functools
from email.header import Header, decode_header, make_header
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from email.message import Message

__all__ = [
    "FIELDS",
    "NOTARY_FIELD",
    "decode_field",
    "header_fields",
    "same_address",
    "single_mailbox",
]

#: The header fields :func:`header_fields` reads (the RFC 9788 protected ones).
FIELDS = ("From", "To", "Cc", "Subject", "Date", "Message-ID")
NOTARY_FIELD = "Certmail-Notary"


def header_fields(msg: Message) -> dict[str, str]:
    """The fields of :data:`FIELDS` (and the first ``Certmail-Notary``), RFC 2047 decoded."""
    out: dict[str, str] = {}
    for name in FIELDS:
        v = msg.get(name)
        if v is not None:
            out[name] = decode_field(str(v))
    for v in msg.get_all(NOTARY_FIELD) or []:
        out.setdefault(NOTARY_FIELD, decode_field(str(v)))
    return out


def decode_field(value: str) -> str:
    """A field value for display: RFC 2047 encoded-words decoded, line breaks removed."""
    try:
        return str(make_header(decode_header(value))).replace("\r", "").replace("\n", "")
    except (ValueError, LookupError, UnicodeDecodeError):
        return value.replace("\r", "").replace("\n", "")


def single_mailbox(value: str | Header | None) -> str | None:
    """The addr-spec of a field that holds exactly one mailbox, or None (RFC 5322 §3.4).

    Strict: the raw (not RFC 2047 decoded) value must parse without any defect
    as one mailbox outside a group, with a local part and a domain. Display
    names and comments are ignored, so ``"bob@example.net" <ceo@example.org>``
    and ``ceo@example.org (bob@example.net)`` are both ``ceo@example.org``.
    """
    if value is None:
        return None
    unfolded = str(value).replace("\r\n", "")
    if "\r" in unfolded or "\n" in unfolded:
        return None
    try:
        # compat32 keeps raw 8-bit bytes as surrogates: they must be UTF-8 (RFC 6532).
        unfolded = unfolded.encode("utf-8", "surrogateescape").decode("utf-8")
        field = _registry()("From", unfolded)
        groups, defects = field.groups, field.defects  # type: ignore[attr-defined]
    except (UnicodeError, ValueError, IndexError, TypeError, AttributeError):
        return None
    if defects or len(groups) != 1 or groups[0].display_name is not None:
        return None
    (box,) = groups[0].addresses or (None,)
    if box is None or len(groups[0].addresses) != 1 or not box.username or not box.domain:
        return None
    return str(box.addr_spec)


def same_address(a: str, b: str) -> bool:
    """Whether two addr-specs name one mailbox: compared whole, case-insensitively.

    The rule of the bundle verifier and of gpg's user-ID lookup: the domain is
    case-insensitive (RFC 5321 §2.4), and the local part is compared
    case-insensitively too (no mail system certmail meets distinguishes them).
    """
    return a.lower() == b.lower()


@functools.cache
def _registry() -> Any:
    """The email package's structured header parser, imported on first use (it costs
    a tenth of ``proof verify``'s start-up and most commands never parse an address)."""
    from email.headerregistry import HeaderRegistry

    return HeaderRegistry()

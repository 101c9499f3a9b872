"""A strict reader of a submitted message's header section (RFC 5322 §2.2, §3.6).

The relay decides who a message is from; the recipient's software decides what
to show. Where two parsers could read one header section differently, the
relay refuses the message instead of guessing (the 2023 header-smuggling
differentials: ``From :`` read as a Unix "From " line, a field hidden after a
bare CR, a second From: seen by one parser only). Refused, each with a 554
5.6.0 reply:

- a NUL, or a CR or LF that is not part of a CRLF, in the header section;
- a line that is neither ``name:value`` nor a continuation (SP/HTAB first),
  a continuation as the first line, a folded line of only white space
  (obs-FWS, RFC 5322 §4.2);
- a field name with characters outside printable ASCII or white space before
  the colon (obs-optional, RFC 5322 §4.5);
- a second instance of a field RFC 5322 §3.6 (or RFC 2045 for MIME) allows once;
- an originator field (From, Sender, Resent-From, Resent-Sender) that is not
  valid UTF-8, that has parse defects other than obsolete syntax, that names
  a group, or that Python's
  two address parsers (``email.headerregistry`` and ``email.utils``) read as
  different addresses.

The bytes are never changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.errors import ObsoleteHeaderDefect
from email.policy import default as _default_policy
from email.utils import getaddresses

from notary.errors import NotaryError

MAX_HEADER_BYTES = 256 * 1024
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 ftext
#: Fields RFC 5322 §3.6 (and RFC 2045 §§4, 5, 6) allow at most once.
SINGLE_FIELDS = frozenset(
    {
        "date",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "message-id",
        "in-reply-to",
        "references",
        "subject",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
#: Originator fields (RFC 5322 §3.6.2, §3.6.6): each address must be the account's.
ORIGINATOR_FIELDS = ("from", "sender", "resent-from", "resent-sender")


class RelayRefusal(NotaryError):
    """The relay refuses a command or message; ``reply`` is the full SMTP reply line."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def _refuse(text: str) -> RelayRefusal:
    return RelayRefusal(f"554 5.6.0 {text}")


@dataclass(frozen=True)
class HeaderSection:
    """The header section as (lower-case name, unfolded value) pairs, in order."""

    block: bytes
    fields: tuple[tuple[str, str], ...]

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.fields if n == name]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None


def bare_line_ending(data: bytes) -> str | None:
    """``"CR"`` or ``"LF"`` when ``data`` holds one outside a CRLF pair, else None."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf:
        return "LF"
    if data.count(b"\r") != crlf:
        return "CR"
    return None


def parse_header_section(data: bytes) -> HeaderSection:
    """Split the header section of ``data`` (CRLF only) into fields; refuse ambiguity."""
    end = data.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES + 4)
    if end < 0:
        raise _refuse("no header section (or one over 256 KiB)")
    block = data[: end + 2]
    if b"\0" in block:
        raise _refuse("NUL in the header section")
    bare = bare_line_ending(block)
    if bare:
        raise _refuse(f"bare <{bare}> in the header section")
    fields: list[tuple[str, list[bytes]]] = []
    for line in block[:-2].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise _refuse("the header section starts with a folded line")
            if not line.strip(b" \t"):
                raise _refuse(
                    f"header field {fields[-1][0]} has a folded line of only "
                    "white space (obsolete syntax)"
                )
            fields[-1][1].append(line)
            continue
        raw_name, colon, value = line.partition(b":")
        if not colon:
            raise _refuse("a header line without a colon")
        if not _FIELD_NAME.fullmatch(raw_name):
            raise _refuse(
                "a header field name with white space before the colon or "
                "characters outside printable ASCII (obsolete syntax)"
            )
        fields.append((raw_name.decode("ascii").lower(), [value]))
    seen: set[str] = set()
    for name, _ in fields:
        if name in SINGLE_FIELDS and name in seen:
            raise _refuse(f"more than one {field_title(name)} header field")
        seen.add(name)
    return HeaderSection(
        block,
        tuple(
            (name, b"".join(parts).decode("utf-8", "surrogateescape").strip())
            for name, parts in fields
        ),
    )


def field_title(name: str) -> str:
    """``resent-from`` as ``Resent-From``."""
    return "-".join(p.capitalize() for p in name.split("-"))


def _mailboxes(field: str, value: str) -> list[str]:
    """The addresses of an originator field, read the same by both parsers, or refuse."""
    name = field_title(field)
    if any("\udc80" <= c <= "\udcff" for c in value):
        raise _refuse(f"{name} header field is not valid UTF-8")
    header = _default_policy.header_factory(field, value)
    # Obsolete syntax (e.g. "John Q. Public <jqp@x>") is read alike by both parsers;
    # anything invalid is not.
    invalid = [d for d in header.defects if not isinstance(d, ObsoleteHeaderDefect)]
    if invalid:
        raise _refuse(f"{name} header field cannot be parsed strictly: {invalid[0]}")
    if any(g.display_name is not None for g in header.groups):
        raise _refuse(f"{name} header field names a group, not a mailbox")
    strict = [a.addr_spec.lower() for a in header.addresses]
    loose = [a.strip().lower() for _, a in getaddresses([value])]
    if strict != loose or any(not a.partition("@")[0] or "@" not in a for a in strict):
        raise _refuse(f"{name} header field does not name its addresses unambiguously")
    return strict


def originators(section: HeaderSection) -> tuple[tuple[str, str], ...]:
    """Every (field, address) of From, Sender, Resent-From and Resent-Sender.

    From needs at least one mailbox and Sender exactly one; a From with several
    mailboxes needs a Sender (RFC 5322 §3.6.2).
    """
    out: list[tuple[str, str]] = []
    for name in ORIGINATOR_FIELDS:
        for value in section.get_all(name):
            boxes = _mailboxes(name, value)
            if not boxes or (name.endswith("sender") and len(boxes) != 1):
                raise _refuse(
                    f"{field_title(name)} header field needs "
                    f"{'exactly one' if name.endswith('sender') else 'a'} mailbox"
                )
            out.extend((name, a) for a in boxes)
    froms = [a for n, a in out if n == "from"]
    if len(section.get_all("from")) != 1 or not froms:
        raise _refuse("exactly one From header with an address is required")
    if len(froms) > 1 and not section.get_all("sender"):
        raise _refuse("a From header with several mailboxes needs a Sender header")
    return tuple(out)

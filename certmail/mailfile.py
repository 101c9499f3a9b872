"""Reading a message file for ``open`` and ``verify``: bounded, and plainly mail.

RFC 5322 §2.2: a message starts with header fields. A file that does not
(a zip such as a proof bundle, a PDF, plain text) is refused with a
:class:`keys.errors.MalformedError` saying what it is, before any parsing or
GnuPG runs; an empty or oversized file likewise.
"""

from __future__ import annotations

import re
from pathlib import Path

from keys.errors import MalformedError, NotFoundError

__all__ = ["MAX_OPEN_SIZE", "check_message_file", "read_message"]

MAX_OPEN_SIZE = 1 << 30


def read_message(p: Path) -> bytes:
    """The bytes of a message file; NotFoundError or MalformedError when it is not one."""
    check_message_file(p, head=False)
    raw = p.read_bytes()
    _check_mail(p, raw)
    return raw


def check_message_file(p: Path, *, head: bool = True) -> None:
    """The checks of :func:`read_message` without reading the file whole (its head only)."""
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {p}") from None
    if size == 0:
        raise MalformedError(f"{p} is empty (0 bytes): not a message")
    if size > MAX_OPEN_SIZE:
        raise MalformedError(f"{p} is larger than {MAX_OPEN_SIZE >> 20} MB")
    if head:
        with p.open("rb") as f:
            _check_mail(p, f.read(4096))


_HEADER_START = re.compile(rb"[!-9;-~]+[ \t]*:")  # RFC 5322 §2.2 field name, then a colon


def _check_mail(p: Path, raw: bytes) -> None:
    """Refuse, saying what it is, a file that is plainly not an RFC 5322 message."""
    if raw.startswith(b"PK\x03\x04"):
        raise MalformedError(
            f"{p} is a zip archive, not a mail message",
            hint=f"a proof bundle? certmail proof verify {p}",
        )
    if raw.startswith(b"From "):  # an mbox separator line: the message follows
        return
    if not _HEADER_START.match(raw):
        raise MalformedError(
            f"{p} is not a mail message (it does not start with header fields)",
            hint="give the message file (.eml) as your mail program saved it",
        )

"""IMAP mailbox URLs (a subset of RFC 5092): ``imaps://user@host[:port]/MAILBOX[?ca=FILE]``.

``imaps`` is implicit TLS (RFC 8314, port 993); ``imap`` (port 143) requires
STARTTLS (RFC 3501 §6.2.1): certmail never logs in over a connection that is
not encrypted. The user and mailbox are percent-decoded; a password in the
URL is refused (passwords never go on a command line: docs/inbox.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from keys.errors import Error

__all__ = ["ImapUrl", "parse_imap_url"]

_HINT = "imaps://user@host[:port]/MAILBOX (or imap://... for STARTTLS)"


@dataclass(frozen=True)
class ImapUrl:
    """Where the mailbox is and how to reach it."""

    tls: str  # "implicit" (imaps) | "starttls" (imap)
    host: str
    port: int
    user: str
    mailbox: str
    ca: Path | None

    def __str__(self) -> str:
        scheme = "imaps" if self.tls == "implicit" else "imap"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.mailbox}"


def parse_imap_url(url: str, *, ca: str | None = None) -> ImapUrl:
    """Parse ``url``; ``ca`` (CERTMAIL_IMAP_CA) is used when the URL names no ``?ca=``."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as e:
        raise Error(f"not an IMAP URL: {e}", hint=_HINT) from None
    if u.scheme not in ("imaps", "imap"):
        raise Error(f"not an IMAP URL (scheme {u.scheme or 'missing'!r})", hint=_HINT)
    if u.password is not None:
        raise Error(
            "the IMAP URL holds a password: certmail never takes one on the command line",
            hint="put it in a file named by CERTMAIL_IMAP_PASSWORD_FILE, or type it when asked",
        )
    if not u.hostname or not u.username:
        raise Error("the IMAP URL needs a user and a host", hint=_HINT)
    query = parse_qs(u.query, strict_parsing=False)
    unknown = set(query) - {"ca"}
    if unknown:
        raise Error(f"unknown IMAP URL parameter {sorted(unknown)[0]!r}", hint="only ?ca=FILE")
    ca_file = query["ca"][-1] if "ca" in query else ca
    implicit = u.scheme == "imaps"
    return ImapUrl(
        "implicit" if implicit else "starttls",
        u.hostname,
        port or (993 if implicit else 143),
        unquote(u.username),
        unquote(u.path.lstrip("/")) or "INBOX",
        Path(ca_file) if ca_file else None,
    )

"""Submitting exact bytes over SMTP (RFC 5321, RFC 3207 STARTTLS, RFC 8314 implicit TLS).

``CERTMAIL_SMTP_URL`` is ``smtp://[user:pass@]host[:port][?starttls=require|never]``
(STARTTLS whenever the server offers it; ``require`` refuses to go on without
it) or ``smtps://[user:pass@]host[:port]`` (TLS from the first byte). Either
takes ``ca=FILE`` in its query (``?ca=/etc/ssl/private-ca.pem``, with ``&``
after another parameter), or ``CERTMAIL_SMTP_CA=FILE`` in the environment: the
server's certificate is then verified against the CA certificates in that PEM
file only, instead of the system's (a private server's own CA).

:func:`send_file` submits a file's exact bytes there (direct mode, ``--via
smtp``) through the one submitter, :mod:`certmail.submitter`, which streams
it, dot-stuffs it and classifies failures (:class:`DeliveryError`,
:class:`UncertainDeliveryError`, :class:`keys.errors.TemporaryError`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from keys.errors import Error, NotFoundError

from .submitter import (
    DeliveryError,
    Peer,
    SmtpResult,
    UncertainDeliveryError,
    dot_stuff,
    submit,
)

__all__ = [
    "DeliveryError",
    "SmtpResult",
    "SmtpTarget",
    "UncertainDeliveryError",
    "dot_stuff",
    "parse_smtp_url",
    "send_file",
]

DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
CA_ENV = "CERTMAIL_SMTP_CA"


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to submit: parsed from ``CERTMAIL_SMTP_URL``."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: str = "auto"  # "auto", "require" or "never"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None  # PEM CA certificates to verify the server with

    def redacted(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_smtp_url(url: str, *, env: Mapping[str, str] | None = None) -> SmtpTarget:
    """Parse ``smtp://`` / ``smtps://`` URLs; raise :class:`Error` naming the fix.

    The CA file comes from ``?ca=FILE``, else from ``CERTMAIL_SMTP_CA`` in
    ``env`` (default: the process environment); it must exist.
    """
    hint = "set CERTMAIL_SMTP_URL=smtp://user:pass@host:587 (or smtps://host:465)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Error(f"not an SMTP URL: {url!r}", hint=hint) from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise Error("the SMTP URL must be smtp://host[:port] or smtps://host[:port]", hint=hint)
    query = parse_qs(parts.query)
    starttls = (query.get("starttls") or ["auto"])[0].lower()
    if starttls not in ("auto", "require", "never"):
        raise Error(f"starttls={starttls} is not auto, require or never", hint=hint)
    if parts.scheme == "smtps":
        starttls = "never"
    env = os.environ if env is None else env
    ca = (query.get("ca") or [""])[0] or env.get(CA_ENV, "")
    ca_file = str(Path(ca).expanduser().absolute()) if ca else None
    if ca_file is not None and not Path(ca_file).is_file():
        raise NotFoundError(
            f"the SMTP server's CA file {ca} does not exist",
            hint=f"fix ?ca= in CERTMAIL_SMTP_URL or {CA_ENV} (a PEM file of CA certificates)",
        )
    return SmtpTarget(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        implicit_tls=parts.scheme == "smtps",
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        ca_file=ca_file,
    )


def send_file(
    target: SmtpTarget,
    mail_from: str,
    recipients: Sequence[str],
    path: Path,
    *,
    timeout: float = 60.0,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SmtpResult:
    """Submit the file's bytes unchanged to ``recipients``; raise on any failure."""
    peer = Peer(
        target.host,
        target.port,
        implicit_tls=target.implicit_tls,
        starttls=target.starttls,
        ca_file=target.ca_file,
        ssl_context=ssl_context,
        login_hint="check user and password in CERTMAIL_SMTP_URL",
    )
    login = (target.username, target.password or "") if target.username is not None else None
    return submit(
        peer,
        mail_from,
        recipients,
        path,
        login=login,
        timeout=timeout,
        local_hostname=local_hostname,
        progress=progress,
    )

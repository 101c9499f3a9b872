"""Submitting exact bytes over SMTP (RFC 5321, RFC 3207 STARTTLS, RFC 8314 implicit TLS).

``CERTMAIL_SMTP_URL`` is ``smtp://[user:pass@]host[:port][?starttls=require|never]``
(STARTTLS whenever the server offers it; ``require`` refuses to go on without
it) or ``smtps://[user:pass@]host[:port]`` (TLS from the first byte).

The message is streamed from its file to the DATA command with dot-stuffing
(RFC 5321 §4.5.2): it is never parsed or re-serialised, so the recipient gets
the bytes that were signed and hashed. The transaction is all-or-nothing: if
any recipient is refused, RSET is sent before DATA.

Failures are classified: :class:`keys.errors.TemporaryError` for what a retry
may fix (connection refused, timeouts, 4xx replies), :class:`DeliveryError`
for permanent refusals (5xx), :class:`UncertainDeliveryError` when the
connection broke after the final dot and before the reply (the server may or
may not have taken the message, so it is not retried on its own).
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from keys.errors import Error, TemporaryError

DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
_CHUNK = 1 << 20


class DeliveryError(Error):
    """The SMTP server refused the message for good (a 5xx reply)."""

    exit_code = 1


class UncertainDeliveryError(TemporaryError):
    """The connection broke after the message was handed over, before the server replied."""


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to submit: parsed from ``CERTMAIL_SMTP_URL``."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: str = "auto"  # "auto", "require" or "never"
    username: str | None = None
    password: str | None = None

    def redacted(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse ``smtp://`` / ``smtps://`` URLs; raise :class:`Error` naming the fix."""
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
    return SmtpTarget(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        implicit_tls=parts.scheme == "smtps",
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


@dataclass(frozen=True)
class SmtpResult:
    """The server's final reply to the message."""

    code: int
    reply: str
    tls: bool


def _reply_error(code: int, text: bytes | str, what: str) -> Error:
    msg = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    msg = " ".join(msg.split())
    if 400 <= code < 500:
        return TemporaryError(
            f"the SMTP server deferred {what}: {code} {msg}",
            hint="certmail outbox flush (the message is queued)",
        )
    return DeliveryError(f"the SMTP server refused {what}: {code} {msg}")


class _Data:
    """Dot-stuffing (RFC 5321 §4.5.2) over a CRLF message streamed in chunks."""

    def __init__(self) -> None:
        self.carry = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self.carry + chunk
        cut = data.rfind(b"\n") + 1
        self.carry = data[cut:]
        return self._stuff(data[:cut])

    def end(self) -> bytes:
        tail = self._stuff(self.carry)
        self.carry = b""
        if tail and not tail.endswith(b"\r\n"):
            tail += b"\r\n"
        return tail + b".\r\n"

    @staticmethod
    def _stuff(lines: bytes) -> bytes:
        # Each piece starts at a line start.
        if lines.startswith(b"."):
            lines = b"." + lines
        return lines.replace(b"\n.", b"\n..")


def dot_stuff(data: bytes) -> bytes:
    """``data`` as it travels after DATA, terminator included (for tests)."""
    d = _Data()
    return d.feed(data) + d.end()


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
    if not recipients:
        raise Error("no recipients")
    size = path.stat().st_size
    # smtplib would call socket.getfqdn(), a reverse DNS lookup per connection.
    local_hostname = local_hostname or socket.gethostname() or "localhost"
    tls = False
    client: smtplib.SMTP
    try:
        if target.implicit_tls:
            client = smtplib.SMTP_SSL(
                target.host, target.port, timeout=timeout, context=ssl_context or _tls(),
                local_hostname=local_hostname,
            )
            tls = True
        else:
            client = smtplib.SMTP(
                target.host, target.port, timeout=timeout, local_hostname=local_hostname
            )
    except (OSError, smtplib.SMTPException) as e:
        raise TemporaryError(
            f"cannot reach the SMTP server {target.host}:{target.port}: {_why(e)}",
            hint="certmail outbox flush (the message is queued)",
        ) from None
    handed_over = False
    try:
        if client.sock is not None:  # commands and replies are small: no Nagle delays
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code, text = client.ehlo()
        if not 200 <= code < 300:
            code, text = client.helo()
            if not 200 <= code < 300:
                raise _reply_error(code, text, "our greeting")
        if not tls and target.starttls != "never":
            if client.has_extn("starttls"):
                code, text = client.starttls(context=ssl_context or _tls())
                tls = True
                client.ehlo()
            elif target.starttls == "require":
                raise DeliveryError(
                    f"{target.host} does not offer STARTTLS and the URL says starttls=require",
                    hint="use smtps:// or another server",
                )
        if target.username is not None:
            if not tls:
                raise DeliveryError(
                    "refusing to send the SMTP password without TLS",
                    hint="use smtps:// or a server that offers STARTTLS",
                )
            try:
                client.login(target.username, target.password or "")
            except smtplib.SMTPAuthenticationError as e:
                raise DeliveryError(
                    f"SMTP login failed: {e.smtp_code} {_text(e.smtp_error)}",
                    hint="check user and password in CERTMAIL_SMTP_URL",
                ) from None
        opts = [f"SIZE={size}"] if client.has_extn("size") else []
        code, text = client.mail(mail_from, opts)
        if code != 250:
            client.rset()
            raise _reply_error(code, text, f"the sender {mail_from}")
        deferred: Error | None = None
        for rcpt in recipients:
            code, text = client.rcpt(rcpt)
            if code not in (250, 251):
                err = _reply_error(code, text, f"the recipient {rcpt}")
                if isinstance(err, DeliveryError):
                    client.rset()
                    raise err
                deferred = deferred or err
        if deferred is not None:
            client.rset()
            raise deferred
        client.putcmd("data")
        code, text = client.getreply()
        if code != 354:
            client.rset()
            raise _reply_error(code, text, "DATA")
        sock = client.sock
        assert sock is not None
        stuffer = _Data()
        done = 0
        pending = b""
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                if pending:
                    sock.sendall(pending)
                pending = stuffer.feed(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, size)
        handed_over = True
        sock.sendall(pending + stuffer.end())  # the last chunk and the dot in one write
        code, text = client.getreply()
        if code != 250:
            raise _reply_error(code, text, "the message")
        result = SmtpResult(code, _text(text), tls)
    except smtplib.SMTPResponseException as e:
        raise _reply_error(e.smtp_code, e.smtp_error, "the connection") from None
    except (OSError, smtplib.SMTPException) as e:
        if handed_over:
            raise UncertainDeliveryError(
                f"the connection to {target.host} broke after the message was sent, before "
                f"the server confirmed it ({_why(e)})",
                hint="certmail outbox list (check with the recipient before resending)",
            ) from None
        raise TemporaryError(
            f"SMTP with {target.host}:{target.port} failed: {_why(e)}",
            hint="certmail outbox flush (the message is queued)",
        ) from None
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
    return result


_TLS: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def _tls() -> ssl.SSLContext:
    """The default client TLS context (loading the CA store costs ~50 ms: done once
    per SSL_CERT_FILE / SSL_CERT_DIR setting)."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    if key not in _TLS:
        _TLS[key] = ssl.create_default_context()
    return _TLS[key]


def _text(t: bytes | str) -> str:
    return t.decode("utf-8", "replace") if isinstance(t, bytes) else t


def _why(e: BaseException) -> str:
    if isinstance(e, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, smtplib.SMTPServerDisconnected):
        return "the server closed the connection"
    return str(e) or type(e).__name__

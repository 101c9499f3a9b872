"""Submitting exact bytes over SMTP: the one client submitter of certmail.

RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 8314 (implicit TLS), RFC 4954
(AUTH), RFC 1870 (SIZE), RFC 6531 (SMTPUTF8 for UTF-8 addresses).

Both ways certmail sends use it: direct sending to the user's server or
smarthost (:func:`certmail.smtp.send_file`) and AUTH submission to the
notary's relay (:func:`certmail.relay_client.submit`). A :class:`Peer` says
where to connect and whom to trust: the system's CAs (or ``ca_file``), or a
certificate pin (the SHA-256 of the server's certificate, checked right after
the TLS handshake, before EHLO and any credential).

The message is streamed from its file (or bytes) to the DATA command in 1 MiB
chunks with dot-stuffing (RFC 5321 §4.5.2): it is never parsed or
re-serialised, so the recipient gets the bytes that were signed and hashed,
and a 100 MB file costs no more than a few MiB of memory. (aiosmtplib, which
the relay's delivery client uses, needs the whole message in memory: 614 MiB
peak RSS for 100 MB against 28 MiB streamed, measured on loopback; so this
module stays on the standard library's smtplib.) The transaction is
all-or-nothing: if any recipient is refused, RSET is sent before DATA.

When the server offers PIPELINING (RFC 2920; the notary's relay does), the
envelope goes in one write: MAIL, every RCPT and DATA (after NOOP on a kept
session), and the replies are read after it; the message follows the 354.
Two round trips a message instead of four or five.

One connection per message by default; a process that sends many (a campaign
worker) calls :func:`keep_sessions` and then reuses one session per peer and
login: no TLS handshake and AUTH per message. A kept session is checked with
NOOP before it carries a message; if it was closed (the server's idle timeout,
a restart), a new one is opened and the message goes over it, but never once
the final dot of that message was written (that stays
:class:`UncertainDeliveryError`).

Failures are classified: :class:`keys.errors.TemporaryError` for what a retry
may fix (connection refused, timeouts, 4xx replies), :class:`DeliveryError`
for permanent refusals (5xx), :class:`LoginError` (a :class:`DeliveryError`)
for a refused AUTH, :class:`keys.errors.VerificationError` when the pinned
certificate does not match or a pinned peer offers no TLS (nothing was sent),
:class:`UncertainDeliveryError` when the connection broke after the final dot
and before the reply (the server may or may not have taken the message, so it
is not retried on its own).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from keys.errors import Error, TemporaryError, VerificationError

from .smtpdata import DotStuffer, chunks
from .smtpdata import dot_stuff as dot_stuff  # importable from here, as smtp.py does


class DeliveryError(Error):
    """The SMTP server refused the message for good (a 5xx reply)."""

    exit_code = 1


class LoginError(DeliveryError):
    """The server refused AUTH (nothing was sent)."""

    def __init__(self, message: str, *, code: int, text: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code, self.text = code, text


class UncertainDeliveryError(TemporaryError):
    """The connection broke after the message was handed over, before the server replied."""


@dataclass(frozen=True)
class Peer:
    """Where to submit, whom to trust there, and how to word what goes wrong.

    ``pin_sha256`` (lowercase hex): the server must present exactly this
    certificate; TLS is then required and the certificate chain is not
    otherwise checked. Without a pin the certificate is verified against
    ``ca_file`` when given, else the system's CAs (``SSL_CERT_FILE``,
    ``SSL_CERT_DIR``), or with ``ssl_context`` when given.
    """

    host: str
    port: int
    implicit_tls: bool = False
    starttls: str = "auto"  # "auto", "require" or "never"
    pin_sha256: str | None = None
    ca_file: str | None = None
    ssl_context: ssl.SSLContext | None = None
    name: str = "the SMTP server"
    retry_hint: str = "certmail outbox flush (the message is queued)"
    uncertain_hint: str = "certmail outbox list (check with the recipient before resending)"
    login_hint: str | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def context(self) -> ssl.SSLContext:
        if self.ssl_context is not None:
            return self.ssl_context
        if self.pin_sha256 is not None:
            return pinning_context()
        return verifying_context(
            self.ca_file, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
        )


@dataclass(frozen=True)
class SmtpResult:
    """The server's final reply to the message, and the TLS the session used."""

    code: int
    reply: str
    tls: bool
    cert_sha256: str | None = None


@functools.cache
def pinning_context() -> ssl.SSLContext:
    """TLS 1.2+ without chain checks: the certificate is checked against its pin instead."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@functools.lru_cache(maxsize=8)
def verifying_context(
    ca_file: str | None, env_file: str | None, env_dir: str | None
) -> ssl.SSLContext:
    """The verifying client context (loading the CA store costs ~50 ms: done once per
    setting). ``ca_file`` alone when given; else the defaults, which read ``env_*``."""
    if ca_file is not None:
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise Error(
                f"cannot load the CA file {ca_file}: {e.strerror or e}",
                hint="name a PEM file with the server's CA certificate",
            ) from None
    return ssl.create_default_context()


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


def _reply_error(peer: Peer, code: int, text: bytes | str, what: str) -> Error:
    msg = " ".join(_text(text).split())
    if 400 <= code < 500:
        return TemporaryError(f"{peer.name} deferred {what}: {code} {msg}", hint=peer.retry_hint)
    return DeliveryError(f"{peer.name} refused {what}: {code} {msg}")


def _connect(peer: Peer, timeout: float, local_hostname: str) -> smtplib.SMTP:
    try:
        if peer.implicit_tls:
            return smtplib.SMTP_SSL(
                peer.host,
                peer.port,
                timeout=timeout,
                context=peer.context(),
                local_hostname=local_hostname,
            )
        return smtplib.SMTP(peer.host, peer.port, timeout=timeout, local_hostname=local_hostname)
    except (OSError, smtplib.SMTPException) as e:
        raise TemporaryError(
            f"cannot reach {peer.name} {peer.where}: {_why(e)}", hint=peer.retry_hint
        ) from None


def _certificate_sha256(client: smtplib.SMTP) -> str | None:
    sock = client.sock
    der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    return hashlib.sha256(der).hexdigest() if der else None


def _check_pin(peer: Peer, cert_sha256: str | None) -> None:
    if peer.pin_sha256 is not None and cert_sha256 != peer.pin_sha256.lower():
        raise VerificationError(
            f"{peer.name} at {peer.where} presents a certificate other than the pinned one "
            f"(SHA-256 {peer.pin_sha256[:16]}...): the connection may be intercepted",
            hint="nothing was sent; check the server's address and the network",
        )


def _hello(peer: Peer, client: smtplib.SMTP) -> str | None:
    """EHLO (HELO as a fallback), STARTTLS per the peer's policy; the certificate hash."""
    code, text = client.ehlo()
    if not 200 <= code < 300:
        code, text = client.helo()
        if not 200 <= code < 300:
            raise _reply_error(peer, code, text, "our greeting")
    if peer.implicit_tls:
        cert = _certificate_sha256(client)
        _check_pin(peer, cert)
        return cert
    required = peer.starttls == "require" or peer.pin_sha256 is not None
    if peer.starttls == "never" and peer.pin_sha256 is None:
        return None
    if not client.has_extn("starttls"):
        if peer.pin_sha256 is not None:
            raise VerificationError(
                f"{peer.name} at {peer.where} does not offer STARTTLS",
                hint="nothing was sent; check the server's address",
            )
        if required:
            raise DeliveryError(
                f"{peer.host} does not offer STARTTLS and the URL says starttls=require",
                hint="use smtps:// or another server",
            )
        return None
    client.starttls(context=peer.context())
    cert = _certificate_sha256(client)
    _check_pin(peer, cert)
    client.ehlo()
    return cert


def _login(peer: Peer, client: smtplib.SMTP, login: tuple[str, str], tls: bool) -> None:
    if not tls:
        raise DeliveryError(
            "refusing to send the SMTP password without TLS",
            hint="use smtps:// or a server that offers STARTTLS",
        )
    try:
        client.login(login[0], login[1])
    except smtplib.SMTPAuthenticationError as e:
        text = " ".join(_text(e.smtp_error).split())
        raise LoginError(
            f"SMTP login failed: {e.smtp_code} {text}",
            code=e.smtp_code,
            text=text,
            hint=peer.login_hint,
        ) from None


def _mail_options(
    peer: Peer, client: smtplib.SMTP, mail_from: str, recipients: Sequence[str], size: int
) -> list[str]:
    """MAIL FROM's parameters (SIZE, SMTPUTF8); raise if the server cannot take the message."""
    opts: list[str] = []
    if client.has_extn("size"):
        limit = client.esmtp_features.get("size", "").strip()
        if limit.isdigit() and 0 < int(limit) < size:
            raise DeliveryError(
                f"the message ({size} bytes) is larger than {peer.name} accepts ({limit} bytes)",
                hint="send smaller attachments, or through another server",
            )
        opts.append(f"SIZE={size}")
    if not all(a.isascii() for a in (mail_from, *recipients)):
        if not client.has_extn("smtputf8"):
            raise DeliveryError(
                f"{peer.name} does not offer SMTPUTF8, needed for the "
                "UTF-8 addresses of this message"
            )
        opts.append("SMTPUTF8")
    return opts


def _envelope(
    peer: Peer, client: smtplib.SMTP, mail_from: str, recipients: Sequence[str], size: int
) -> None:
    """MAIL and RCPT, one command at a time: every recipient accepted, or RSET and raise
    (5xx before 4xx)."""
    opts = _mail_options(peer, client, mail_from, recipients, size)
    code, text = client.mail(mail_from, opts)
    if code != 250:
        client.rset()
        raise _reply_error(peer, code, text, f"the sender {mail_from}")
    deferred: Error | None = None
    for rcpt in recipients:
        code, text = client.rcpt(rcpt)
        if code not in (250, 251):
            err = _reply_error(peer, code, text, f"the recipient {rcpt}")
            if isinstance(err, DeliveryError):
                client.rset()
                raise err
            deferred = deferred or err
    if deferred is not None:
        client.rset()
        raise deferred


def _pipelined_envelope(
    peer: Peer,
    client: smtplib.SMTP,
    mail_from: str,
    recipients: Sequence[str],
    size: int,
    reused: bool,
) -> None:
    """RFC 2920: (NOOP on a reused session,) MAIL, every RCPT and DATA in one write, then
    their replies in order; return at the 354, ready for the message.

    All-or-nothing as :func:`_envelope`: a refused sender or recipient is raised (the
    sender's first, then 5xx before 4xx). Had the server still answered DATA with 354
    (it need not, with a recipient refused), the connection is closed instead of
    sending the final dot: a transaction cut off before its dot delivers nothing
    (RFC 5321 §4.1.1.4), where a lone dot would deliver an empty message."""
    opts = _mail_options(peer, client, mail_from, recipients, size)
    if "SMTPUTF8" in opts:
        client.command_encoding = "utf-8"  # as smtplib's own mail() does
    params = "".join(" " + o for o in opts)
    lines = [f"mail FROM:{smtplib.quoteaddr(mail_from)}{params}"]
    lines += [f"rcpt TO:{smtplib.quoteaddr(r)}" for r in recipients]
    lines.append("data")
    if reused:
        lines.insert(0, "noop")  # the server's liveness check travels with the rest
    client.send("".join(line + "\r\n" for line in lines))
    replies = [client.getreply() for _ in lines]
    if reused and replies.pop(0)[0] != 250:  # closed or closing while kept
        client.close()
        raise _Stale()
    (mail_code, mail_text), *rcpts, (data_code, data_text) = replies
    err: Error | None = None
    if mail_code != 250:
        err = _reply_error(peer, mail_code, mail_text, f"the sender {mail_from}")
    else:
        refused = [
            _reply_error(peer, code, text, f"the recipient {rcpt}")
            for rcpt, (code, text) in zip(recipients, rcpts, strict=True)
            if code not in (250, 251)
        ]
        refused.sort(key=lambda e: not isinstance(e, DeliveryError))
        err = refused[0] if refused else None
    if err is None and data_code != 354:
        err = _reply_error(peer, data_code, data_text, "DATA")
    if err is None:
        return
    if data_code == 354:
        client.close()  # in DATA with a refused envelope: abort without the dot
    else:
        client.rset()
    raise err


@dataclass
class _Session:
    """An open, greeted (and logged-in) SMTP connection."""

    client: smtplib.SMTP
    tls: bool
    cert: str | None
    used: float = 0.0


#: Seconds a kept session may have been idle and still be reused (the notary's relay
#: closes an idle session after 60 s by default).
IDLE_REUSE = 30.0
_SessionKey = tuple[Peer, tuple[str, str] | None, str]
_kept: dict[_SessionKey, _Session] | None = None


def keep_sessions() -> None:
    """From now on, this process keeps each SMTP session open after a message and
    submits the next message to the same peer and login over it (a campaign worker:
    no TLS handshake and AUTH per message). A kept session that broke or was closed
    is replaced by a new one, unless the message had already been handed over."""
    global _kept
    if _kept is None:
        _kept = {}
        atexit.register(close_sessions)


def close_sessions() -> None:
    """QUIT every kept session (and stop keeping them)."""
    global _kept
    kept, _kept = _kept, None
    for sess in (kept or {}).values():
        _quit(sess.client)


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


def _open(
    peer: Peer, login: tuple[str, str] | None, timeout: float, local_hostname: str
) -> _Session:
    client = _connect(peer, timeout, local_hostname)
    try:
        if client.sock is not None:  # commands and replies are small: no Nagle delays
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cert = _hello(peer, client)
        tls = isinstance(client.sock, ssl.SSLSocket)
        if login is not None:
            _login(peer, client, login, tls)
        return _Session(client, tls, cert)
    except smtplib.SMTPResponseException as e:
        _quit(client)
        raise _reply_error(peer, e.smtp_code, e.smtp_error, "the connection") from None
    except (OSError, smtplib.SMTPException) as e:
        _quit(client)
        raise TemporaryError(
            f"SMTP with {peer.where} failed: {_why(e)}", hint=peer.retry_hint
        ) from None
    except BaseException:
        _quit(client)
        raise


class _Stale(Exception):
    """A reused session turned out closed before anything of the message was sent."""


def _transaction(
    peer: Peer,
    sess: _Session,
    mail_from: str,
    recipients: Sequence[str],
    source: Path | bytes,
    size: int,
    progress: Callable[[int, int], None] | None,
    reused: bool,
) -> SmtpResult:
    """MAIL, RCPT, DATA and the bytes over ``sess``; raise on any failure."""
    client = sess.client
    handed_over = False
    try:
        if client.has_extn("pipelining"):
            _pipelined_envelope(peer, client, mail_from, recipients, size, reused)
        else:
            if reused and client.noop()[0] != 250:  # closed by the server while kept
                raise _Stale()
            _envelope(peer, client, mail_from, recipients, size)
            client.putcmd("data")
            code, text = client.getreply()
            if code != 354:
                client.rset()
                raise _reply_error(peer, code, text, "DATA")
        sock = client.sock
        assert sock is not None
        stuffer = DotStuffer()
        done = 0
        pending = b""
        for chunk in chunks(source):
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
            raise _reply_error(peer, code, text, "the message")
        return SmtpResult(code, _text(text), sess.tls, sess.cert)
    except smtplib.SMTPResponseException as e:
        if reused and not handed_over and e.smtp_code == 421:
            raise _Stale() from None
        raise _reply_error(peer, e.smtp_code, e.smtp_error, "the connection") from None
    except (OSError, smtplib.SMTPException) as e:
        if handed_over:
            raise UncertainDeliveryError(
                f"the connection to {peer.host} broke after the message was sent, before "
                f"the server confirmed it ({_why(e)})",
                hint=peer.uncertain_hint,
            ) from None
        if reused:
            raise _Stale() from None
        raise TemporaryError(
            f"SMTP with {peer.where} failed: {_why(e)}", hint=peer.retry_hint
        ) from None


def submit(
    peer: Peer,
    mail_from: str,
    recipients: Sequence[str],
    source: Path | bytes,
    *,
    login: tuple[str, str] | None = None,
    timeout: float = 60.0,
    local_hostname: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SmtpResult:
    """Submit ``source``'s bytes unchanged to ``recipients``; raise on any failure.

    After :func:`keep_sessions`, the session stays open for the next message."""
    if not recipients:
        raise Error("no recipients")
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    # smtplib would call socket.getfqdn(), a reverse DNS lookup per connection.
    hostname = local_hostname or socket.gethostname() or "localhost"
    key: _SessionKey = (peer, login, hostname)
    sess = _kept.pop(key, None) if _kept is not None else None
    if sess is not None and time.monotonic() - sess.used > IDLE_REUSE:
        _quit(sess.client)
        sess = None
    ok = False
    try:
        if sess is not None:
            try:
                result = _transaction(
                    peer, sess, mail_from, recipients, source, size, progress, True
                )
                ok = True
                return result
            except _Stale:
                sess.client.close()
        sess = _open(peer, login, timeout, hostname)
        result = _transaction(peer, sess, mail_from, recipients, source, size, progress, False)
        ok = True
        return result
    finally:
        if sess is not None:
            if ok and _kept is not None:
                sess.used = time.monotonic()
                _kept[key] = sess
            else:
                _quit(sess.client)

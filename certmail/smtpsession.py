"""Opening an SMTP session for the submitter (:mod:`certmail.submitter`): whom to
trust, the connection, the greeting and the login.

RFC 5321 §3.1 (session initiation) and §4.1.1.1 (EHLO, HELO as a fallback),
RFC 3207 (STARTTLS), RFC 8314 (implicit TLS), RFC 4954 (AUTH). A :class:`Peer`
says where to connect and whom to trust: the system's CAs (or ``ca_file``), or a
certificate pin (the SHA-256 of the server's certificate, checked right after
the TLS handshake, before EHLO and any credential). :func:`open_session` returns
a greeted (and logged-in) :class:`Session`; the mail transactions over it, and
the sessions kept between messages, are the submitter's.

A refused greeting or STARTTLS requirement is a :class:`DeliveryError`, a refused
AUTH a :class:`LoginError`, a pin that does not match (or a pinned peer without
TLS) a :class:`keys.errors.VerificationError`, anything a retry may fix a
:class:`keys.errors.TemporaryError`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import smtplib
import socket
import ssl
from dataclasses import dataclass

from keys.errors import Error, TemporaryError, VerificationError

__all__ = [
    "DeliveryError",
    "LoginError",
    "Peer",
    "Session",
    "failed",
    "open_session",
    "pinning_context",
    "quit_session",
    "reason",
    "reply_error",
    "reply_text",
    "verifying_context",
]


class DeliveryError(Error):
    """The SMTP server refused the message for good (a 5xx reply)."""

    exit_code = 1


class LoginError(DeliveryError):
    """The server refused AUTH (nothing was sent)."""

    def __init__(self, message: str, *, code: int, text: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code, self.text = code, text


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


def reply_text(t: bytes | str) -> str:
    """A reply's text as smtplib hands it over (bytes), decoded."""
    return t.decode("utf-8", "replace") if isinstance(t, bytes) else t


def reason(e: BaseException) -> str:
    """Why a connection failed, in a few words."""
    if isinstance(e, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, smtplib.SMTPServerDisconnected):
        return "the server closed the connection"
    return str(e) or type(e).__name__


def reply_error(peer: Peer, code: int, text: bytes | str, what: str) -> Error:
    """A refusal of ``what``: temporary for 4xx (RFC 5321 §4.2.1), else permanent."""
    msg = " ".join(reply_text(text).split())
    if 400 <= code < 500:
        return TemporaryError(f"{peer.name} deferred {what}: {code} {msg}", hint=peer.retry_hint)
    return DeliveryError(f"{peer.name} refused {what}: {code} {msg}")


def failed(peer: Peer, e: BaseException) -> TemporaryError:
    """A connection that failed before the message was handed over: retry later."""
    return TemporaryError(f"SMTP with {peer.where} failed: {reason(e)}", hint=peer.retry_hint)


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
            f"cannot reach {peer.name} {peer.where}: {reason(e)}", hint=peer.retry_hint
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
            raise reply_error(peer, code, text, "our greeting")
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
        text = " ".join(reply_text(e.smtp_error).split())
        raise LoginError(
            f"SMTP login failed: {e.smtp_code} {text}",
            code=e.smtp_code,
            text=text,
            hint=peer.login_hint,
        ) from None


@dataclass
class Session:
    """An open, greeted (and logged-in) SMTP connection."""

    client: smtplib.SMTP
    tls: bool
    cert: str | None
    used: float = 0.0


def quit_session(client: smtplib.SMTP) -> None:
    """QUIT, or just close when the connection is gone already."""
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


def open_session(
    peer: Peer, login: tuple[str, str] | None, timeout: float, local_hostname: str
) -> Session:
    """Connect, greet, STARTTLS per ``peer`` (the pin checked) and log in; raise on any
    failure (the connection closed)."""
    client = _connect(peer, timeout, local_hostname)
    try:
        if client.sock is not None:  # commands and replies are small: no Nagle delays
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cert = _hello(peer, client)
        tls = isinstance(client.sock, ssl.SSLSocket)
        if login is not None:
            _login(peer, client, login, tls)
        return Session(client, tls, cert)
    except smtplib.SMTPResponseException as e:
        quit_session(client)
        raise reply_error(peer, e.smtp_code, e.smtp_error, "the connection") from None
    except (OSError, smtplib.SMTPException) as e:
        quit_session(client)
        raise failed(peer, e) from None
    except BaseException:
        quit_session(client)
        raise

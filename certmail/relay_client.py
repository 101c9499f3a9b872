"""Relay mode (``certmail send --via relay``): submit exact bytes to the notary's SMTP relay.

``GET /v1/relay`` on the notary names where the relay listens and the TLS
certificate it presents. :func:`submit` connects there, requires STARTTLS
(RFC 3207), pins that certificate (its SHA-256 must match before any
credential is sent), authenticates with AUTH PLAIN (RFC 4616: the sender's
address and the account's API token), sends the bytes unchanged and returns
the SHA-256 the relay states in its ``250`` reply, after checking it is the
hash of what was sent.

Errors: :class:`keys.errors.TemporaryError` for what a retry may fix (no
connection, 4xx); :class:`certmail.smtp.DeliveryError` for a 5xx refusal;
:class:`certmail.smtp.UncertainDeliveryError` when the connection broke after
the final dot; :class:`keys.errors.VerificationError` when the certificate does not match
(nothing was sent) and its subclass :class:`HashMismatchError` when the hash
the relay states is not that of the bytes sent; :class:`RelayLoginError` for
a refused AUTH (nothing was sent); :class:`NoRelayError` when the notary runs
no relay.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from keys.errors import Error, TemporaryError, VerificationError

from .smtp import DeliveryError, UncertainDeliveryError

_SHA256_REPLY = re.compile(r"\bsha256=([0-9a-f]{64})\b")
TOKEN_HINT = "set CERTMAIL_NOTARY_TOKEN (ask the notary operator for a token)"  # noqa: S105
LOGIN_HINT = (
    "check CERTMAIL_NOTARY_TOKEN (or: certmail config set notary_token TOKEN); the notary's "
    "operator issues tokens with: certmail notary accounts add ADDRESS"
)


class NoRelayError(Error):
    """The notary answers, but runs no SMTP relay (``GET /v1/relay`` is 404)."""


class RelayLoginError(Error):
    """The relay refused AUTH: a wrong or revoked token, or an address not the account's."""


class HashMismatchError(VerificationError):
    """The relay accepted the message but names a SHA-256 other than that of the bytes sent."""


@dataclass(frozen=True)
class RelayEndpoint:
    """Where a notary's relay listens and the certificate to pin (``GET /v1/relay``)."""

    host: str
    port: int
    cert_sha256: str
    max_message_bytes: int

    @classmethod
    def from_json(cls, obj: Any) -> RelayEndpoint:
        try:
            ep = cls(str(obj["host"]), int(obj["port"]), str(obj["cert_sha256"]).lower(),
                     int(obj["max_message_bytes"]))
        except (KeyError, TypeError, ValueError):
            raise Error("the notary's GET /v1/relay answer is malformed") from None
        if not re.fullmatch(r"[0-9a-f]{64}", ep.cert_sha256):
            raise Error("the notary's GET /v1/relay names no valid certificate hash")
        return ep


def relay_endpoint(notary_url: str, *, timeout: float = 30.0) -> RelayEndpoint:
    """Ask the notary where its relay is (``GET /v1/relay``)."""
    url = notary_url.rstrip("/") + "/v1/relay"
    try:
        resp = httpx.get(url, timeout=timeout, headers={"User-Agent": "certmail"})
    except httpx.HTTPError as e:
        from .notary_client import http_failure

        raise TemporaryError(f"cannot reach the notary at {notary_url}: {http_failure(e)}",
                             hint="check CERTMAIL_NOTARY_URL, or retry later") from None
    if resp.status_code == 404:
        raise NoRelayError(f"the notary at {notary_url} runs no SMTP relay",
                    hint="send with --via smtp (direct mode), or ask its operator for --smtp")
    if resp.status_code >= 400:
        raise TemporaryError(f"the notary answered {resp.status_code} to GET /v1/relay")
    try:
        return RelayEndpoint.from_json(resp.json())
    except ValueError:
        raise Error("the notary's GET /v1/relay answer is not JSON") from None


def _reply(code: int, text: bytes | str, what: str) -> Error:
    msg = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    line = f"the notary relay refused {what}: {code} {' '.join(msg.split())}"
    if code >= 500:
        return DeliveryError(line)
    return TemporaryError(line, hint="retry later: the message is kept in the outbox")


def submit(
    data: bytes,
    *,
    mail_from: str,
    recipients: Sequence[str],
    notary_url: str,
    token: str,
    endpoint: RelayEndpoint | None = None,
    timeout: float = 120.0,
) -> str:
    """Submit ``data`` unchanged through the notary's relay; the SHA-256 its 250 names.

    ``data`` must use CRLF line endings and end with CRLF (SMTP's canonical
    form), as certmail's composed messages do; otherwise the bytes the relay
    hashes would differ and this raises ValueError before connecting.
    """
    if not token:
        raise Error("no notary token", hint=TOKEN_HINT)
    if not data.endswith(b"\r\n") or b"\n" in data.replace(b"\r\n", b""):
        raise ValueError("the message must use CRLF line endings and end with CRLF")
    if not recipients:
        raise Error("no recipients")
    ep = endpoint or relay_endpoint(notary_url)
    if len(data) > ep.max_message_bytes:
        raise Error(f"the message ({len(data)} bytes) is larger than the relay accepts "
                    f"({ep.max_message_bytes} bytes)")
    sha256 = hashlib.sha256(data).hexdigest()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # the certificate is pinned by hash below, before AUTH
    ctx.verify_mode = ssl.CERT_NONE
    where = f"{ep.host}:{ep.port}"
    try:
        smtp = smtplib.SMTP(ep.host, ep.port, timeout=timeout)
    except (OSError, smtplib.SMTPException) as e:
        raise TemporaryError(f"cannot connect to the notary relay at {where}: {e}",
                             hint="retry later: the message is kept in the outbox") from None
    sent_dot = False
    try:
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            raise VerificationError(f"the notary relay at {where} does not offer STARTTLS")
        code, text = smtp.starttls(context=ctx)
        sock = smtp.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        if not der or hashlib.sha256(der).hexdigest() != ep.cert_sha256:
            raise VerificationError(
                f"the relay at {where} presents a certificate other than the one the notary "
                "names in GET /v1/relay: the connection may be intercepted",
                hint="nothing was sent; check CERTMAIL_NOTARY_URL and the network",
            )
        smtp.ehlo()
        try:
            smtp.login(mail_from, token)
        except smtplib.SMTPAuthenticationError as e:
            raise RelayLoginError(
                f"the notary relay refused the login for {mail_from} with the token in "
                f"CERTMAIL_NOTARY_TOKEN: {e.smtp_code} {' '.join(_text(e.smtp_error).split())}",
                hint=LOGIN_HINT) from None
        code, text = smtp.mail(mail_from)
        if code != 250:
            raise _reply(code, text, f"sender {mail_from}")
        for r in recipients:
            code, text = smtp.rcpt(r)
            if code not in (250, 251):
                raise _reply(code, text, f"recipient {r}")
        sent_dot = True
        code, text = smtp.data(data)
        if code != 250:
            raise _reply(code, text, "the message")
    except smtplib.SMTPResponseException as e:
        raise _reply(e.smtp_code, e.smtp_error, "the message") from None
    except (OSError, smtplib.SMTPException) as e:
        if sent_dot:
            raise UncertainDeliveryError(
                f"the connection to the notary relay broke after the message was sent: {e}",
                hint="certmail receipts (the notary may have accepted it)",
            ) from None
        raise TemporaryError(f"the notary relay at {where} failed: {e}",
                             hint="retry later: the message is kept in the outbox") from None
    finally:
        try:
            smtp.quit()
        except (TimeoutError, OSError, smtplib.SMTPException):
            smtp.close()
    m = _SHA256_REPLY.search(_text(text))
    if m is None:
        raise VerificationError(f"the relay's 250 reply names no sha256: {_text(text)!r}")
    if m.group(1) != sha256:
        raise HashMismatchError(
            f"the relay hashed {m.group(1)} but the message sent hashes to {sha256}",
            hint="the bytes changed in transit: do not rely on this submission",
        )
    return sha256


def _text(t: bytes | str) -> str:
    return t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t)

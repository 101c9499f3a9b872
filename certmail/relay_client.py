"""Relay mode (``certmail send --via relay``): submit exact bytes to the notary's SMTP relay.

``GET /v1/relay`` on the notary names where the relay listens and the TLS
certificate it presents. :func:`submit` connects there through the one
submitter (:mod:`certmail.submitter`) with that certificate pinned: STARTTLS
(RFC 3207) is required and the certificate's SHA-256 must match before any
credential is sent; it authenticates with AUTH (RFC 4954, PLAIN per RFC 4616:
the sender's address and the account's API token), sends the bytes unchanged
and returns the SHA-256 the relay states in its ``250`` reply, after checking
it is the hash of what was sent.

Errors: :class:`keys.errors.TemporaryError` for what a retry may fix (no
connection, 4xx); :class:`certmail.submitter.DeliveryError` for a 5xx refusal;
:class:`certmail.submitter.UncertainDeliveryError` when the connection broke
after the final dot; :class:`keys.errors.VerificationError` when the
certificate does not match or the relay offers no STARTTLS (nothing was
sent), and its subclass :class:`HashMismatchError` when the hash the relay
states is not that of the bytes sent; :class:`RelayLoginError` for
a refused AUTH (nothing was sent); :class:`NoRelayError` when the notary runs
no relay.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.dkim_body import crlf_only
from keys.errors import Error, TemporaryError, VerificationError

from .smtpdata import chunks

if TYPE_CHECKING:
    import httpx
from .submitter import LoginError, Peer
from .submitter import submit as submit_bytes

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
            ep = cls(
                str(obj["host"]),
                int(obj["port"]),
                str(obj["cert_sha256"]).lower(),
                int(obj["max_message_bytes"]),
            )
        except (KeyError, TypeError, ValueError):
            raise Error("the notary's GET /v1/relay answer is malformed") from None
        if not re.fullmatch(r"[0-9a-f]{64}", ep.cert_sha256):
            raise Error("the notary's GET /v1/relay names no valid certificate hash")
        return ep


def relay_endpoint(
    notary_url: str, *, timeout: float = 30.0, http: httpx.Client | None = None
) -> RelayEndpoint:
    """Ask the notary where its relay is (``GET /v1/relay``), through ``http`` when given
    (e.g. :attr:`certmail.notary_client.NotaryClient.http`: no SSL context of its own)."""
    import httpx  # here: `open` and the other commands that need no relay start faster

    url = notary_url.rstrip("/") + "/v1/relay"
    get = httpx.get if http is None else http.get
    try:
        resp = get(url, timeout=timeout, headers={"User-Agent": "certmail"})
    except httpx.HTTPError as e:
        from .notary_client import URL_HINT, http_failure, not_http

        if not_http(e, notary_url):
            raise Error(
                f"{notary_url} does not answer HTTP: it is not a notary's HTTP API", hint=URL_HINT
            ) from None
        raise TemporaryError(
            f"cannot reach the notary at {notary_url}: {http_failure(e)}",
            hint="check CERTMAIL_NOTARY_URL, or retry later",
        ) from None
    if resp.status_code == 404:
        raise NoRelayError(
            f"the notary at {notary_url} runs no SMTP relay",
            hint="send with --via smtp (direct mode), or ask its operator for --smtp",
        )
    if resp.status_code >= 400:
        raise TemporaryError(f"the notary answered {resp.status_code} to GET /v1/relay")
    try:
        return RelayEndpoint.from_json(resp.json())
    except ValueError:
        raise Error("the notary's GET /v1/relay answer is not JSON") from None


def canonical_sha256(source: Path | bytes) -> tuple[str, int]:
    """(SHA-256, size) of ``source`` (bytes, or a file read as it goes), which must be
    in CRLF lines ending with CRLF; ValueError otherwise.

    One pass in pieces (:func:`certmail.smtpdata.chunks`): a 7 MB message file is
    never held whole (docs/campaigns.md, "Memory and 10,000 recipients").
    """
    digest, size, last = hashlib.sha256(), 0, b""
    for chunk in chunks(source):
        digest.update(chunk)
        size += len(chunk)
        # every LF after a CR (a CRLF may start at the previous chunk's last byte)
        seen = (last[-1:] if last.endswith(b"\r") else b"") + chunk
        if not crlf_only(seen, 0, len(seen)):
            raise ValueError("the message must use CRLF line endings and end with CRLF")
        last = (last + chunk)[-2:]
    if last != b"\r\n":
        raise ValueError("the message must use CRLF line endings and end with CRLF")
    return digest.hexdigest(), size


def submit(
    data: Path | bytes,
    *,
    mail_from: str,
    recipients: Sequence[str],
    notary_url: str,
    token: str,
    endpoint: RelayEndpoint | None = None,
    timeout: float = 120.0,
) -> str:
    """Submit ``data`` unchanged through the notary's relay; the SHA-256 its 250 names.

    ``data`` (bytes, or a file sent as it is read) must use CRLF line endings
    and end with CRLF (SMTP's canonical form), as certmail's composed messages
    do; otherwise the bytes the relay hashes would differ and this raises
    ValueError before connecting.
    """
    if not token:
        raise Error("no notary token", hint=TOKEN_HINT)
    sha256, size = canonical_sha256(data)
    if not recipients:
        raise Error("no recipients")
    ep = endpoint or relay_endpoint(notary_url)
    if size > ep.max_message_bytes:
        raise Error(
            f"the message ({size} bytes) is larger than the relay accepts "
            f"({ep.max_message_bytes} bytes)"
        )
    peer = Peer(
        ep.host,
        ep.port,
        starttls="require",
        pin_sha256=ep.cert_sha256,
        name="the notary relay",
        retry_hint="retry later: the message is kept in the outbox",
        uncertain_hint="certmail receipts (the notary may have accepted it)",
    )
    try:
        result = submit_bytes(
            peer, mail_from, recipients, data, login=(mail_from, token), timeout=timeout
        )
    except LoginError as e:
        raise RelayLoginError(
            f"the notary relay refused the login for {mail_from} with the token in "
            f"CERTMAIL_NOTARY_TOKEN: {e.code} {e.text}",
            hint=LOGIN_HINT,
        ) from None
    m = _SHA256_REPLY.search(result.reply)
    if m is None:
        raise VerificationError(f"the relay's 250 reply names no sha256: {result.reply!r}")
    if m.group(1) != sha256:
        raise HashMismatchError(
            f"the relay hashed {m.group(1)} but the message sent hashes to {sha256}",
            hint="the bytes changed in transit: do not rely on this submission",
        )
    return sha256

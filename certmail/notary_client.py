"""Client of the notary's HTTP API v1 (DESIGN §4.6) for direct-mode notarization.

``POST /v1/notarize`` with ``{"sha256", "message_id"}`` and a bearer token
answers a receipt (DESIGN §4.3), ``POST /v1/notarize/batch`` many at once;
``GET /v1/messages/{sha256}/receipts`` lists a message's receipts, ``POST
/v1/receipts/batch`` those of many messages; ``GET /v1/messages/{sha256}/deliveries``
is the relay's delivery state (attempts, last reply, next attempt) per recipient;
``GET /v1/vkey`` is the log's checkpoint verifier key. Connection errors, timeouts and 5xx replies
are :class:`keys.errors.TemporaryError` (retry later: the message stays in
the outbox); 4xx replies are permanent :class:`certmail.errors.NotaryRequestError`.

Every receipt is checked before it is kept: its inclusion proof must verify
against the notary's verifier key, and its statement must name this message's
SHA-256 and Message-ID.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keys.errors import Error, TemporaryError, VerificationError

from .errors import NotaryNotFoundError, NotaryRequestError

if TYPE_CHECKING:  # httpx is imported where a request is made: `open` starts faster
    import httpx

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
URL_HINT = "check CERTMAIL_NOTARY_URL: it must be the notary's HTTP API (http[s]://host:port)"
TOKEN_HINT = "set CERTMAIL_NOTARY_TOKEN (ask the notary operator for a token)"  # noqa: S105


__all__ = [
    "TOKEN_HINT",
    "URL_HINT",
    "NotaryClient",
    "NotaryNotFoundError",
    "NotaryRequestError",
    "http_failure",
    "speaks_http",
]


class NotaryClient:
    """A notary at ``url`` used with the account token ``token``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        vkey: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise Error(f"not a notary URL: {url!r}", hint="set CERTMAIL_NOTARY_URL=https://...")
        self.url = url.rstrip("/")
        self.token = token
        self._vkey = vkey
        self._verifier: Any = None  # notary.note.Verifier of the pinned key, made once
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "certmail"},
        )

    @property
    def http(self) -> httpx.Client:
        """The one HTTP client of this object (base URL the notary's), for the requests
        that map errors their own way: one SSL context and connection pool for all."""
        return self._http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NotaryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, auth: bool = True, json: Any = None
    ) -> httpx.Response:
        import httpx

        headers = {}
        if auth:
            if not self.token:
                raise NotaryRequestError("no notary token", hint=TOKEN_HINT)
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            resp = self._http.request(method, path, json=json, headers=headers)
        except httpx.HTTPError as e:
            if isinstance(e, httpx.RemoteProtocolError | httpx.NetworkError) and not_http(
                e, self.url
            ):
                raise Error(
                    f"{self.url} does not answer HTTP: it is not a notary's HTTP API",
                    hint=URL_HINT,
                ) from None
            # Say what happened; whoever queued something says so in its own hint.
            raise TemporaryError(
                f"cannot reach the notary at {self.url}: {http_failure(e)}",
                hint=f"check that the notary at {self.url} is running, then try again",
            ) from None
        if resp.status_code >= 500:
            raise TemporaryError(
                f"the notary answered {resp.status_code}: {_message(resp)}",
                hint="try again later (the notary has a temporary problem)",
            )
        if resp.status_code == 404:
            raise NotaryNotFoundError(f"not found at the notary: {_message(resp)}")
        if resp.status_code >= 400:
            hint = TOKEN_HINT if resp.status_code in (401, 403) else None
            raise NotaryRequestError(f"the notary refused: {_message(resp)}", hint=hint)
        return resp

    def vkey(self) -> str:
        """The notary's verifier key text (fetched once, then pinned for this client)."""
        if self._vkey is None:
            self._vkey = self.request("GET", "/v1/vkey", auth=False).text.strip()
        return self._vkey

    def notarize(self, sha256: str, message_id: str) -> dict[str, Any]:
        """Notarize ``sha256``; return the receipt after checking it (see module doc)."""
        if not _SHA256.match(sha256):
            raise ValueError("sha256 must be 64 lowercase hex digits")
        resp = self.request(
            "POST", "/v1/notarize", json={"sha256": sha256, "message_id": message_id}
        )
        receipt = _json_object(resp)
        self.check_receipt(receipt, sha256, message_id)
        return receipt

    def notarize_batch(self, items: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """Notarize many ``(sha256, message_id)`` in one ``POST /v1/notarize/batch``: one
        receipt per item, in their order. Not checked here: the caller checks each one it
        keeps (:meth:`check_receipt`), so that one bad receipt fails its message only."""
        for sha256, _ in items:
            if not _SHA256.match(sha256):
                raise ValueError("sha256 must be 64 lowercase hex digits")
        body = {"items": [{"sha256": s, "message_id": m} for s, m in items]}
        got = _json_object(self.request("POST", "/v1/notarize/batch", json=body)).get("receipts")
        if not isinstance(got, list) or len(got) != len(items):
            raise TemporaryError("the notary's batch answer does not list one receipt per item")
        return [r if isinstance(r, dict) else {} for r in got]

    def post_ack(self, body: dict[str, Any], sha256: str, message_id: str) -> dict[str, Any]:
        """``POST /v1/ack`` (unauthenticated); the ContentHandover receipt after checking it."""
        receipt = _json_object(self.request("POST", "/v1/ack", auth=False, json=body))
        self.check_receipt(receipt, sha256, message_id)
        return receipt

    def receipts(self, sha256: str) -> list[dict[str, Any]]:
        """Every receipt the notary holds for ``sha256`` (for this account)."""
        body = _json_object(self.request("GET", f"/v1/messages/{sha256}/receipts"))
        items = body.get("receipts")
        if not isinstance(items, list):
            raise NotaryRequestError("the notary's answer has no receipts list")
        return [r for r in items if isinstance(r, dict)]

    def receipts_batch(self, hashes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Every receipt the notary holds for each of ``hashes`` (this account's), in one
        ``POST /v1/receipts/batch`` (docs/api.md); a hash without any maps to ``[]``.

        Not checked here: the caller checks the receipts it keeps (:meth:`check_receipt`).
        A notary without the route (older than it) is asked one hash at a time.
        """
        want = list(dict.fromkeys(hashes))
        try:
            resp = self.request("POST", "/v1/receipts/batch", json={"sha256": want})
        except NotaryNotFoundError:
            return {h: self._receipts_or_none(h) for h in want}
        items = _json_object(resp).get("messages")
        if not isinstance(items, list):
            raise NotaryRequestError("the notary's answer has no messages list")
        out: dict[str, list[dict[str, Any]]] = {h: [] for h in want}
        for item in items:
            if not isinstance(item, dict) or item.get("sha256") not in out:
                continue
            got = item.get("receipts")
            if isinstance(got, list):
                out[item["sha256"]] = [r for r in got if isinstance(r, dict)]
        return out

    def _receipts_or_none(self, sha256: str) -> list[dict[str, Any]]:
        try:
            return self.receipts(sha256)
        except NotaryNotFoundError:
            return []

    def deliveries(self, sha256: str) -> list[dict[str, Any]]:
        """The relay's delivery state of ``sha256`` per recipient (``GET .../deliveries``).

        Each item has ``recipient``, ``state``, ``attempts``, ``last_attempt``,
        ``last_reply`` (``{code, text}`` or null), ``last_error`` and
        ``next_attempt`` (docs/api.md). A message the relay never carried for
        this account raises :class:`NotaryNotFoundError`.
        """
        body = _json_object(self.request("GET", f"/v1/messages/{sha256}/deliveries"))
        items = body.get("deliveries")
        if not isinstance(items, list):
            raise NotaryRequestError("the notary's answer has no deliveries list")
        return [d for d in items if isinstance(d, dict) and isinstance(d.get("recipient"), str)]

    def deliveries_batch(self, hashes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """:meth:`deliveries` of each of ``hashes`` in one ``POST /v1/deliveries/batch``
        (docs/api.md; at most 1,000); a hash the relay never carried for this account maps
        to ``[]``. A notary without the route (older than it) is asked one hash at a time."""
        want = list(dict.fromkeys(hashes))
        try:
            resp = self.request("POST", "/v1/deliveries/batch", json={"sha256": want})
        except NotaryNotFoundError:
            return {h: self._deliveries_or_none(h) for h in want}
        items = _json_object(resp).get("messages")
        if not isinstance(items, list):
            raise NotaryRequestError("the notary's answer has no messages list")
        out: dict[str, list[dict[str, Any]]] = {h: [] for h in want}
        for item in items:
            if isinstance(item, dict) and item.get("sha256") in out:
                got = item.get("deliveries")
                out[item["sha256"]] = [
                    d
                    for d in (got if isinstance(got, list) else [])
                    if isinstance(d, dict) and isinstance(d.get("recipient"), str)
                ]
        return out

    def _deliveries_or_none(self, sha256: str) -> list[dict[str, Any]]:
        try:
            return self.deliveries(sha256)
        except NotaryNotFoundError:
            return []

    def check_receipt(self, receipt: dict[str, Any], sha256: str, message_id: str | None) -> None:
        """Raise VerificationError unless ``receipt`` proves ``sha256`` was logged."""
        from notary.note import Verifier
        from notary.receipt import Receipt

        if self._verifier is None:
            self._verifier = Verifier.from_vkey(self.vkey())
        stmt = Receipt.from_json(receipt).verify(self._verifier)
        msg = stmt.get("message") or {}
        if msg.get("sha256") != sha256:
            raise VerificationError("the notary's receipt is for another message hash")
        if message_id is not None and msg.get("id") != message_id:
            raise VerificationError("the notary's receipt names another Message-ID")


def http_failure(e: httpx.HTTPError) -> str:
    """What went wrong with an HTTP request, in words (no exception class names)."""
    import httpx

    if isinstance(e, httpx.TimeoutException):
        return "it did not answer in time"
    if isinstance(e, httpx.RemoteProtocolError):
        return "its answer is not HTTP (is the URL the notary's HTTP API?)"
    if isinstance(e, httpx.ConnectError):
        text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(e)).strip()
        return text[:1].lower() + text[1:] if text else "the connection failed"
    if isinstance(e, httpx.TooManyRedirects):
        return "it redirects too often"
    return "the connection failed"


def not_http(error: httpx.HTTPError, url: str) -> bool:
    """Whether a request to ``url`` broke because the server speaks another protocol:
    what it answered is no HTTP status line (an SMTP ``220`` greeting, say), or,
    failing that evidence, a fresh connection shows it (:func:`speaks_http`)."""
    import httpx

    if isinstance(error, httpx.RemoteProtocolError) and "illegal status line" in str(error):
        return True
    return not speaks_http(url)


def speaks_http(url: str, *, timeout: float = 2.0) -> bool:
    """False when the server at ``url`` plainly speaks another protocol.

    Called after a request broke: a server that greets first (SMTP ``220``,
    IMAP, SSH) is not an HTTP server; for ``https`` a TLS handshake that the
    peer answers with plaintext is the same mistake. True when in doubt (the
    failure is then treated as transient).
    """
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host, port = parts.hostname or "", parts.port or (443 if secure else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if secure:
                try:
                    ctx = ssl.create_default_context()
                    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                    ctx.wrap_socket(sock, server_hostname=host).close()
                except ssl.SSLError as e:
                    return "WRONG_VERSION_NUMBER" not in str(e).upper()
                return True
            sock.settimeout(timeout)
            try:
                first = sock.recv(16)
            except TimeoutError:
                return True  # it waits for a request, as HTTP servers do
            return not first or first.startswith(b"HTTP/")
    except OSError:
        return True


def _json_object(resp: httpx.Response) -> dict[str, Any]:
    try:
        obj = resp.json()
    except ValueError:
        raise TemporaryError("the notary's answer is not JSON") from None
    if not isinstance(obj, dict):
        raise TemporaryError("the notary's answer is not a JSON object")
    return obj


def _message(resp: httpx.Response) -> str:
    try:
        obj = resp.json()
        if isinstance(obj, dict) and isinstance(obj.get("message"), str):
            return " ".join(obj["message"].split())[:300]
    except ValueError:
        pass
    return resp.reason_phrase or str(resp.status_code)

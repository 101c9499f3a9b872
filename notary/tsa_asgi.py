"""The TSA's HTTP fast path: RFC 3161 §3.4 time-stamping over HTTP as raw ASGI.

:class:`TSAMiddleware` answers ``POST /tsa`` (``application/timestamp-query``
in, ``application/timestamp-reply`` out) and ``GET /v1/tsa/chain`` (PEM, the
TSA certificate first, then its issuers up to the root) itself, without
FastAPI's routing, validation or threadpool, and hands every other request to
the application it wraps. A malformed query is still answered with HTTP 200
and a TimeStampResp whose PKIStatus is rejection (RFC 3161 §2.4.2); HTTP
errors are kept for what is not a query at all: 405 (wrong method), 413 (too
large), 415 (wrong content type), as JSON ``{"error": code, "message": text}``.
"""

from __future__ import annotations

import json

from notary.body_limit import ASGIApp, Receive, Scope, Send, TooLarge, receive_body
from notary.rfc3161 import TimeStampAuthority

TSA_PATH = "/tsa"
CHAIN_PATH = "/v1/tsa/chain"
QUERY_TYPE = b"application/timestamp-query"
REPLY_TYPE = b"application/timestamp-reply"
CHAIN_TYPE = b"application/pem-certificate-chain"
MAX_QUERY_BYTES = 64 * 1024


class TSAMiddleware:
    """Serve ``POST /tsa`` and ``GET /v1/tsa/chain`` directly; pass the rest to ``app``."""

    def __init__(
        self, app: ASGIApp, tsa: TimeStampAuthority, max_query_bytes: int = MAX_QUERY_BYTES
    ) -> None:
        self.app = app
        self.tsa = tsa
        self.max_query_bytes = max_query_bytes
        chain = tsa.chain_pem()
        self._chain_headers = [
            (b"content-type", CHAIN_TYPE),
            (b"content-length", str(len(chain)).encode()),
        ]
        self._chain = chain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == TSA_PATH:
                await self._tsa(scope, receive, send)
                return
            if path == CHAIN_PATH:
                await self._chain_pem(scope, send)
                return
        await self.app(scope, receive, send)

    async def _tsa(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _error(send, 405, "method_not_allowed", "use POST", [(b"allow", b"POST")])
            return
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
        refusal = check_query(content_type, -1, self.max_query_bytes)  # the length: below
        if refusal is not None:
            await _error(send, *refusal)
            return
        try:
            body = await receive_body(scope, receive, self.max_query_bytes)
        except TooLarge:
            await _error(send, *_too_large_refusal(self.max_query_bytes))
            return
        if body is None:  # the client went away
            return
        reply = self.tsa.respond(body)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", REPLY_TYPE),
                    (b"content-length", str(len(reply)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply})

    async def _chain_pem(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _error(send, 405, "method_not_allowed", "use GET", [(b"allow", b"GET, HEAD")])
            return
        await send({"type": "http.response.start", "status": 200, "headers": self._chain_headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else self._chain})


def check_query(content_type: bytes, length: int, limit: int) -> tuple[int, str, str] | None:
    """The HTTP refusal (status, code, message) of a time-stamp request, or None.

    Shared by :class:`TSAMiddleware` and the reference FastAPI route that serves
    ``POST /tsa`` when the fast paths are off (``CERTMAIL_REFERENCE_ONLY=1``).
    """
    if content_type.split(b";", 1)[0].strip().lower() != QUERY_TYPE:
        return (
            415,
            "unsupported_media_type",
            "send an RFC 3161 TimeStampReq as application/timestamp-query",
        )
    if length > limit:
        return _too_large_refusal(limit)
    return None


def _too_large_refusal(limit: int) -> tuple[int, str, str]:
    return 413, "payload_too_large", f"a time-stamp query is at most {limit} bytes"


async def _error(
    send: Send,
    status: int,
    code: str,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

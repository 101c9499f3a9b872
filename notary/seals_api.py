"""HTTP routes of sealed delivery (docs/sealed.md, docs/api.md), added to the v1 app.

``POST /v1/seals`` (authenticated: the sender registers K_n),
``POST /v1/seals/{sha256}/open`` (the recipient's signed acknowledgement;
answers K_n and the ContentHandover receipt once it is logged) and
``POST /v1/seals/{sha256}/refuse`` (a signed refusal: RejectionByRecipient).
The open and refuse routes are unauthenticated (the OpenPGP signature is the
authentication) and bounded like ``POST /v1/ack``: per source address, a small
body, signature checks in their own few threads. The expiry sweep runs beside the
app (:meth:`notary.seals.Seals.run_sweeper`), started and stopped with it.

``POST /v1/seals/{sha256}/open`` is served by :class:`SealOpenFastPath`, raw
ASGI in front of FastAPI's routing (as ``POST /v1/notarize`` is), unless
``CERTMAIL_REFERENCE_ONLY=1``: the FastAPI route and it call the same
:meth:`SealRoutes.open` (the same rate limits, validation, answers and errors).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from keys.errors import ConflictError, Error, MalformedError, NotFoundError, VerificationError
from notary.ack import Busy, SignatureChecks
from notary.ackformat import MAX_ACK_BODY, parse_ack_request
from notary.body_limit import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    TooLarge,
    json_error,
    loads,
    read_body,
    read_bytes,
    receive_body,
)
from notary.lifespan import run_in_lifespan
from notary.sealformat import MAX_REGISTRATION_BODY, parse_refusal_request, parse_registration
from notary.seals import Gone, Seals, share_b64
from notary.tracking import RateLimiter

__all__ = [
    "SealOpenFastPath",
    "SealRoutes",
    "TooLarge",
    "include_seal_routes",
]


#: An error answer: the exception class (checked in order), the HTTP status, the error code.
Refusal = tuple[type[Error], int, str]

_SEAL_REFUSALS: tuple[Refusal, ...] = (
    (MalformedError, 400, "bad_request"),
    (VerificationError, 422, "bad_signature"),
    (Gone, 410, "gone"),
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
)


def refusal(e: Exception, limit: int, table: Sequence[Refusal]) -> JSONResponse:
    """The JSON error for an exception of a route: 413 for TooLarge (over ``limit`` bytes),
    the first ``table`` row ``e`` is an instance of, else 400."""
    if isinstance(e, TooLarge):
        return json_error(413, "too_large", f"body over {limit} bytes")
    assert isinstance(e, Error)
    for kind, status, code in table:
        if isinstance(e, kind):
            return json_error(status, code, e.message)
    return json_error(400, "bad_request", e.message)


def _refused(e: Exception, limit: int) -> JSONResponse:
    """The JSON error for an exception of the seal routes."""
    if isinstance(e, Busy):
        return json_error(503, "busy", e.message, "1")
    return refusal(e, limit, _SEAL_REFUSALS)


class SealRoutes:
    """What the seal routes share: the seal store, the signature checks, the rate limits,
    and the open handler both HTTP ways to it call."""

    def __init__(self, service: Any, seals: Seals) -> None:
        cfg = service.config
        self.seals = seals
        self.checks = SignatureChecks()
        self.per_source = RateLimiter(cfg.ack_per_source, cfg.ack_window)
        self.per_message = RateLimiter(cfg.ack_per_message, cfg.ack_window)
        self.retry_after = str(max(1, int(cfg.ack_window)))

    def source_limited(self, source: str) -> Response | None:
        """The 429 for a source over its allowance (counted), else None."""
        if self.per_source.allow(b"seal:" + source.encode()):
            return None
        return json_error(
            429, "rate_limited", "too many requests from this address", self.retry_after
        )

    def parsed(self, sha256: str, body: bytes, parse: Callable[[Any], Any]) -> Any:
        """The signed request in ``body``, or the 429 for a message over its allowance."""
        req = parse(loads(body))
        if not self.per_message.allow(b"seal:" + sha256.encode()[:64]):
            return json_error(
                429, "rate_limited", "too many requests for this message", self.retry_after
            )
        return req

    async def open(self, sha256: str, body: bytes) -> Response:
        """The answer to ``POST /v1/seals/{sha256}/open`` with ``body`` (already read)."""
        try:
            req = self.parsed(sha256, body, parse_ack_request)
            if isinstance(req, Response):
                return req
            share, receipt = await self.seals.open(sha256, req, self.checks)
        except Error as e:
            return _refused(e, MAX_ACK_BODY)
        return JSONResponse({"share": share_b64(share), "receipt": receipt.to_json()})


class SealOpenFastPath:
    """ASGI: answer ``POST /v1/seals/{sha256}/open`` without FastAPI's per-request
    machinery (routing, dependencies, middleware), through :meth:`SealRoutes.open`."""

    def __init__(self, app: ASGIApp, routes: SealRoutes) -> None:
        self.app, self.routes = app, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sha256 = _open_path(scope)
        if sha256 is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        answer = self.routes.source_limited(client[0] if client else "")
        if answer is None:
            try:
                body = await receive_body(scope, receive, MAX_ACK_BODY)
            except TooLarge as e:
                answer = _refused(e, MAX_ACK_BODY)
            else:
                if body is None:  # the client went away
                    return
                answer = await self.routes.open(sha256, body)
        await answer(scope, receive, send)


def _open_path(scope: Scope) -> str | None:
    """The ``{sha256}`` of a ``POST /v1/seals/{sha256}/open`` request, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if not (path.startswith("/v1/seals/") and path.endswith("/open")):
        return None
    sha256 = path[len("/v1/seals/") : -len("/open")]
    return sha256 if sha256 and "/" not in sha256 else None


def include_seal_routes(
    app: FastAPI, service: Any, authenticate: Callable[[Any, str | None], Any]
) -> SealRoutes:
    """Add the ``/v1/seals`` routes to ``app`` and run the expiry sweep beside it; the
    routes' shared part (for :class:`SealOpenFastPath`)."""
    seals = Seals(service, service.config.directory)
    app.state.seals = seals  # the one seal store: pickup delivery's routes share it
    routes = SealRoutes(service, seals)
    _run_sweeper_with(app, seals)

    @app.post("/v1/seals", summary="Register K_n of a sealed message", tags=["sealed"])
    async def register(request: Request) -> Response:
        try:
            acct = authenticate(service, request.headers.get("authorization"))
            reg = parse_registration(await read_body(request, MAX_REGISTRATION_BODY))
            seal = await asyncio.to_thread(seals.register, acct.id, reg)
            seals.changed.set()  # the sweeper's next expiry may be this one
        except (TooLarge, Error) as e:  # a bad token is the app's ApiError: 401
            return _refused(e, MAX_REGISTRATION_BODY)
        return JSONResponse({"sha256": seal.sha256, "state": seal.state})

    @app.post(
        "/v1/seals/{sha256}/open",
        summary="A signed acknowledgement: logs ContentHandover, then answers K_n",
        tags=["sealed"],
    )
    async def open_seal(sha256: str, request: Request) -> Response:
        # Served by SealOpenFastPath unless CERTMAIL_REFERENCE_ONLY=1; the same handler.
        source = request.client.host if request.client else ""
        if (limited := routes.source_limited(source)) is not None:
            return limited
        try:
            body = await read_bytes(request, MAX_ACK_BODY)
        except TooLarge as e:
            return _refused(e, MAX_ACK_BODY)
        return await routes.open(sha256, body)

    @app.post(
        "/v1/seals/{sha256}/refuse",
        summary="A signed refusal: logs RejectionByRecipient, destroys K_n",
        tags=["sealed"],
    )
    async def refuse_seal(sha256: str, request: Request) -> Response:
        source = request.client.host if request.client else ""
        if (limited := routes.source_limited(source)) is not None:
            return limited
        try:
            req = routes.parsed(
                sha256, await read_bytes(request, MAX_ACK_BODY), parse_refusal_request
            )
            if isinstance(req, Response):
                return req
            receipt = await seals.refuse(sha256, req, routes.checks)
        except (TooLarge, Error) as e:
            return _refused(e, MAX_ACK_BODY)
        return JSONResponse({"receipt": receipt.to_json()})

    return routes


def _run_sweeper_with(app: FastAPI, seals: Seals) -> None:
    """Run ``seals``' expiry sweep inside the app's lifespan (after the sequencer started)."""
    run_in_lifespan(app, seals.run_sweeper, seals.close)

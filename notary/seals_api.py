"""HTTP routes of sealed delivery (docs/sealed.md, docs/api.md), added to the v1 app.

``POST /v1/seals`` (authenticated: the sender registers K_n),
``POST /v1/seals/{sha256}/open`` (the recipient's signed acknowledgement;
answers K_n and the ContentHandover receipt once it is logged) and
``POST /v1/seals/{sha256}/refuse`` (a signed refusal: RejectionByRecipient).
The open and refuse routes are unauthenticated (the OpenPGP signature is the
authentication) and bounded like ``POST /v1/ack``: per source address, a small
body, signature checks in their own few threads. The expiry sweep runs beside the
app (:meth:`notary.seals.Seals.run_sweeper`), started and stopped with it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from keys.errors import ConflictError, Error, MalformedError, NotFoundError, VerificationError
from notary.ack import Busy, SignatureChecks
from notary.ackformat import MAX_ACK_BODY, parse_ack_request
from notary.lifespan import run_in_lifespan
from notary.sealformat import MAX_REGISTRATION_BODY, parse_refusal_request, parse_registration
from notary.seals import Gone, Seals, share_b64
from notary.tracking import RateLimiter

__all__ = ["TooLarge", "include_seal_routes", "json_error", "read_body"]


def json_error(
    status: int, code: str, message: str, retry_after: str | None = None
) -> JSONResponse:
    """The API's JSON error answer."""
    headers = {"Retry-After": retry_after} if retry_after else None
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


class TooLarge(Exception):
    """The request body is over its limit (answered 413)."""


async def read_body(request: Request, limit: int) -> Any:
    """The request's JSON body, read up to ``limit`` bytes (TooLarge beyond, MalformedError
    when it is not JSON)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise TooLarge
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedError("the body is not valid JSON") from None


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


def include_seal_routes(
    app: FastAPI, service: Any, authenticate: Callable[[Any, str | None], Any]
) -> None:
    """Add the ``/v1/seals`` routes to ``app`` and run the expiry sweep beside it."""
    seals = Seals(service, service.config.directory)
    app.state.seals = seals  # the one seal store: pickup delivery's routes share it
    checks = SignatureChecks()
    cfg = service.config
    per_source = RateLimiter(cfg.ack_per_source, cfg.ack_window)
    per_message = RateLimiter(cfg.ack_per_message, cfg.ack_window)
    retry_after = str(max(1, int(cfg.ack_window)))
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

    async def signed(request: Request, sha256: str, parse: Callable[[Any], Any]) -> Any:
        source = request.client.host if request.client else ""
        if not per_source.allow(b"seal:" + source.encode()):
            return json_error(
                429, "rate_limited", "too many requests from this address", retry_after
            )
        req = parse(await read_body(request, MAX_ACK_BODY))
        if not per_message.allow(b"seal:" + sha256.encode()[:64]):
            return json_error(
                429, "rate_limited", "too many requests for this message", retry_after
            )
        return req

    @app.post(
        "/v1/seals/{sha256}/open",
        summary="A signed acknowledgement: logs ContentHandover, then answers K_n",
        tags=["sealed"],
    )
    async def open_seal(sha256: str, request: Request) -> Response:
        try:
            req = await signed(request, sha256, parse_ack_request)
            if isinstance(req, Response):
                return req
            share, receipt = await seals.open(sha256, req, checks)
        except (TooLarge, Error) as e:
            return _refused(e, MAX_ACK_BODY)
        return JSONResponse({"share": share_b64(share), "receipt": receipt.to_json()})

    @app.post(
        "/v1/seals/{sha256}/refuse",
        summary="A signed refusal: logs RejectionByRecipient, destroys K_n",
        tags=["sealed"],
    )
    async def refuse_seal(sha256: str, request: Request) -> Response:
        try:
            req = await signed(request, sha256, parse_refusal_request)
            if isinstance(req, Response):
                return req
            receipt = await seals.refuse(sha256, req, checks)
        except (TooLarge, Error) as e:
            return _refused(e, MAX_ACK_BODY)
        return JSONResponse({"receipt": receipt.to_json()})


def _run_sweeper_with(app: FastAPI, seals: Seals) -> None:
    """Run ``seals``' expiry sweep inside the app's lifespan (after the sequencer started)."""
    run_in_lifespan(app, seals.run_sweeper, seals.close)

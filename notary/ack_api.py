"""HTTP routes for acknowledgements and open tracking (docs/ack.md), added to the v1 app.

``POST /v1/ack`` (unauthenticated: the OpenPGP signature is the
authentication), ``POST /v1/tracking`` (authenticated) and ``GET /r/{token}``.

``POST /v1/ack`` is bounded so that a flood costs the log nothing and never
slows authenticated traffic: at most ``ack_per_source`` requests per source
address and ``ack_per_message`` per message in any ``ack_window`` seconds
(429 with Retry-After), and the signature checks run in their own few threads with
a short queue (503 ``busy`` beyond it); see :mod:`notary.ack`. The two limits
hold across the worker processes of ``serve --workers N``: their counts are
shared through a small file in the notary's directory
(:class:`notary.ratelimit.SharedRateLimiter`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from keys.errors import MalformedError, VerificationError
from notary.ack import Busy, SignatureChecks, acknowledge
from notary.ackformat import MAX_ACK_BODY, parse_ack_request
from notary.body_limit import TooLarge, json_error, read_body
from notary.ratelimit import SharedRateLimiter
from notary.tracking import (
    PIXEL_GIF,
    RateLimited,
    RateLimiter,
    parse_registration,
    record_hit,
    register,
)

#: The file in the notary's directory that holds the /v1/ack allowances of every worker.
ACK_LIMITS_FILE = "ack-limits.db"
#: The largest ``POST /v1/tracking`` body.
MAX_TRACKING_BODY = 64 * 1024


def include_ack_routes(
    app: FastAPI, service: Any, authenticate: Callable[[Any, str | None], Awaitable[Any]]
) -> None:
    """Add ``POST /v1/ack``, ``POST /v1/tracking`` and ``GET /r/{token}`` to ``app``."""
    include_acknowledgement_route(app, service)
    include_tracking_routes(app, service, authenticate)


def include_acknowledgement_route(app: FastAPI, service: Any) -> None:
    """Add ``POST /v1/ack`` (bounded per source and per message; see the module docstring)."""
    cfg = service.config
    shared = cfg.directory / ACK_LIMITS_FILE  # one allowance for every worker
    per_source = SharedRateLimiter(shared, "source", cfg.ack_per_source, cfg.ack_window)
    per_message = SharedRateLimiter(shared, "message", cfg.ack_per_message, cfg.ack_window)
    checks = SignatureChecks()
    retry_after = str(max(1, int(cfg.ack_window)))

    @app.post(
        "/v1/ack",
        summary="A recipient's signed acknowledgement: logs ContentHandover",
        tags=["acknowledgements"],
    )
    async def ack(request: Request) -> Response:
        # Unauthenticated, so cheapest checks first: the source's rate before
        # the body is read, the message's after it is parsed, the log lookup
        # next, the signature check last (bounded, off the event loop).
        source = request.client.host if request.client else ""
        if not per_source.allow(b"source:" + source.encode()):
            return json_error(
                429, "rate_limited", "too many acknowledgements from this address", retry_after
            )
        try:
            req = parse_ack_request(await read_body(request, MAX_ACK_BODY))
            if not per_message.allow(b"message:" + req.sha256.encode()):
                return json_error(
                    429, "rate_limited", "too many acknowledgements of this message", retry_after
                )
            receipt = await acknowledge(service, req, checks)
        except TooLarge:
            return json_error(413, "too_large", f"body over {MAX_ACK_BODY} bytes")
        except MalformedError as e:
            return json_error(400, "bad_request", e.message)
        except VerificationError as e:
            return json_error(422, "bad_signature", e.message)
        except Busy as e:
            return json_error(503, "busy", e.message, "1")
        # Other errors (malformed 400, unknown message 404, log unavailable 503)
        # are answered by the app's handler for keys.errors.Error.
        return Response(
            json.dumps(receipt.to_json(), separators=(",", ":")), media_type="application/json"
        )


def include_tracking_routes(
    app: FastAPI, service: Any, authenticate: Callable[[Any, str | None], Awaitable[Any]]
) -> None:
    """Add ``POST /v1/tracking`` (authenticated) and ``GET /r/{token}`` (rate-limited per link)."""
    limiter = RateLimiter()

    @app.post(
        "/v1/tracking",
        summary="Register open-tracking token hashes for a message",
        tags=["tracking"],
    )
    async def tracking(request: Request) -> Response:
        try:
            acct = await authenticate(service, request.headers.get("authorization"))
            reg = parse_registration(await read_body(request, MAX_TRACKING_BODY))
            n = register(service, acct.id, reg, service.clock())
        except TooLarge:
            return json_error(413, "too_large", f"body over {MAX_TRACKING_BODY} bytes")
        return Response(json.dumps({"registered": n}), media_type="application/json")

    @app.get(
        "/r/{token}",
        summary="A tracking link: logs ContentAccessTracking (weak evidence)",
        tags=["tracking"],
        response_class=Response,
    )
    async def hit(token: str, request: Request) -> Response:
        try:
            await record_hit(
                service,
                limiter,
                token,
                user_agent=request.headers.get("user-agent"),
                remote=request.client.host if request.client else None,
            )
        except RateLimited:
            return json_error(429, "rate_limited", "too many hits on this link just now")
        return Response(
            PIXEL_GIF,
            media_type="image/gif",
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

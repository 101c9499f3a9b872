"""HTTP routes of pickup delivery (docs/sealed.md "Pickup", docs/api.md), added to the v1 app.

``POST /v1/pickups`` (authenticated: the sender registers K_n and the
ciphertext), and for the page, unauthenticated (the link's token is the
authentication) and rate-limited per source address:
``GET /v1/pickup/{token}`` (what the page shows before the ack),
``POST /v1/pickup/{token}/ack`` (logs ContentHandover, then answers K_n),
``POST /v1/pickup/{token}/refuse`` (RejectionByRecipient) and
``GET /v1/pickup/{token}/content`` (the ciphertext, once released);
``GET /p/{token}`` is the page itself (``templates/pickup.html``,
``static/pickup.js``, a CSP allowing nothing but this origin).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from keys.errors import Error, MalformedError, NotFoundError, VerificationError
from notary.body_limit import TooLarge, json_error, read_body
from notary.lifespan import run_in_lifespan
from notary.pickup import Locked, NotYet, Pickups, WrongSecret
from notary.pickupformat import (
    MAX_PICKUP_REQUEST,
    is_token,
    parse_pickup_registration,
    parse_pickup_request,
)
from notary.seals import Gone, share_b64
from notary.seals_api import Refusal, refusal
from notary.tracking import RateLimiter
from notary.web import security_headers

__all__ = ["PICKUP_CSP", "include_pickup_routes"]

#: The pickup page's CSP: this origin's script and style, fetches to this origin only.
PICKUP_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_NO_LINK = "no such pickup link: check that the whole link was copied"


_PICKUP_REFUSALS: tuple[Refusal, ...] = (
    (Locked, 423, "locked"),
    (MalformedError, 400, "bad_request"),
    (VerificationError, 422, "refused"),
    (Gone, 410, "gone"),
    (NotFoundError, 404, "not_found"),
    (NotYet, 409, "not_yet"),
)


def _refused(e: Exception, limit: int) -> JSONResponse:
    """The JSON error for an exception of the pickup routes (a sentence the page shows)."""
    if isinstance(e, WrongSecret):
        out = json_error(403, "wrong_secret", e.message)
        out.headers["X-Tries-Left"] = str(e.left)
        return out
    return refusal(e, limit, _PICKUP_REFUSALS)


def _page_gate(cfg: Any) -> Callable[[Request, str], Response | None]:
    """The check before each page route: the refusal for a source address over its
    rate (429) or a token that cannot be one (404), else None."""
    per_source = RateLimiter(cfg.ack_per_source, cfg.ack_window)
    retry_after = str(max(1, int(cfg.ack_window)))

    def limited(request: Request, token: str) -> Response | None:
        source = request.client.host if request.client else ""
        if not per_source.allow(b"pickup:" + source.encode()):
            return json_error(
                429, "rate_limited", "too many requests from this address", retry_after
            )
        if not is_token(token):
            return json_error(404, "not_found", _NO_LINK)
        return None

    return limited


def include_pickup_routes(
    app: FastAPI, service: Any, authenticate: Callable[[Any, str | None], Any]
) -> None:
    """Add the pickup routes to ``app`` (after :func:`notary.seals_api.include_seal_routes`)."""
    pickups = Pickups(app.state.seals, service.config.directory)
    cfg = service.config
    limited = _page_gate(cfg)
    _purge_with(app, pickups, cfg.pickup_purge_every)

    @app.post("/v1/pickups", summary="Register a pickup: K_n and the ciphertext", tags=["pickup"])
    async def register(request: Request) -> Response:
        try:
            acct = authenticate(service, request.headers.get("authorization"))
            reg = parse_pickup_registration(await read_body(request, cfg.max_body_bytes))
            p = await asyncio.to_thread(pickups.register, acct.id, reg)
            app.state.seals.changed.set()
        except (TooLarge, Error) as e:
            return _refused(e, cfg.max_body_bytes)
        return JSONResponse({"sha256": p.sha256, "state": "waiting"})

    @app.get("/v1/pickup/{token}", summary="What the pickup page shows", tags=["pickup"])
    async def show(token: str, request: Request) -> Response:
        if (refused := limited(request, token)) is not None:
            return refused
        try:
            p = pickups.find(token)
        except Error as e:
            return _refused(e, 0)
        info = p.public(pickups.seal_of(p), service.clock())
        return JSONResponse(info, headers={"Cache-Control": "no-store"})

    @app.post("/v1/pickup/{token}/ack", summary="Acknowledge: logs ContentHandover, answers K_n")
    async def ack(token: str, request: Request) -> Response:
        if (refused := limited(request, token)) is not None:
            return refused
        try:
            req = parse_pickup_request(await read_body(request, MAX_PICKUP_REQUEST))
            share, receipt, p = await pickups.release(token, req)
        except (TooLarge, Error) as e:
            return _refused(e, MAX_PICKUP_REQUEST)
        body = {"share": share_b64(share), "receipt": receipt.to_json(), "released": p.released}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.post("/v1/pickup/{token}/refuse", summary="Refuse: logs RejectionByRecipient")
    async def refuse(token: str, request: Request) -> Response:
        if (refused := limited(request, token)) is not None:
            return refused
        try:
            req = parse_pickup_request(await read_body(request, MAX_PICKUP_REQUEST))
            receipt = await pickups.refuse(token, req)
        except (TooLarge, Error) as e:
            return _refused(e, MAX_PICKUP_REQUEST)
        return JSONResponse({"receipt": receipt.to_json()})

    @app.get("/v1/pickup/{token}/content", summary="The ciphertext, once released")
    async def content(token: str, request: Request) -> Response:
        if (refused := limited(request, token)) is not None:
            return refused
        try:
            data = await asyncio.to_thread(pickups.content, token)
        except Error as e:
            return _refused(e, 0)
        return Response(
            data, media_type="application/octet-stream", headers={"Cache-Control": "no-store"}
        )

    @app.get("/p/{token}", response_class=HTMLResponse, summary="The pickup page")
    def page(token: str) -> Response:
        text = resources.files("notary.web").joinpath("templates", "pickup.html").read_text()
        return HTMLResponse(text, headers=security_headers(PICKUP_CSP))


def _purge_with(app: FastAPI, pickups: Pickups, every: float) -> None:
    """Delete the ciphertext of expired or refused pickups beside the app (the seal
    store's sweep destroys their shares)."""

    async def purge() -> None:
        while True:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(pickups.purge)
            await asyncio.sleep(every)

    run_in_lifespan(app, purge, pickups.close)

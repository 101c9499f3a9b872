"""The notary's HTTP API, v1 (DESIGN §4.6), on FastAPI.

Every error is JSON ``{"error": code, "message": text}`` with a 4xx status (or
503 when the log cannot take entries right now). ``POST /tsa`` and
``GET /v1/tsa/chain`` are answered by :class:`notary.tsa_asgi.TSAMiddleware`
before FastAPI's routing, for speed; they are listed in the OpenAPI document
all the same. The routes come in groups, one ``include_*_routes`` per concern;
the request shapes are in :mod:`notary.api_schema`.

Authentication never blocks the event loop: a token seen before is answered
from the service's account cache (:class:`notary.account_cache.AccountCache`,
invalidated at once when an account changes); an unknown one is looked up in
a worker thread.
"""

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from keys.errors import ConflictError, Error, NotFoundError
from notary import fastpath
from notary.ack_api import include_ack_routes
from notary.anchors_api import include_anchor_routes
from notary.api_receipts import include_receipts_routes
from notary.api_schema import (
    SHA256_PATTERN,
    ApiError,
    BatchRequest,
    ConsistencyModel,
    ErrorModel,
    NotarizeRequest,
    ReceiptModel,
    ReceiptsModel,
    RelayModel,
    check_message_id,
    parse_batch,
    parse_notarize,
)
from notary.body_limit import ASGIApp, BodyLimit, Receive, Scope, Send, receive_body, send_json
from notary.delivery_api import include_delivery_routes
from notary.errors import SequencerError, SequencerUnavailableError, StorageError
from notary.etsi.api import include_etsi_routes
from notary.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from notary.pickup_api import include_pickup_routes
from notary.seals_api import SealOpenFastPath, SealRoutes, include_seal_routes
from notary.service import ForbiddenError, Notarization, NotaryService
from notary.slowlog import SlowRequests
from notary.storage import Account
from notary.tiles_api import include_tile_routes
from notary.web.app_routes import include_app_routes
from notary.web.routes import include_web_routes

if TYPE_CHECKING:
    from notary.relay.runtime import Relay

__all__ = ["ApiError", "NotarizeFastPath", "create_app", "parse_batch", "parse_notarize"]

log = logging.getLogger("certmail.notary.api")


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


class NotarizeFastPath:
    """ASGI: answer ``POST /v1/notarize`` without FastAPI's per-request machinery.

    The hottest path of the API (one receipt per request) is served here;
    validation, authentication and errors are the same as everywhere else.
    """

    def __init__(self, app: ASGIApp, service: NotaryService) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/notarize":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await send_json(send, 405, "method_not_allowed", "use POST")
            return
        auth = b""
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v
        body = await receive_body(scope, receive, None)  # bounded by BodyLimit, outside
        if body is None:  # the client went away
            return
        try:
            acct = await authenticate_async(self.service, auth.decode("latin-1") or None)
            item = parse_notarize(body)
            (receipt,) = await self.service.notarize(acct, [item])
        except ApiError as e:
            await send_json(send, e.status, e.code, e.message)
            return
        except Error as e:
            status, code, message = _status_of(e)
            await send_json(send, status, code, message, _retry_after(e))
            return
        body = json.dumps(receipt.to_json(), separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise ApiError(401, "unauthorized", "missing Authorization: Bearer <token>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "use Authorization: Bearer <token>")
    return token.strip()


def _authenticate(service: NotaryService, authorization: str | None) -> Account:
    """The account of an ``Authorization: Bearer`` header (blocking on a cache miss)."""
    acct = service.authenticate(_bearer(authorization))
    if acct is None:
        raise ApiError(401, "unauthorized", "unknown or revoked token")
    return acct


async def authenticate_async(service: NotaryService, authorization: str | None) -> Account:
    """:func:`_authenticate` for the event loop: the cache, else the store in a thread."""
    token = _bearer(authorization)
    acct = service.cached_account(token)
    if acct is None:
        acct = await asyncio.to_thread(service.authenticate, token)
    if acct is None:
        raise ApiError(401, "unauthorized", "unknown or revoked token")
    return acct


def _retry_after(exc: Error) -> dict[str, str]:
    """``Retry-After`` for an error worth retrying at once (the sequencing worker died)."""
    if isinstance(exc, SequencerUnavailableError):
        return {"Retry-After": str(exc.retry_after)}
    return {}


def _status_of(exc: Error) -> tuple[int, str, str]:
    if isinstance(exc, NotFoundError):
        return 404, "not_found", exc.message
    if isinstance(exc, ForbiddenError):
        return 403, "forbidden", exc.message
    if isinstance(exc, ConflictError):
        return 409, "conflict", exc.message
    if isinstance(exc, SequencerError | StorageError):
        log.error("log unavailable: %s", exc.message)
        return 503, "unavailable", "the log cannot take entries right now"
    return 400, "bad_request", exc.message


def _json(obj: Any) -> Response:
    return Response(json.dumps(obj, separators=(",", ":")), media_type="application/json")


def _lifespan(
    service: NotaryService, manage_sequencer: bool, relay: "Relay | None", close_service: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the sequencer (signing the empty tree first) and the relay; stop them in reverse."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_sequencer:
            service.checkpoint()  # the first checkpoint of an empty log
            await service.sequencer.start()
        if relay is not None:
            await relay.start()
        yield
        if relay is not None:
            await relay.stop()
        if manage_sequencer:
            await service.sequencer.stop()
        if close_service:
            service.close()

    return lifespan


def install_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error", "message"}`` JSON with its 4xx (or 503) status."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        if first.get("type") == "json_invalid":
            return error_response(400, "bad_json", "the body is not valid JSON")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = str(first.get("msg", "invalid request"))
        return error_response(400, "bad_request", f"{where}: {msg}" if where else msg)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Error)
    async def _error(request: Request, exc: Error) -> JSONResponse:
        status, code, message = _status_of(exc)
        return JSONResponse(
            {"error": code, "message": message}, status_code=status, headers=_retry_after(exc)
        )


def include_log_routes(app: FastAPI, service: NotaryService) -> None:
    """Health, the verifier key, checkpoints and consistency proofs (no account needed)."""

    @app.get("/healthz", summary="Liveness and the current tree size")
    def healthz() -> dict[str, Any]:
        cp = service.storage.latest_checkpoint()
        ok = service.sequencer.fatal is None
        return {"status": "ok" if ok else "sequencer stopped", "tree_size": cp.size if cp else 0}

    @app.get("/v1/vkey", response_class=PlainTextResponse, summary="Checkpoint verifier key")
    def vkey() -> str:
        return service.vkey + "\n"

    @app.get("/v1/checkpoint", response_class=PlainTextResponse, summary="Latest signed checkpoint")
    def checkpoint() -> Response:
        return Response(service.checkpoint(), media_type="text/plain; charset=utf-8")

    @app.get("/v1/proof/consistency", summary="RFC 9162 consistency proof between tree sizes")
    def consistency(
        old: Annotated[int, Query(ge=0)], new: Annotated[int, Query(ge=0)]
    ) -> ConsistencyModel:
        proof = service.consistency(old, new)
        return ConsistencyModel(
            old=old, new=new, proof=[base64.b64encode(h).decode() for h in proof]
        )


def include_notarize_routes(app: FastAPI, service: NotaryService) -> None:
    """``POST /v1/notarize``, ``POST /v1/notarize/batch`` and a message's receipts."""

    async def account(authorization: Annotated[str | None, Header()] = None) -> Account:
        return await authenticate_async(service, authorization)

    Auth = Annotated[Account, Depends(account)]

    @app.post(
        "/v1/notarize",
        summary="Notarize a message hash; answers a receipt",
        responses={200: {"model": ReceiptModel}},
    )
    async def notarize(req: NotarizeRequest, acct: Auth) -> Response:
        # Served by NotarizeFastPath; this route documents it (and would work too).
        check_message_id(req.message_id)
        (receipt,) = await service.notarize(acct, [Notarization(req.sha256, req.message_id)])
        return _json(receipt.to_json())

    @app.post(
        "/v1/notarize/batch",
        summary="Notarize many hashes; answers their receipts",
        responses={200: {"model": ReceiptsModel}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": BatchRequest.model_json_schema()}},
            }
        },
    )
    async def notarize_batch(request: Request, acct: Auth) -> Response:
        items, tst = parse_batch(await request.body())
        receipts = await service.notarize(acct, items, timestamp=tst)
        return _json({"receipts": [r.to_json() for r in receipts]})

    @app.get(
        "/v1/messages/{sha256}/receipts",
        summary="Every receipt about a message, against the newest cosigned or latest checkpoint",
        responses={200: {"model": ReceiptsModel}},
    )
    def receipts(sha256: str, acct: Auth) -> Response:
        if not re.fullmatch(SHA256_PATTERN, sha256):
            raise ApiError(400, "bad_sha256", "sha256 must be 64 lowercase hex digits")
        from notary.cosigning import cosigned_receipts  # issue 14: receipts carry cosignatures

        got = cosigned_receipts(
            service.config.directory, service.receipts(acct, sha256), service.storage
        )
        return _json({"receipts": [r.to_json() for r in got]})


def include_service_routes(app: FastAPI, service: NotaryService, relay: "Relay | None") -> None:
    """Where the SMTP relay listens, and the Prometheus metrics."""

    @app.get(
        "/v1/relay",
        summary="Where the SMTP relay listens and the TLS certificate it presents",
        responses={200: {"model": RelayModel}, 404: {"model": ErrorModel}},
    )
    def relay_info() -> Response:
        if relay is None:
            raise ApiError(404, "not_found", "this notary runs no SMTP relay")
        return _json(relay.info.to_json())

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    def metrics() -> Response:
        return Response(service.metrics.render(), media_type=METRICS_CONTENT_TYPE)


def include_tsa_routes(app: FastAPI, service: NotaryService) -> None:
    """``POST /tsa`` and ``GET /v1/tsa/chain`` (served by TSAMiddleware with the fast paths on)."""

    @app.post(
        "/tsa",
        summary="RFC 3161 time-stamp (application/timestamp-query in, -reply out)",
        response_class=Response,
    )
    async def tsa(request: Request) -> Response:
        # Served by TSAMiddleware; this reference route answers when the fast paths
        # are off (CERTMAIL_REFERENCE_ONLY=1), with the same checks (check_query).
        from notary.tsa_asgi import MAX_QUERY_BYTES, REPLY_TYPE, check_query

        if service.tsa is None:
            raise ApiError(404, "not_found", "no TSA configured")
        length = request.headers.get("content-length", "")
        ctype = request.headers.get("content-type", "").encode("latin-1")
        refusal = check_query(ctype, int(length) if length.isdigit() else -1, MAX_QUERY_BYTES)
        body = b"" if refusal else await request.body()
        refusal = refusal or check_query(ctype, len(body), MAX_QUERY_BYTES)
        if refusal is not None:
            raise ApiError(*refusal)
        return Response(service.tsa.respond(body), media_type=REPLY_TYPE.decode())

    @app.get(
        "/v1/tsa/chain", summary="TSA certificate chain (PEM), TSA first", response_class=Response
    )
    @app.head("/v1/tsa/chain", summary="Headers of the TSA chain", response_class=Response)
    def tsa_chain() -> Response:  # served by TSAMiddleware unless CERTMAIL_REFERENCE_ONLY=1
        from notary.tsa_asgi import CHAIN_TYPE

        if service.tsa is None:
            raise ApiError(404, "not_found", "no TSA configured")
        return Response(service.tsa.chain_pem(), media_type=CHAIN_TYPE.decode())


def _with_fast_paths(app: ASGIApp, service: NotaryService, seals: SealRoutes) -> ASGIApp:
    """``app`` behind the raw-ASGI notarize, seal-open and /tsa handlers, unless they are
    switched off."""
    if not fastpath.enabled():  # CERTMAIL_REFERENCE_ONLY=1: the FastAPI routes alone
        return app
    asgi: ASGIApp = SealOpenFastPath(NotarizeFastPath(app, service), seals)
    if service.tsa is not None:
        from notary.tsa_asgi import TSAMiddleware

        asgi = TSAMiddleware(asgi, service.tsa)
    return asgi


def create_app(
    service: NotaryService,
    *,
    manage_sequencer: bool = True,
    relay: "Relay | None" = None,
    close_service: bool = False,
) -> ASGIApp:
    """The ASGI application serving ``service`` (and starting ``relay``, if given).

    With ``close_service`` the lifespan's shutdown closes ``service`` last.
    """
    app = FastAPI(
        title="certmail notary",
        version="1",
        summary="Witnesses messages: RFC 9162 log, C2SP checkpoints, RFC 3161 tokens",
        lifespan=_lifespan(service, manage_sequencer, relay, close_service),
        responses={400: {"model": ErrorModel}},
    )
    install_error_handlers(app)
    include_log_routes(app, service)
    include_notarize_routes(app, service)
    include_service_routes(app, service, relay)
    include_tsa_routes(app, service)
    include_ack_routes(app, service, authenticate_async)  # /v1/ack, /v1/tracking, /r/{token}
    include_receipts_routes(app, service, authenticate_async)  # POST /v1/receipts/batch
    include_delivery_routes(app, service, _authenticate, authenticate_async)  # .../deliveries
    include_web_routes(app, service)  # /verify, /log, /web/static/ (notary/web/routes.py)
    include_tile_routes(app, service)  # /tile/<L>/<N>[.p/<W>], /checkpoint (public, C2SP tiles)
    seals = include_seal_routes(app, service, _authenticate)  # /v1/seals (seals_api.py)
    include_pickup_routes(app, service, _authenticate)  # /v1/pickup(s), /p/ (notary/pickup_api.py)
    include_etsi_routes(app, service, _authenticate)  # .../evidence?format=etsi (notary/etsi/)
    include_app_routes(app, service, _authenticate)  # /app, /v1/web/login (web/app_routes.py)
    include_anchor_routes(app, service)  # /v1/anchors: outside time-stamps (notary/anchors.py)
    slow = SlowRequests(app)  # the FastAPI routes: a hung request leaves a log line
    return BodyLimit(_with_fast_paths(slow, service, seals), service.config.max_body_bytes)

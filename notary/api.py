"""The notary's HTTP API, v1 (DESIGN §4.6), on FastAPI.

Every error is JSON ``{"error": code, "message": text}`` with a 4xx status (or
503 when the log cannot take entries right now). ``POST /tsa`` and
``GET /v1/tsa/chain`` are answered by :class:`notary.tsa_asgi.TSAMiddleware`
before FastAPI's routing, for speed; they are listed in the OpenAPI document
all the same.
"""

import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from keys.errors import ConflictError, Error, NotFoundError
from notary import fastpath
from notary.ack_api import include_ack_routes
from notary.delivery_api import include_delivery_routes
from notary.errors import SequencerError, StorageError
from notary.etsi.api import include_etsi_routes
from notary.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from notary.service import ForbiddenError, Notarization, NotaryService
from notary.storage import Account
from notary.web.routes import include_web_routes

if TYPE_CHECKING:
    from notary.relay.runtime import Relay

log = logging.getLogger("certmail.notary.api")

SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_BATCH_ITEMS = 10_000
_MESSAGE_ID_RE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiError(Exception):
    """An error answered as JSON with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


class NotarizeRequest(BaseModel):
    """Notarize one message by the SHA-256 of its exact bytes."""

    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=SHA256_PATTERN, description="lowercase hex SHA-256")
    message_id: str = Field(min_length=1, max_length=998, description="the Message-ID")


class BatchRequest(BaseModel):
    """Notarize many messages in one request."""

    model_config = ConfigDict(extra="forbid")
    items: list[NotarizeRequest] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)
    tst: bool = Field(True, description="attach an RFC 3161 token to each receipt")


class ReceiptModel(BaseModel):
    """DESIGN §4.3: the entry, its C2SP tlog-proof, and the RFC 3161 token."""

    entry: str = Field(description="base64 of the exact entry bytes (RFC 8785 JSON)")
    proof: str = Field(description="C2SP tlog-proof whose checkpoint covers the entry")
    tst: str | None = Field(None, description="base64 DER RFC 3161 TimeStampToken")


class ReceiptsModel(BaseModel):
    receipts: list[ReceiptModel]


class ConsistencyModel(BaseModel):
    old: int
    new: int
    proof: list[str]


class RelayModel(BaseModel):
    """The SMTP relay: submit with STARTTLS, then AUTH (address, API token)."""

    host: str
    port: int
    domain: str = Field(description="the relay's mail domain (EHLO name, DKIM d=)")
    starttls: bool
    auth: list[str]
    max_message_bytes: int
    certificate: str = Field(description="PEM of the certificate STARTTLS presents")
    cert_sha256: str = Field(description="SHA-256 of its DER bytes, lowercase hex: pin it")


class ErrorModel(BaseModel):
    error: str
    message: str


def _check_message_id(mid: str) -> None:
    if not _MESSAGE_ID_RE.fullmatch(mid):
        raise ApiError(400, "bad_message_id", "message_id must be printable ASCII")


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413 JSON."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    too_big = int(v) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    await _send_json(send, 413, "too_large", f"body over {self.limit} bytes")
                    return
        seen = 0
        answered = False  # the 413 went out: drop whatever the app sends after it

        async def limited() -> Message:
            nonlocal seen, answered
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    # Answer here, before the app sees the error: Starlette's
                    # error middleware would turn the exception into a 500.
                    if not started:
                        answered = True
                        await _send_json(send, 413, "too_large", f"body over {self.limit} bytes")
                    raise _BodyTooLarge
            return msg

        started = False

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if answered:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited, tracking_send)
        except _BodyTooLarge:
            pass


class _BodyTooLarge(Exception):
    pass


async def _send_json(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_SHA256_RE = re.compile(SHA256_PATTERN)


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None


def parse_notarize(body: bytes) -> Notarization:
    """Validate a POST /v1/notarize body; ApiError(400) naming what is wrong."""
    return _notarization(_load_json(body))


def parse_batch(body: bytes) -> tuple[list[Notarization], bool]:
    """Validate a POST /v1/notarize/batch body: its items and whether tokens are wanted."""
    obj = _load_json(body)
    if not isinstance(obj, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    unknown = set(obj) - {"items", "tst"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown members: {sorted(unknown)}")
    items, tst = obj.get("items"), obj.get("tst", True)
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_ITEMS:
        raise ApiError(400, "bad_request", f"items must be a list of 1 to {MAX_BATCH_ITEMS}")
    if not isinstance(tst, bool):
        raise ApiError(400, "bad_request", "tst must be true or false")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(_notarization(item))
        except ApiError as e:
            raise ApiError(e.status, e.code, f"items.{i}: {e.message}") from None
    return out, tst


def _notarization(obj: Any) -> Notarization:
    if not isinstance(obj, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    unknown = set(obj) - {"sha256", "message_id"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown members: {sorted(unknown)}")
    digest, mid = obj.get("sha256"), obj.get("message_id")
    if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
        raise ApiError(400, "bad_sha256", "sha256 must be 64 lowercase hex digits")
    if not isinstance(mid, str) or not 1 <= len(mid) <= 998:
        raise ApiError(400, "bad_message_id", "message_id must be 1 to 998 characters")
    _check_message_id(mid)
    return Notarization(digest, mid)


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
            await _send_json(send, 405, "method_not_allowed", "use POST")
            return
        auth = b""
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v
        chunks: list[bytes] = []
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        try:
            acct = _authenticate(self.service, auth.decode("latin-1") or None)
            item = parse_notarize(b"".join(chunks))
            (receipt,) = await self.service.notarize(acct, [item])
        except ApiError as e:
            await _send_json(send, e.status, e.code, e.message)
            return
        except Error as e:
            status, code, message = _status_of(e)
            await _send_json(send, status, code, message)
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


def _authenticate(service: NotaryService, authorization: str | None) -> Account:
    if not authorization:
        raise ApiError(401, "unauthorized", "missing Authorization: Bearer <token>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "use Authorization: Bearer <token>")
    acct = service.authenticate(token.strip())
    if acct is None:
        raise ApiError(401, "unauthorized", "unknown or revoked token")
    return acct


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

    app = FastAPI(
        title="certmail notary",
        version="1",
        summary="Witnesses messages: RFC 9162 log, C2SP checkpoints, RFC 3161 tokens",
        lifespan=lifespan,
        responses={400: {"model": ErrorModel}},
    )

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
        return error_response(*_status_of(exc))

    async def account(
        authorization: Annotated[str | None, Header()] = None,
    ) -> Account:
        return _authenticate(service, authorization)

    Auth = Annotated[Account, Depends(account)]

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

    @app.post(
        "/v1/notarize",
        summary="Notarize a message hash; answers a receipt",
        responses={200: {"model": ReceiptModel}},
    )
    async def notarize(req: NotarizeRequest, acct: Auth) -> Response:
        # Served by NotarizeFastPath; this route documents it (and would work too).
        _check_message_id(req.message_id)
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
        # Validated by hand (same rules as BatchRequest): pydantic costs more
        # than the log itself on 10,000-item batches.
        items, tst = parse_batch(await request.body())
        receipts = await service.notarize(acct, items, timestamp=tst)
        return _json({"receipts": [r.to_json() for r in receipts]})

    @app.get(
        "/v1/messages/{sha256}/receipts",
        summary="Every receipt about a message, proved against the latest checkpoint",
        responses={200: {"model": ReceiptsModel}},
    )
    def receipts(sha256: str, acct: Auth) -> Response:
        if not re.fullmatch(SHA256_PATTERN, sha256):
            raise ApiError(400, "bad_sha256", "sha256 must be 64 lowercase hex digits")
        return _json({"receipts": [r.to_json() for r in service.receipts(acct, sha256)]})

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

    @app.api_route(
        "/v1/tsa/chain",
        methods=["GET", "HEAD"],
        summary="TSA certificate chain (PEM), TSA first",
        response_class=Response,
    )
    def tsa_chain() -> Response:  # served by TSAMiddleware unless CERTMAIL_REFERENCE_ONLY=1
        from notary.tsa_asgi import CHAIN_TYPE

        if service.tsa is None:
            raise ApiError(404, "not_found", "no TSA configured")
        return Response(service.tsa.chain_pem(), media_type=CHAIN_TYPE.decode())

    include_ack_routes(app, service, _authenticate)  # /v1/ack, /v1/tracking, /r/{token}
    include_web_routes(app, service)  # /verify, /log, /web/static/ (notary/web/routes.py)
    include_delivery_routes(app, service, _authenticate)  # /v1/messages/{sha256}/deliveries
    include_etsi_routes(app, service, _authenticate)  # .../evidence?format=etsi (notary/etsi/)
    if not fastpath.enabled():  # CERTMAIL_REFERENCE_ONLY=1: the FastAPI routes alone
        return BodyLimit(app, service.config.max_body_bytes)
    asgi: ASGIApp = NotarizeFastPath(app, service)
    if service.tsa is not None:
        from notary.tsa_asgi import TSAMiddleware

        asgi = TSAMiddleware(asgi, service.tsa)
    return BodyLimit(asgi, service.config.max_body_bytes)

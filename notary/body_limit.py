"""Request bodies bounded: over the limit is 413 JSON, never a 500.

:class:`BodyLimit` is the ASGI middleware in front of the whole API;
:func:`receive_body` is the one reader of a request body in raw ASGI (the fast
paths of ``/v1/notarize``, ``/tsa`` and the seal opening, and the witness), and
:func:`read_bytes` (:func:`read_body` for JSON) the one of a Starlette request's
(the ack, tracking, seal and pickup routes), each answering :class:`TooLarge` with
its own 413 (:func:`json_error`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from keys.errors import MalformedError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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
                    await send_json(send, 413, "too_large", f"body over {self.limit} bytes")
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
                        await send_json(send, 413, "too_large", f"body over {self.limit} bytes")
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


class TooLarge(Exception):
    """The request body is over its limit (answered 413)."""


def content_length(scope: Scope) -> int | None:
    """The request's Content-Length (digits only), else None."""
    for k, v in scope["headers"]:
        if k == b"content-length":
            return int(v) if v.isdigit() else None
    return None


async def receive_body(scope: Scope, receive: Receive, limit: int | None) -> bytes | None:
    """The whole request body of a raw-ASGI request, or None when the client went away.

    TooLarge when its Content-Length says more than ``limit`` bytes (before any is
    read) or when more arrives; ``limit`` None: no bound here (:class:`BodyLimit`'s).
    """
    if limit is not None and (content_length(scope) or 0) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunk = msg.get("body", b"")
        if chunk:
            chunks.append(chunk)
            size += len(chunk)
            if limit is not None and size > limit:
                raise TooLarge
        more = msg.get("more_body", False)
    return b"".join(chunks)


async def send_json(
    send: Send, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def json_error(
    status: int, code: str, message: str, retry_after: str | None = None
) -> JSONResponse:
    """The API's JSON error answer (a Starlette response)."""
    from starlette.responses import JSONResponse

    headers = {"Retry-After": retry_after} if retry_after else None
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int) -> Any:
    """The request's JSON body, read up to ``limit`` bytes (TooLarge beyond, MalformedError
    when it is not JSON)."""
    return loads(await read_bytes(request, limit))


async def read_bytes(request: Request, limit: int) -> bytes:
    """The request's body, read once up to ``limit`` bytes (TooLarge beyond, or before any
    is read when its Content-Length says more)."""
    if (content_length(request.scope) or 0) > limit:
        raise TooLarge
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge
    return body


def loads(body: bytes) -> Any:
    """A JSON body (MalformedError when it is not JSON)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedError("the body is not valid JSON") from None

"""The notary's tiled-log endpoints (c2sp.org/tlog-tiles): ``/tile/...`` and ``/checkpoint``.

Anyone may mirror and audit the log without an account: its hash tiles and
its signed checkpoint are public. Its entries are not (DESIGN §4.1): entry
bundles, ``/tile/entries/...``, answer 404.

- ``GET /tile/<L>/<N>[.p/<W>]``: ``application/octet-stream``, the tile's
  hashes. A tile's bytes never change once the tree holds it, so full and
  partial tiles alike are ``Cache-Control: public, max-age=31536000,
  immutable``. A tile the latest checkpoint does not cover is 404 with
  ``Cache-Control: no-store`` (it may exist a second later).
- ``GET /checkpoint``: the latest signed checkpoint (the same note as
  ``/v1/checkpoint``), ``text/plain; charset=utf-8``, cacheable for
  :data:`CHECKPOINT_MAX_AGE` seconds only.

One implementation, :class:`TileServer`, answers both; the FastAPI routes
that :func:`include_tile_routes` adds call it, and so does
:class:`TileMiddleware`, the raw-ASGI fast path in front of FastAPI's
routing (off with ``CERTMAIL_REFERENCE_ONLY=1``, when the routes answer).
Full tiles read once are kept in a bounded in-memory cache.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Response

from notary import fastpath
from notary.errors import MalformedError, StorageError
from notary.tiles import Tile, available, parse_tile_path, read_tile

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fastapi import FastAPI

    from notary.storage import StoredCheckpoint

__all__ = ["TileMiddleware", "TileServer", "include_tile_routes"]

log = logging.getLogger("certmail.notary.tiles")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TILE_PREFIX = "/tile/"
CHECKPOINT_PATH = "/checkpoint"
IMMUTABLE = "public, max-age=31536000, immutable"
CHECKPOINT_MAX_AGE = 2
TILE_TYPE = "application/octet-stream"
CHECKPOINT_TYPE = "text/plain; charset=utf-8"
CACHE_TILES = 4096  # 32 MiB of full tiles at most


class TileSource(Protocol):
    """What the tile server reads: committed stored hashes and the latest checkpoint."""

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]: ...

    def latest_checkpoint(self) -> StoredCheckpoint | None: ...


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers, body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        out.append((b"content-length", str(len(self.body)).encode()))
        return out

    def start(self) -> dict[str, Any]:
        """The ASGI ``http.response.start`` message."""
        return {"type": "http.response.start", "status": self.status, "headers": self.raw_headers()}


def _error(status: int, code: str, message: str) -> Answer:
    body = json.dumps({"error": code, "message": message}).encode()
    headers = (("content-type", "application/json"), ("cache-control", "no-store"))
    return Answer(status, headers, body)


class TileServer:
    """Answers tile and checkpoint requests from a log's committed state.

    ``checkpoint`` returns the latest signed note (the service signs the
    empty tree on first use). The tree size that bounds which tiles exist is
    the latest checkpoint's, re-read when a request asks beyond it.
    """

    def __init__(
        self, source: TileSource, checkpoint: Callable[[], bytes], *, cache: int = CACHE_TILES
    ) -> None:
        self.source, self._checkpoint = source, checkpoint
        self._size = 0
        self._cache: dict[Tile, bytes] = {}
        # path -> (raw headers, body) of tiles in the cache: one look-up per hit
        self._hits: dict[str, tuple[list[tuple[bytes, bytes]], bytes]] = {}
        self._limit = cache
        self._lock = threading.Lock()

    def cached(self, path: str) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
        """The raw headers and body of the 200 for ``path`` (after ``/``) if it is a tile
        answered before (no storage read, nothing parsed), else None."""
        return self._hits.get(path)

    def tile(self, path: str) -> Answer:
        """The answer for ``GET /<path>``, ``path`` starting with ``tile/``."""
        if path.startswith("tile/entries/") or path == "tile/entries":
            return _error(404, "not_found", "entry bundles are not served: entries are private")
        try:
            tile = parse_tile_path(path)
        except MalformedError as e:
            return _error(404, "not_found", e.message)
        data = self._cache.get(tile)
        if data is None:
            if not available(tile, self._size):
                cp = self.source.latest_checkpoint()
                self._size = max(self._size, cp.size if cp else 0)
                if not available(tile, self._size):
                    return _error(404, "not_found", f"the log has no {tile.path()} yet")
            try:
                data = read_tile(tile, self.source)
            except StorageError as e:
                log.error("tile %s unreadable: %s", tile.path(), e.message)
                return _error(503, "unavailable", "the log cannot be read right now")
            self._keep(tile, data)
        answer = self._tile_answer(data)
        if path == tile.path() and len(self._hits) < self._limit:
            self._hits[path] = (answer.raw_headers(), data)
        return answer

    def checkpoint(self) -> Answer:
        """The answer for ``GET /checkpoint``."""
        headers = (
            ("content-type", CHECKPOINT_TYPE),
            ("cache-control", f"public, max-age={CHECKPOINT_MAX_AGE}"),
        )
        return Answer(200, headers, self._checkpoint())

    def _keep(self, tile: Tile, data: bytes) -> None:
        with self._lock:
            if len(self._cache) >= self._limit:
                old = next(iter(self._cache))  # the oldest: tiles are all alike
                del self._cache[old]
                self._hits.pop(old.path(), None)
            self._cache[tile] = data

    @staticmethod
    def _tile_answer(data: bytes) -> Answer:
        return Answer(200, (("content-type", TILE_TYPE), ("cache-control", IMMUTABLE)), data)


class TileMiddleware:
    """Raw ASGI: answer ``GET``/``HEAD`` ``/tile/...`` and ``/checkpoint``; pass the rest on.

    Cached tiles are answered on the event loop; anything that reads storage
    runs in a worker thread.
    """

    def __init__(self, app: ASGIApp, server: TileServer) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        is_tile = path.startswith(TILE_PREFIX)
        if not is_tile and path != CHECKPOINT_PATH:
            await self.app(scope, receive, send)
            return
        if is_tile and scope["method"] == "GET":
            hit = self.server.cached(path[1:])
            if hit is not None:
                await send({"type": "http.response.start", "status": 200, "headers": hit[0]})
                await send({"type": "http.response.body", "body": hit[1]})
                return
        answer = await self._answer(scope["method"], path, is_tile)
        await send(answer.start())
        body = b"" if scope["method"] == "HEAD" else answer.body
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, method: str, path: str, is_tile: bool) -> Answer:
        if method not in ("GET", "HEAD"):
            return _error(405, "method_not_allowed", "use GET")
        from starlette.concurrency import run_in_threadpool

        if is_tile:
            return await run_in_threadpool(self.server.tile, path[1:])
        return await run_in_threadpool(self.server.checkpoint)


def include_tile_routes(app: FastAPI, service: Any) -> TileServer:
    """Add ``GET /tile/...`` and ``GET /checkpoint`` for ``service`` (a NotaryService).

    With the fast paths on (the default) :class:`TileMiddleware` answers
    them before FastAPI's routing; the routes document them and answer when
    ``CERTMAIL_REFERENCE_ONLY=1``.
    """
    from notary.cosigning import Cosigning

    cosigning = Cosigning(
        service.config.directory, service.storage.latest_checkpoint, service.consistency
    )
    cosigning.start()  # only with witnesses configured (witnesses.toml)
    server = TileServer(service.storage, lambda: cosigning.with_cosignatures(service.checkpoint()))

    def respond(answer: Answer) -> Response:
        return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))

    @app.get(
        "/tile/{path:path}",
        summary="C2SP tlog-tiles hash tile /tile/<L>/<N>[.p/<W>] (entry bundles: 404)",
        response_class=Response,
        responses={200: {"content": {TILE_TYPE: {}}}},
    )
    @app.head("/tile/{path:path}", summary="Headers of a tile", response_class=Response)
    def tile(path: str) -> Response:
        return respond(server.tile("tile/" + path))

    @app.get(
        CHECKPOINT_PATH,
        summary="Latest signed checkpoint (C2SP tlog-tiles location, short-lived cache)",
        response_class=Response,
    )
    @app.head(CHECKPOINT_PATH, summary="Headers of the latest checkpoint", response_class=Response)
    def checkpoint() -> Response:
        return respond(server.checkpoint())

    @app.get(
        "/checkpoint/cosigned",
        summary="The newest checkpoint a quorum of this notary's witnesses cosigned",
        response_class=Response,
    )
    def cosigned() -> Response:
        if cosigning.cosigned is None:
            return respond(_error(404, "not_found", "no checkpoint cosigned by a quorum yet"))
        headers = {"cache-control": f"public, max-age={CHECKPOINT_MAX_AGE}"}
        return Response(cosigning.cosigned, media_type=CHECKPOINT_TYPE, headers=headers)

    if fastpath.enabled():
        app.add_middleware(TileMiddleware, server=server)  # type: ignore[arg-type]
    return server

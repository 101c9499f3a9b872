"""``POST /tsa`` answered inside the HTTP/1.1 protocol (RFC 3161 §3.4), without ASGI.

A time-stamp request is small and its answer is computed in about 25 µs, so
under uvicorn most of a ``/tsa`` request's cost was the ASGI machinery around
it: a scope, a task, the middleware stack, and two socket writes (head, then
body). :class:`TsaHttpProtocol` is the notary's HTTP protocol
(:class:`~notary.http_limits.LimitedHttpToolsProtocol`, with its limits); it
answers a plain ``POST /tsa`` itself as soon as the body is in: the
:class:`~notary.tsa_asgi.TSAMiddleware` of the served app issues the token
(the same :meth:`~notary.rfc3161.TimeStampAuthority.respond`), and head and
body leave in one write.

Only the common case is taken: ``POST /tsa`` with a Content-Length within the
middleware's limit, an accepted Content-Type (:func:`~notary.tsa_asgi.check_query`),
no ``Expect: 100-continue``, and no earlier request on the connection still
being answered. Everything else, every refusal included, goes the ASGI way
and gets TSAMiddleware's answers. The app has a TSAMiddleware only when the
fast paths are on (``CERTMAIL_REFERENCE_ONLY`` unset) and a TSA is
configured, so the same switch turns this path off: then the FastAPI route
answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from notary.http_limits import HttpLimits, LimitedHttpToolsProtocol
from notary.tsa_asgi import REPLY_TYPE, TSA_PATH, TSAMiddleware, check_query

__all__ = ["TsaHttpProtocol", "find_tsa_middleware"]

_PATH = TSA_PATH.encode("ascii")
#: How many wrapping layers (uvicorn's proxy-headers middleware, the body limit, ...)
#: are searched for the TSAMiddleware.
_MAX_LAYERS = 16
_HEAD = b"HTTP/1.1 200 OK\r\n"
_TYPE = b"content-type: " + REPLY_TYPE + b"\r\n"
_CLOSE = b"connection: close\r\n"
#: The request line a lean connection answers itself; anything else is promoted.
_LINE = b"POST " + _PATH + b" HTTP/1.1\r\n"
#: The most a lean connection buffers before its request's header section is in.
_LEAN_MAX_HEAD = 16384
_PARSE_ERRORS = (httptools.HttpParserError, httptools.HttpParserUpgrade)


def served_tsa(server_state: Any, app: object) -> TSAMiddleware | None:
    """The served app's TSAMiddleware, looked up once per server (``server_state``)."""
    try:
        return server_state.certmail_tsa  # type: ignore[no-any-return]
    except AttributeError:
        found = find_tsa_middleware(app)
        server_state.certmail_tsa = found
        return found


def find_tsa_middleware(app: object) -> TSAMiddleware | None:
    """The :class:`TSAMiddleware` in the stack of ASGI layers ``app`` (each wrapping the
    next as ``.app``), or None."""
    for _ in range(_MAX_LAYERS):
        if isinstance(app, TSAMiddleware):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class TsaHttpProtocol(LimitedHttpToolsProtocol):
    """uvicorn's httptools protocol with the notary's limits; ``POST /tsa`` answered here.

    A connection starts *lean* when the app has a TSAMiddleware: none of
    uvicorn's per-connection set-up (loggers, flow control, addresses, the
    ASGI scope of each request), only the per-peer count, the header timer
    and an httptools parser, while every request on it is a plain
    ``POST /tsa HTTP/1.1``. The first byte of anything else *promotes* it:
    uvicorn's protocol is set up then and fed every byte of the request
    being read (pipelined ones included) from its start, so from there on
    the connection is exactly the full protocol.
    """

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._tsa_body: bytes | None = None  # the body so far, while a /tsa request is ours
        self._tsa_keep_alive = True
        self._lean_query: bytes | None = None  # a lean request read, to answer after the feed
        self._lean_buf = b""  # the bytes of the lean request being read, from its start
        self._lean_bail = False  # set by a parser callback: promote once the feed is over
        if not config.loaded:
            config.load()
        self._lean = served_tsa(server_state, config.loaded_app) is not None
        if not self._lean:
            super().__init__(config, server_state, app_state, _loop)
            return
        self._setup = (config, server_state, app_state, _loop)
        self.config, self.app, self.server_state = config, config.loaded_app, server_state
        self.loop = _loop or asyncio.get_event_loop()
        self.limits = getattr(config, "http_limits", HttpLimits())
        self._peer: str | None = None
        self.header_awaited = False
        self.timeout_keep_alive = config.timeout_keep_alive
        self.timeout_keep_alive_task = None
        self.cycle = None  # type: ignore[assignment]
        self.expect_100_continue = False
        self.parser = httptools.HttpRequestParser(self)

    def _tsa(self) -> TSAMiddleware | None:
        """The served app's TSAMiddleware, looked up once per server."""
        return served_tsa(self.server_state, self.app)

    # -- the lean connection ------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self._lean:
            super().connection_made(transport)
            return
        self.transport = transport
        self.server_state.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.admit(transport, str(peer[0]) if isinstance(peer, tuple) else "")

    def data_received(self, data: bytes) -> None:
        if not self._lean:
            super().data_received(data)
            return
        self._unset_keepalive_if_required()
        buf = self._lean_buf = self._lean_buf + data if self._lean_buf else data
        if not buf.startswith(_LINE[: len(buf)]):
            self._promote()
            return
        try:
            self.parser.feed_data(data)
        except _PARSE_ERRORS:
            self._promote()  # the full protocol answers it (400, or an upgrade refused)
            return
        if self._lean_bail:  # not ours, or a pipelined request after ours
            self._promote()
            return
        query = self._lean_query
        if query is None:  # more to read
            if self._tsa_body is None and len(buf) > _LEAN_MAX_HEAD:
                self._promote()
            return
        self._lean_query, self._lean_buf = None, b""
        self._reply(query)

    def _promote(self) -> None:
        """Become uvicorn's full protocol and feed it every byte of the request being read,
        from its start (a lean connection has nothing left to answer)."""
        data = self._lean_buf
        self._lean, self._lean_bail, self._lean_query = False, False, None
        self._lean_buf, self._tsa_body = b"", None
        transport, peer, awaited = self.transport, self._peer, self.header_awaited
        self._unset_keepalive_if_required()
        LimitedHttpToolsProtocol.__init__(self, *self._setup)
        self._peer, self.header_awaited = peer, awaited
        HttpToolsProtocol.connection_made(self, transport)
        if data:
            self.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lean:
            super().connection_lost(exc)
            return
        self.release()
        self.server_state.connections.discard(self)
        self._unset_keepalive_if_required()
        self.parser = None  # type: ignore[assignment]

    def shutdown(self) -> None:
        if not self._lean:
            super().shutdown()
            return
        self.transport.close()  # a lean connection never has an answer in flight

    def pause_writing(self) -> None:
        if not self._lean:
            super().pause_writing()
            return
        self.transport.pause_reading()  # the client reads no answers: read no more questions

    def resume_writing(self) -> None:
        if not self._lean:
            super().resume_writing()
            return
        self.transport.resume_reading()

    def on_message_begin(self) -> None:
        if not self._lean:
            super().on_message_begin()
            return
        if self._lean_bail:
            return
        if self._lean_query is not None:  # a pipelined request: the full protocol answers both
            self._lean_bail = True
            return
        self.url, self.headers, self.expect_100_continue = b"", [], False
        if not self.header_awaited:  # a later request on a kept-alive connection
            self._arm_header_timer()

    # -- the POST /tsa request, lean or not ---------------------------------

    def _takes(self, tsa: TSAMiddleware) -> bool:
        """Whether the request whose header section just ended is answered here."""
        if self.url != _PATH or self.expect_100_continue:
            return False
        if not self._lean and (
            self.pipeline or (self.cycle is not None and not self.cycle.response_complete)
        ):
            return False  # an earlier request is still being answered: keep the order
        if self.parser.get_method() != b"POST" or self.parser.get_http_version() != "1.1":
            return False
        content_type, length = b"", -1
        for name, value in self.headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                return False
        return length >= 0 and check_query(content_type, length, tsa.max_query_bytes) is None

    def on_headers_complete(self) -> None:
        if self._lean_bail:
            return
        tsa = self._tsa()
        if tsa is not None and self._takes(tsa):
            self.cancel_header_timer()
            self._tsa_body = b""
            self._tsa_keep_alive = self.parser.should_keep_alive()
            return
        if self._lean:
            self._lean_bail = True
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._tsa_body is not None:
            self._tsa_body += body
        elif not self._lean:
            super().on_body(body)

    def on_message_complete(self) -> None:
        query = self._tsa_body
        if query is None:
            if not self._lean:
                super().on_message_complete()
            return
        self._tsa_body = None
        if self._lean:
            self._lean_query = query  # answered once the feed is over (if nothing follows)
        else:
            self._reply(query)

    def _reply(self, query: bytes) -> None:
        """Answer ``query`` with one write: the token (or refusal) with its head."""
        tsa = self._tsa()
        assert tsa is not None
        reply = tsa.tsa.respond(query)
        keep_alive = self._tsa_keep_alive
        head = [_HEAD]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [_TYPE, b"content-length: %d\r\n" % len(reply)]
        if not keep_alive:
            head.append(_CLOSE)
        head += [b"\r\n", reply]
        self.transport.write(b"".join(head))
        self.server_state.total_requests += 1
        if not keep_alive:
            self.transport.close()
        elif not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

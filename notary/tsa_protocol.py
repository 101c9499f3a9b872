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

from typing import Any

from notary.http_limits import LimitedHttpToolsProtocol
from notary.tsa_asgi import REPLY_TYPE, TSA_PATH, TSAMiddleware, check_query

__all__ = ["TsaHttpProtocol", "find_tsa_middleware"]

_PATH = TSA_PATH.encode("ascii")
#: How many wrapping layers (uvicorn's proxy-headers middleware, the body limit, ...)
#: are searched for the TSAMiddleware.
_MAX_LAYERS = 16
_HEAD = b"HTTP/1.1 200 OK\r\n"
_TYPE = b"content-type: " + REPLY_TYPE + b"\r\n"
_CLOSE = b"connection: close\r\n"


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
    """uvicorn's httptools protocol with the notary's limits; ``POST /tsa`` answered here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tsa_body: bytes | None = None  # the body so far, while a /tsa request is ours
        self._tsa_keep_alive = True

    def _tsa(self) -> TSAMiddleware | None:
        """The served app's TSAMiddleware, looked up once per server."""
        state = self.server_state
        try:
            return state.certmail_tsa  # type: ignore[attr-defined,no-any-return]
        except AttributeError:
            found = find_tsa_middleware(self.app)
            state.certmail_tsa = found  # type: ignore[attr-defined]
            return found

    def _takes(self, tsa: TSAMiddleware) -> bool:
        """Whether the request whose header section just ended is answered here."""
        if self.url != _PATH or self.expect_100_continue or self.pipeline:
            return False
        if self.cycle is not None and not self.cycle.response_complete:
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
        tsa = self._tsa()
        if tsa is not None and self._takes(tsa):
            self.cancel_header_timer()
            self._tsa_body = b""
            self._tsa_keep_alive = self.parser.should_keep_alive()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._tsa_body is None:
            super().on_body(body)
        else:
            self._tsa_body += body

    def on_message_complete(self) -> None:
        query = self._tsa_body
        if query is None:
            super().on_message_complete()
            return
        self._tsa_body = None
        tsa = self._tsa()
        assert tsa is not None
        reply = tsa.tsa.respond(query)
        head = [_HEAD]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [_TYPE, b"content-length: %d\r\n" % len(reply)]
        if not self._tsa_keep_alive:
            head.append(_CLOSE)
        head += [b"\r\n", reply]
        self.transport.write(b"".join(head))
        self.server_state.total_requests += 1
        if not self._tsa_keep_alive:
            self.transport.close()
        elif not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

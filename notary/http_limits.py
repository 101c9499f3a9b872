"""Connection limits of the notary's HTTP server (RFC 9112 over uvicorn's httptools protocol).

uvicorn bounds keep-alive idleness (``timeout_keep_alive``) and, globally, the
number of connections (``limit_concurrency``), but in the installed version it
has no timeout for reading a request's header section and no limit per peer:
a client that opens a connection and sends nothing, or drips its headers a
line at a time (slowloris), holds a descriptor forever. This module adds both
to uvicorn's :class:`~uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`,
which :class:`LimitedConfig` hands to uvicorn as its ``http=`` class:

- at most ``per_peer`` concurrent connections from one peer address (per
  process: with ``--workers N`` each worker counts its own). One over the cap
  is answered ``503`` with a JSON error and ``Connection: close``, then closed.
- a request's header section (from the connection's start, or from the first
  byte of a later request on a kept-alive connection) must be complete within
  ``header_timeout`` seconds; otherwise the answer is ``408`` JSON and the
  connection is closed. One timer per server sweeps the waiting connections
  every quarter of the timeout (at most every second), so the answer comes
  within that much after the deadline, and a connection costs no timer.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HttpLimits", "LimitedConfig", "LimitedHttpToolsProtocol"]

log = logging.getLogger("certmail.notary.http")

DEFAULT_PER_PEER = 128
DEFAULT_HEADER_TIMEOUT = 10.0


@dataclass(frozen=True)
class HttpLimits:
    """Per-peer connection cap and header-read timeout (seconds)."""

    per_peer: int = DEFAULT_PER_PEER
    header_timeout: float = DEFAULT_HEADER_TIMEOUT


class LimitedConfig(uvicorn.Config):
    """A uvicorn config serving with :class:`LimitedHttpToolsProtocol` (or ``protocol``,
    a subclass of it) under ``limits``.

    Picklable, so spawned workers (``--workers N``) get the same limits.
    """

    def __init__(
        self,
        app: Any,
        *,
        limits: HttpLimits,
        protocol: type[LimitedHttpToolsProtocol] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, http=protocol or LimitedHttpToolsProtocol, **kwargs)
        self.http_limits = limits

    def load(self) -> None:
        """Load the app (in each worker), then freeze what exists: the modules, classes
        and app built so far live as long as the server, and once out of the collector's
        generations a full collection no longer walks them (unfrozen, one paused every
        request for up to 200 ms under ``POST /v1/notarize`` with 64 clients)."""
        super().load()
        gc.freeze()


class _ServerWatch:
    """One server's open connections per peer address, and the connections whose header
    section is awaited with its deadline: one timer sweeps them all (no timer to start and
    cancel per connection; a late header section is caught within a quarter of the timeout,
    at most 1 s, after it)."""

    __slots__ = ("peers", "timer", "waiting")

    def __init__(self) -> None:
        self.peers: Counter[str] = Counter()
        self.waiting: dict[LimitedHttpToolsProtocol, float] = {}
        self.timer: asyncio.TimerHandle | None = None

    def wait(self, conn: LimitedHttpToolsProtocol, loop: asyncio.AbstractEventLoop) -> None:
        timeout = conn.limits.header_timeout
        self.waiting[conn] = loop.time() + timeout
        if self.timer is None:
            self.timer = loop.call_later(min(1.0, timeout / 4), self.sweep, loop, timeout)

    def sweep(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        now = loop.time()
        late = [conn for conn, deadline in self.waiting.items() if deadline <= now]
        for conn in late:
            del self.waiting[conn]
            conn.header_timed_out()
        self.timer = None
        if self.waiting:
            self.timer = loop.call_later(min(1.0, timeout / 4), self.sweep, loop, timeout)


def _server_watch(server_state: Any) -> _ServerWatch:
    """The :class:`_ServerWatch` of a server (its protocols share its state)."""
    try:
        return server_state.certmail_http  # type: ignore[no-any-return]
    except AttributeError:
        watch = server_state.certmail_http = _ServerWatch()
        return watch


def _answer(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": code, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a per-peer cap and a header-read timeout."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: HttpLimits = getattr(config, "http_limits", HttpLimits())
        self._peer: str | None = None  # set while this connection is counted
        self.header_awaited = False  # whether the header-read timeout runs

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.admit(transport, self.client[0] if self.client else "")

    def admit(self, transport: asyncio.Transport, peer: str) -> bool:
        """Count the new connection from ``peer`` and start its header timer; over the
        per-peer cap, answer 503 and close it instead (and answer False)."""
        peers = _server_watch(self.server_state).peers
        if peers[peer] >= self.limits.per_peer:
            log.warning("refusing a connection from %s: %d open", peer, peers[peer])
            transport.write(
                _answer(
                    503,
                    "Service Unavailable",
                    "too_many_connections",
                    f"at most {self.limits.per_peer} connections per address",
                )
            )
            transport.close()
            return False
        peers[peer] += 1
        self._peer = peer
        self._arm_header_timer()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        super().connection_lost(exc)

    def release(self) -> None:
        """Stop the header timer and uncount the connection (it is closed)."""
        self.cancel_header_timer()
        if self._peer is not None:
            peers = _server_watch(self.server_state).peers
            peers[self._peer] -= 1
            if peers[self._peer] <= 0:
                del peers[self._peer]
            self._peer = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self.header_awaited:  # a later request on a kept-alive connection
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self.cancel_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        _server_watch(self.server_state).wait(self, self.loop)
        self.header_awaited = True

    def cancel_header_timer(self) -> None:
        """Stop the header-read timeout: the request's header section is complete."""
        if self.header_awaited:
            self.header_awaited = False
            _server_watch(self.server_state).waiting.pop(self, None)

    def header_timed_out(self) -> None:
        """The header section is late: answer 408 and close (unless answering already)."""
        self.header_awaited = False
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its headers did arrive
        self.transport.write(
            _answer(
                408,
                "Request Timeout",
                "timeout",
                f"request headers not received within {self.limits.header_timeout:g} s",
            )
        )
        self.transport.close()

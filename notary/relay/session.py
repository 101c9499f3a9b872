"""The relay's SMTP protocol: aiosmtpd's server with deadlines and per-peer bounds.

RFC 5321 §4.5.3.2 leaves the server's timeouts to it; a submission server
(RFC 6409) talks to mail clients that send at once, so the relay waits
``relay_idle_timeout`` seconds (default 60) for each command and
``relay_data_timeout`` seconds (default 600) for the whole message after
``354``; then it answers ``421 4.4.2`` and closes. The clock starts when the
relay's reply is sent, so a client that drips a command byte by byte
(slowloris) gets no more time than an idle one. Connections and failed AUTH
per peer are bounded by :class:`notary.relay.limits.PeerLimits`; a failed
AUTH is answered after a delay, and a session is closed after a few.

DATA is not gathered in memory as aiosmtpd does: :meth:`RelaySMTP.smtp_DATA`
streams it to a staging file (:mod:`notary.relay.incoming`) and hands the
handler ``envelope.incoming`` (an :class:`~notary.relay.incoming.Incoming`)
instead of ``envelope.original_content``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, AnyStr, cast

from aiosmtpd.smtp import SMTP, TLSSetupException

from notary.relay.incoming import LINE_LIMIT, Receiver, receive
from notary.relay.limits import (
    AUTH_FAILURE_DELAY,
    AUTH_FAILURES_PER_SESSION,
    PeerLimits,
    peer_key,
)

if TYPE_CHECKING:
    from notary.relay.runtime import Relay

log = logging.getLogger("certmail.notary.relay")

TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections from your address; try again later"
TOO_MANY_FAILURES = "421 4.7.0 Too many failed authentications; try again later"
#: aiosmtpd's own per-command timer is only a backstop behind these deadlines.
BACKSTOP = 900.0


class RelaySMTP(SMTP):
    """One SMTP session of the relay (see the module docstring)."""

    def __init__(
        self,
        handler: Any,
        *,
        limits: PeerLimits,
        idle_timeout: float,
        data_timeout: float,
        incoming: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, timeout=idle_timeout + data_timeout + BACKSTOP, **kwargs)
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.data_timeout = data_timeout
        self.incoming = incoming
        self.peer = ""
        self._counted = False
        self._started = False
        self._refusal: str | None = None
        self._closing = False
        self._failures = 0
        self._deadline: asyncio.TimerHandle | None = None

    async def handle_exception(self, error: Exception) -> str:
        """A failed STARTTLS handshake is one log line, not a traceback (issue 10 item 20)."""
        if isinstance(error, TLSSetupException):
            from notary.relay.tls import handshake_failure

            log.info("%s: TLS handshake failed: %s", self.peer, handshake_failure(error))
            return "421 4.7.0 TLS handshake failed"  # aiosmtpd closes; nothing is sent
        return await super().handle_exception(error)

    # --- per-peer connection cap ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = not self._started  # called again with the TLS transport after STARTTLS
        self._started = True
        super().connection_made(transport)
        if first:
            self.peer = peer_key(transport.get_extra_info("peername"))
            self._counted = self.limits.connect(self.peer)
            if not self._counted:
                log.warning("%s: too many connections, refused", self.peer)
                self._refusal = TOO_MANY_CONNECTIONS  # instead of the greeting

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.limits.disconnect(self.peer)
        self.suspend_deadline()
        super().connection_lost(error)

    # --- deadlines ---------------------------------------------------------------------

    def suspend_deadline(self) -> None:
        """Stop the clock (the whole message is in; the relay is working on it)."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _arm(self, seconds: float) -> None:
        self.suspend_deadline()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _expired(self) -> None:
        log.info("%s: timeout exceeded, closing", self.peer)
        self._deadline = None
        self._close(f"421 4.4.2 {self.hostname} Error: timeout exceeded")

    def _close(self, reply: str) -> None:
        self._closing = True
        # uvloop's transports are not asyncio.WriteTransport subclasses: duck-type.
        transport = cast("asyncio.WriteTransport | None", self.transport)
        if transport is not None and not transport.is_closing():
            transport.write(reply.encode("ascii") + b"\r\n")
            transport.close()

    # --- replies: greeting refusal, AUTH failures, the clock --------------------------------

    async def push(self, status: AnyStr) -> None:
        if self._closing:
            return
        if self._refusal is not None:
            self._close(self._refusal)
            return
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        if text.startswith("535"):
            self.limits.auth_failed(self.peer)
            self._failures += 1
            await asyncio.sleep(AUTH_FAILURE_DELAY)
            if self._failures >= AUTH_FAILURES_PER_SESSION or self.limits.auth_blocked(self.peer):
                await super().push(status)
                self._close(TOO_MANY_FAILURES)
                return
        await super().push(status)
        self._arm(self.data_timeout if text.startswith("354") else self.idle_timeout)

    async def smtp_AUTH(self, arg: str) -> None:
        if self.limits.auth_blocked(self.peer):
            log.warning("%s: failed-AUTH budget used up, closing", self.peer)
            self._close(TOO_MANY_FAILURES)
            return
        await super().smtp_AUTH(arg)

    # --- DATA, streamed --------------------------------------------------------------------

    async def smtp_DATA(self, arg: str) -> None:
        """DATA (RFC 5321 §4.1.1.4) into a staging file; then the handler's ``handle_DATA``."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        receiver = Receiver(self.incoming, self.data_size_limit, LINE_LIMIT)
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await receive(self._reader, receiver)
        except BaseException:  # the connection went (or the deadline closed it)
            receiver.discard()
            raise
        refusal = receiver.refusal()
        if refusal is not None:
            receiver.discard()
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(refusal)
            return
        incoming = receiver.finish()
        try:
            self.envelope.incoming = incoming  # type: ignore[attr-defined]
            status = await self.event_handler.handle_DATA(self, self.session, self.envelope)
        finally:
            incoming.remove()
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)


def relay_smtp(relay: Relay) -> RelaySMTP:
    """The protocol for one connection to ``relay``'s SMTP port."""
    from notary.relay.server import Authenticator, SubmissionHandler

    cfg = relay.service.config
    return RelaySMTP(
        SubmissionHandler(relay),
        limits=relay.peer_limits,
        idle_timeout=cfg.relay_idle_timeout,
        data_timeout=cfg.relay_data_timeout,
        incoming=relay.incoming,
        hostname=cfg.relay_hostname,
        ident="certmail notary relay",
        tls_context=relay.tls_context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=Authenticator(relay),
        data_size_limit=cfg.relay_max_message_bytes,
        enable_SMTPUTF8=True,
        decode_data=False,
    )

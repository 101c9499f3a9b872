"""The relay as one object on the notary's event loop: server, queue writer, worker, recovery.

``certmail notary serve --smtp HOST:PORT`` builds a :class:`Relay` and the
HTTP API's lifespan starts it after the sequencer and stops it before.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from notary.relay import incoming
from notary.relay.budget import ByteBudget, return_large_buffers
from notary.relay.limits import PeerLimits
from notary.relay.tls import certificate_sha256, server_context
from notary.relay.worker import DeliveryWorker, WorkerSettings
from notary.relay.writer import QueueWriter
from notary.storage import Account

if TYPE_CHECKING:
    from asyncio import Server

    from notary.relay.incoming import Incoming
    from notary.relay.scanning import Scanner
    from notary.service import NotaryService

log = logging.getLogger("certmail.notary.relay")

RECOVERY_INTERVAL = 30.0
#: Held messages of other nodes are only recovered after this long: by then
#: their submission has either been logged or timed out.
FOREIGN_HELD_AGE = 600.0
OWN_HELD_AGE = 60.0


def default_node(directory: str) -> str:
    """A stable name for this serve process's leases: host and notary directory."""
    d = hashlib.sha256(directory.encode()).hexdigest()[:8]
    return f"{socket.gethostname()}:{d}"


@dataclass(frozen=True)
class RelayInfo:
    """What ``GET /v1/relay`` tells clients."""

    host: str
    port: int
    domain: str
    certificate: str
    cert_sha256: str
    max_message_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "domain": self.domain,
            "starttls": True,
            "auth": ["PLAIN", "LOGIN"],
            "max_message_bytes": self.max_message_bytes,
            "certificate": self.certificate,
            "cert_sha256": self.cert_sha256,
        }


class Relay:
    """The notary's SMTP relay (see :mod:`notary.relay`).

    ``scanner`` scans every submission that is not encrypted (see
    :mod:`notary.relay.scanning`); without one, nothing is scanned and the
    evidence records ``"scan": null``.
    """

    def __init__(
        self,
        service: NotaryService,
        host: str,
        port: int,
        *,
        smarthost: tuple[str, int] | None = None,
        public_host: str | None = None,
        node: str | None = None,
        settings: WorkerSettings | None = None,
        scanner: Scanner | None = None,
    ) -> None:
        cfg = service.config
        self.service = service
        self.host, self.port = host, port
        self.node = node or default_node(str(cfg.directory.resolve()))
        self.scanner = scanner
        self.tls_context = server_context(cfg)
        pem = cfg.relay_cert_path.read_text(encoding="ascii")
        self.info = RelayInfo(
            public_host or host,
            port,
            cfg.relay_hostname,
            pem,
            certificate_sha256(pem),
            cfg.relay_max_message_bytes,
        )
        self.writer = QueueWriter(service.storage)
        self.settings = settings or WorkerSettings(
            node=self.node,
            helo=cfg.relay_hostname,
            smarthost=smarthost,
            retry_initial=cfg.relay_retry_initial,
            deadline=float(cfg.relay_retry_deadline),
            warn_after=float(cfg.relay_warn_after),
            mx_port=cfg.relay_mx_port,
            dns_server=cfg.relay_dns_server,
            lease=cfg.relay_lease,
            attempt_deadline=cfg.relay_attempt_deadline,
            per_destination=cfg.relay_destination_concurrency,
            concurrency=cfg.relay_concurrency,
            memory_budget=cfg.relay_max_message_bytes,
        )
        self.worker = DeliveryWorker(
            service, self.writer, self.settings, dkim_sign=self._dkim_signer()
        )
        self.writer.on_release = self.worker.wake
        self.in_flight: set[int] = set()
        self.peer_limits = PeerLimits()
        #: Where sessions stream DATA (:mod:`notary.relay.incoming`).
        self.incoming = cfg.directory / "relay" / "incoming"
        #: Bytes of large submissions read back into memory at once (docs/relay.md).
        self.budget = ByteBudget(cfg.relay_max_message_bytes)
        self._size_hint = 0
        self._server: Server | None = None
        self._recovery: asyncio.Task[None] | None = None

    def _dkim_signer(self) -> Any:
        from keys.dkim import dkim_sign, find_dkim_key

        key = find_dkim_key(
            self.service.config.directory / "dkim", self.service.config.relay_hostname
        )
        if key is None:
            return None
        return lambda data: dkim_sign(data, key)

    def log_size_hint(self) -> int:
        """A tree size no larger than the log's now (entries after it are newer)."""
        return max(self._size_hint, self.service.metrics.tree_size)

    async def accept(
        self, account: Account, mail_from: str, rcpt_tos: list[str], received: Incoming
    ) -> str:
        from notary.relay.server import accept

        return await accept(self, account, mail_from, rcpt_tos, received)

    def _smtp(self) -> Any:
        from notary.relay.session import relay_smtp

        return relay_smtp(self)

    async def start(self) -> None:
        """Recover what a previous run left, then serve SMTP and deliver."""
        cp = await asyncio.to_thread(self.service.storage.latest_checkpoint)
        self._size_hint = cp.size if cp else 0
        await asyncio.to_thread(incoming.clear, self.incoming)
        return_large_buffers()
        await self.writer.start()
        await self.recover(own_age=0.0)
        await self.worker.start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._smtp, self.host, self.port, backlog=1024)
        self._recovery = asyncio.create_task(self._recover_loop(), name="relay-recovery")
        log.info("relay listening on %s:%d (node %s)", self.host, self.port, self.node)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._recovery is not None:
            self._recovery.cancel()
            try:
                await self._recovery
            except asyncio.CancelledError:
                pass
        await self.worker.stop()
        await self.writer.stop()

    async def _recover_loop(self) -> None:
        while True:
            await asyncio.sleep(RECOVERY_INTERVAL)
            try:
                await self.recover(own_age=OWN_HELD_AGE)
            except Exception as e:
                log.error("relay recovery failed: %s", e)

    async def recover(self, *, own_age: float) -> None:
        """Queue held messages whose acceptance is logged; discard the others.

        A held message is one spooled whose SubmissionAcceptance was not known
        to be logged (the process died, or the queue write failed). If the log
        has the acceptance, the sender may have had the 250: deliver it. If
        not, the sender had no 250: drop the bytes.
        """
        storage = self.service.storage
        now = self.service.clock()
        own = await asyncio.to_thread(
            storage.held_messages, now - timedelta(seconds=own_age), self.node
        )
        foreign = await asyncio.to_thread(
            storage.held_messages, now - timedelta(seconds=FOREIGN_HELD_AGE), None
        )
        seen: set[int] = set()
        for h in [*own, *foreign]:
            if h.spool_id in seen or h.spool_id in self.in_flight:
                continue
            seen.add(h.spool_id)
            entries = await asyncio.to_thread(storage.entries_for_message, h.sha256)
            accepted = any(
                e.event == "SubmissionAcceptance"
                and e.account_id == h.account_id
                and e.index >= h.log_size
                for e in entries
            )
            if accepted:
                log.info("recovered accepted message %s (spool %d)", h.sha256, h.spool_id)
                await self.writer.release(h.spool_id)
            else:
                log.info("discarding unacknowledged spooled message %d", h.spool_id)
                await self.writer.discard(h.spool_id)
        if seen:
            self.worker.wake()

"""Serve the HTTP API from several worker processes, under uvicorn's supervisor.

``certmail notary serve --workers N`` calls :func:`serve_workers`. The parent
binds the listening socket once and hands it to N workers: uvicorn's
:class:`~uvicorn.supervisors.Multiprocess` spawns them, pings them, replaces a
worker that dies, and on SIGTERM or SIGINT stops them all and returns. Each
worker opens its own :class:`~notary.service.NotaryService` (its own database
connection and event loop); the log has one sequencer, in the worker holding
``.sequencer.lock``, which the others feed over ``.sequencer.sock``
(:mod:`notary.sequencer_share`, docs/notary.md).

Limits: :func:`raise_nofile_limit` lifts the soft descriptor limit to the
hard one before serving, and :func:`uvicorn_config` serves with the per-peer
connection cap and header-read timeout of :mod:`notary.http_limits`, both
single-process (``certmail notary serve``) and with workers (each worker
taking its share of the per-peer cap).

Background work that must run once per notary, not once per worker, takes a
lock file in the notary directory: the witness cosigning
(:class:`notary.cosigning.Cosigning`) and the outside TSA anchoring
(:class:`notary.anchors.Anchoring`).

Metrics: before the workers start, ``PROMETHEUS_MULTIPROC_DIR`` is pointed at
a fresh directory private to this serve (0700, removed when it stops), so
``GET /metrics`` from any worker answers the totals of all (see
:mod:`notary.metrics`).
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import Error
from notary.metrics import MULTIPROC_ENV

if TYPE_CHECKING:
    import uvicorn

    from notary.config import NotaryConfig

__all__ = ["WorkerApp", "bind", "raise_nofile_limit", "serve_workers", "uvicorn_config"]

log = logging.getLogger("certmail.notary.serve")

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
BACKLOG = 4096
# Soft descriptor limit to ask for when the hard limit is unlimited.
NOFILE_WHEN_UNLIMITED = 1 << 20


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; answer the soft limit now in force.

    Idle connections hold a descriptor each: at the usual soft limit of 1,024
    they starve the HTTP and SMTP listeners long before the per-peer caps do.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE_WHEN_UNLIMITED if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (OSError, ValueError) as e:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, want, e)
    return soft


def uvicorn_config(app: object, config: NotaryConfig, **kwargs: Any) -> uvicorn.Config:
    """The uvicorn settings every notary server uses, with the HTTP limits of ``config``.

    With ``workers=N`` each worker counts a peer's connections on its own, so
    each gets ``1/N`` of the per-peer cap (at least 1): together they hold no
    more of one peer's connections than the cap.
    """
    from notary.http_limits import HttpLimits, LimitedConfig
    from notary.tsa_protocol import TsaHttpProtocol

    workers = max(1, int(kwargs.get("workers") or 1))
    limits = HttpLimits(
        per_peer=max(1, config.http_max_connections_per_peer // workers),
        header_timeout=config.http_header_timeout,
    )
    return LimitedConfig(
        app,
        limits=limits,
        protocol=TsaHttpProtocol,  # POST /tsa answered in the protocol (notary/tsa_protocol.py)
        loop="uvloop",
        access_log=False,
        log_level="warning",
        lifespan="on",
        **kwargs,
    )


@dataclass(frozen=True)
class WorkerApp:
    """The ASGI application factory each worker calls (picklable: spawned workers get it)."""

    directory: Path
    database: str | None

    def __call__(self) -> object:
        from uvicorn.config import STARTUP_FAILURE

        from notary.api import create_app
        from notary.service import NotaryService
        from notary.slowlog import install_stack_dump

        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        install_stack_dump()  # kill -USR1 on a worker: its threads' stacks into the log
        try:
            service = NotaryService.open(self.directory, database=self.database)
            service.share_sequencer(self.directory)  # one sequencer for all the workers
        except Exception as e:  # the supervisor stops rather than restart in a loop
            log.error("worker cannot open the notary: %s", e)
            sys.exit(STARTUP_FAILURE)
        return create_app(service, close_service=True)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port``, to share with the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise Error(
            f"could not serve on {host}:{port}: {e.strerror}",
            hint="is the port free? pick another with --http",
        ) from None
    sock.listen(BACKLOG)
    return sock


def serve_workers(
    directory: Path,
    host: str,
    port: int,
    database: str | None,
    workers: int,
    *,
    bound: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT from ``workers`` processes on one socket.

    ``bound`` is called once the socket listens, before the workers start.
    Raises :class:`keys.errors.Error` when the notary cannot be opened, the
    port cannot be bound, or a worker fails to start (then all are stopped).
    """
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from notary.service import NotaryService

    probe = NotaryService.open(directory, database=database)  # fail here, once
    notary_config = probe.config
    probe.close()
    raise_nofile_limit()  # before the workers start: they inherit it
    sock = bind(host, port)
    if bound is not None:
        bound()
    metrics_dir = tempfile.mkdtemp(prefix="certmail-notary-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by the spawned workers
    try:
        config = uvicorn_config(
            WorkerApp(directory, database), notary_config, factory=True, workers=workers
        )
        supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise Error("a notary worker failed to start", hint="see the log above")

"""Benchmark the relay's DATA intake alone: its block reader beside aiosmtpd's line reader.

Run: .venv/bin/python benchmarks/bench_relay_intake.py [--size-mb 7] [--messages 10]
     [--rounds 2] [--plain]

One server process per run, on loopback, with STARTTLS (``--plain``: without):
``relay`` is :class:`notary.relay.session.RelaySMTP` (the relay's own DATA reader,
:mod:`notary.relay.incoming`: pieces of whole lines handled with ``bytes`` methods,
the message staged to a file past 1 MiB, hashed, its line ends and lengths
checked); ``aiosmtpd`` is aiosmtpd's ``SMTP`` (its DATA reader: one ``readuntil``
and a few Python statements per line, the lines joined in memory). Both answer
``250`` as soon as the message is in (a handler that does nothing), so the
server's CPU (user+sys from /proc, per message) is what reading DATA costs. The
message is the PGP/MIME message of ``bench_relay.py --size-mb`` (64-column base64
lines). Runs alternate between the two servers.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_relay import free_port, large_message, pgp_mime_body  # noqa: E402
from benchmarks.proctree import cpu_of  # noqa: E402


class _Handler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        incoming = getattr(envelope, "incoming", None)
        size = incoming.size if incoming is not None else len(envelope.original_content)
        return f"250 2.0.0 OK {size}"


def serve(kind: str, port: int, ready: Any, cert: tuple[str, str] | None) -> None:
    """The server process: ``kind`` is "relay" or "aiosmtpd"."""
    import uvloop
    from aiosmtpd.smtp import SMTP

    from notary.relay.budget import return_large_buffers
    from notary.relay.limits import PeerLimits
    from notary.relay.session import RelaySMTP

    if kind == "relay":
        return_large_buffers()  # as the relay sets glibc at start (Relay.start)
    ctx = None
    if cert is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*cert)
    staging = Path(tempfile.mkdtemp(prefix="bench-intake-"))

    def protocol() -> SMTP:
        if kind == "relay":
            return RelaySMTP(
                _Handler(),
                limits=PeerLimits(),
                idle_timeout=60.0,
                data_timeout=600.0,
                incoming=staging,
                data_size_limit=64 * 1024 * 1024,
                decode_data=False,
                tls_context=ctx,
            )
        return SMTP(_Handler(), data_size_limit=None, decode_data=False, tls_context=ctx)

    async def main() -> None:
        srv = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", port)
        ready.set()
        await srv.serve_forever()

    uvloop.run(main())


async def client(port: int, message: bytes, n: int, tls: bool) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await r.readline()
            if line[3:4] != b"-":
                return line

    async def cmd(line: bytes) -> bytes:
        w.write(line + b"\r\n")
        return await reply()

    await reply()
    await cmd(b"EHLO bench")
    if tls:
        await cmd(b"STARTTLS")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        await w.start_tls(ctx)
        await cmd(b"EHLO bench")
    wire = message.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    for _ in range(n):
        await cmd(b"MAIL FROM:<a@a.test>")
        await cmd(b"RCPT TO:<b@b.test>")
        await cmd(b"DATA")
        w.write(wire)
        got = await reply()
        if not got.startswith(b"250"):
            raise SystemExit(f"DATA: {got!r}")
    await cmd(b"QUIT")
    w.close()


def one_run(kind: str, message: bytes, n: int, cert: tuple[str, str] | None) -> float:
    """The server's CPU seconds per message."""
    port = free_port()
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=serve, args=(kind, port, ready, cert), daemon=True)
    proc.start()
    try:
        if not ready.wait(30):
            raise SystemExit(f"{kind} server did not start")
        time.sleep(0.3)  # its start-up CPU settled
        assert proc.pid is not None
        before = cpu_of([proc.pid])
        asyncio.run(client(port, message, n, cert is not None))
        return (cpu_of([proc.pid]) - before) / n
    finally:
        proc.terminate()
        proc.join(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=7.0)
    ap.add_argument("--messages", type=int, default=10, help="per run (one session)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each server, alternated")
    ap.add_argument("--plain", action="store_true", help="no STARTTLS")
    args = ap.parse_args()
    message = large_message(pgp_mime_body(int(args.size_mb * 1e6)))(0)
    cert = None
    with tempfile.TemporaryDirectory() as d:
        if not args.plain:
            key, crt = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
            req = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"]
            req += ["ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt]
            req += ["-subj", "/CN=bench", "-days", "1"]
            subprocess.run(req, check=True, capture_output=True)
            cert = (crt, key)
        results: dict[str, list[float]] = {"relay": [], "aiosmtpd": []}
        for _ in range(args.rounds):
            for kind in results:
                results[kind].append(one_run(kind, message, args.messages, cert))
    mb = len(message) / 1e6
    print(
        f"DATA intake, {args.messages} messages of {mb:.1f} MB per run, "
        f"{'plain' if args.plain else 'STARTTLS'}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}; server CPU per message, runs alternated:"
    )
    for kind, secs in results.items():
        runs = " / ".join(f"{s * 1000:.0f}" for s in secs)
        best = min(secs)
        print(f"  {kind:9} {runs} ms ({mb / max(best, 1e-6):.0f} MB per CPU second, best run)")


if __name__ == "__main__":
    main()

"""Benchmark the notary's SMTP relay: accepted, durable and delivered messages per second.

Run: .venv/bin/python benchmarks/bench_relay.py [--messages 3000] [--connections 16]
     [--db URL [--nodes N]] [--size-mb MB]

With ``--db postgresql://...`` the notary's tables go into a fresh schema of
that database (``?schema=bench_<pid>_<time>``, dropped afterwards) unless the
URL names one.

A real `certmail notary serve --smtp ... --smarthost ...` process (SQLite by
default, synchronous=FULL) takes small messages from --connections submission
sessions (STARTTLS + AUTH once per session, then one transaction after another,
as a bulk sender would) and delivers each to a local aiosmtpd recipient server
in another process. A message counts when the recipient server has it; by then
its SubmissionAcceptance (with an RFC 3161 token) and its RelayToNonERDS are in
the log and the 250 was given only after the spool was fsynced.

Prints: messages/s from the first submission to the last delivery, the
accept-to-delivered latency p50/p99 (250 at the client to arrival at the
recipient, one monotonic clock), and the notary process's peak RSS (VmHWM).

``--size-mb 7`` (large mode; default 3 messages over 1 session): each message
is a PGP/MIME message (RFC 3156) of that size whose armored part holds real
OpenPGP packet framing (a PKESK and a SEIPD packet of random bytes), so the
relay checks it as ciphertext, as it does a campaign's messages. Then it also
prints the notary's CPU seconds (user+sys from /proc) per message from the first
submission to the last delivery, the MB per CPU second, and as the floor the
CPU of ``sha256sum`` and of ``cat`` reading the same message from a file.
Beside it, the peers of the same run (CPU per message): the recipient server
(aiosmtpd's own line-by-line DATA reader, no TLS, nothing written) taking the
relayed messages, and a private Debian Postfix (:mod:`benchmarks.relay_peers`)
taking the same message over plain SMTP into its queue and a Maildir.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

CERTMAIL = [sys.executable, "-m", "certmail.cli.main"]
ALICE, BOB = "alice@a.test", "bob@b.test"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sink_main(port: int, out: str, ready: Any) -> None:
    """The recipient server: records (Message-ID, arrival time) per message."""
    import uvloop
    from aiosmtpd.smtp import SMTP

    f = open(out, "w", buffering=1)

    class H:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            data: bytes = envelope.original_content
            i = data.find(b"Message-ID: <")
            mid = data[i + 13 : data.index(b">", i)].decode()
            f.write(f"{mid} {time.monotonic():.6f}\n")
            return "250 2.0.0 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(
            lambda: SMTP(H(), data_size_limit=None), "127.0.0.1", port, backlog=1024
        )
        ready.set()
        await srv.serve_forever()

    uvloop.run(main())


def small_message(i: int) -> bytes:
    return (
        f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: bench {i}\r\n"
        f"Message-ID: <{i}@bench>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
        " boundary=b\r\n\r\n--b\r\n\r\n" + "x" * 900 + "\r\n--b--\r\n"
    ).encode()


def pgp_mime_body(size: int) -> bytes:
    """The body of a PGP/MIME message of about ``size`` bytes: a PKESK (v3) and a SEIPD
    packet of random bytes, armored in 64-column lines (as gpg writes them)."""
    n = max(64, size * 48 // 65 - 64)
    pkesk = b"\x03" + os.urandom(8) + b"\x01" + os.urandom(130)
    seipd = b"\x01" + os.urandom(n)
    packets = bytes([0xC1, len(pkesk)]) + pkesk
    packets += b"\xd2\xff" + len(seipd).to_bytes(4, "big") + seipd
    b64 = base64.b64encode(packets)
    lines = b"\r\n".join(b64[k : k + 64] for k in range(0, len(b64), 64))
    return (
        b"--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
        b"--b\r\nContent-Type: application/octet-stream; name=encrypted.asc\r\n\r\n"
        b"-----BEGIN PGP MESSAGE-----\r\n\r\n" + lines + b"\r\n=AAAA\r\n"
        b"-----END PGP MESSAGE-----\r\n\r\n--b--\r\n"
    )


def large_message(body: bytes) -> Any:
    def make(i: int) -> bytes:
        return (
            f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: bench {i}\r\n"
            f"Message-ID: <{i}@bench>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
            ' boundary="b"\r\n\r\n'
        ).encode() + body

    return make


def floor_cpu(data: bytes, work: Path) -> dict[str, float]:
    """CPU seconds (user+sys) of sha256sum and of cat reading ``data`` from a file."""
    import resource

    path = work / "message.eml"
    path.write_bytes(data)
    out = {}
    for name, cmd in (("sha256sum", ["sha256sum"]), ("cat", ["cat"])):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(5):
            with open(path, "rb") as f:
                subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out[name] = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / 5
    return out


class Client:
    def __init__(self, port: int, token: str, message: Any = small_message) -> None:
        self.port, self.token, self.message = port, token, message

    async def _reply(self, r: asyncio.StreamReader) -> tuple[int, str]:
        lines = []
        while True:
            line = (await r.readline()).decode()
            lines.append(line[4:].strip())
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), " ".join(lines)

    async def _cmd(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, line: str, want: int
    ) -> str:
        w.write(line.encode() + b"\r\n")
        code, text = await self._reply(r)
        if code != want:
            raise RuntimeError(f"{line.split()[0]}: {code} {text}")
        return text

    async def run(self, ids: list[int], accepted: dict[int, float]) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", self.port)
        await self._reply(r)
        await self._cmd(r, w, "EHLO bench", 250)
        await self._cmd(r, w, "STARTTLS", 220)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        await w.start_tls(ctx)
        await self._cmd(r, w, "EHLO bench", 250)
        cred = base64.b64encode(f"\0{ALICE}\0{self.token}".encode()).decode()
        await self._cmd(r, w, f"AUTH PLAIN {cred}", 235)
        for i in ids:
            msg = self.message(i)
            await self._cmd(r, w, f"MAIL FROM:<{ALICE}>", 250)
            await self._cmd(r, w, f"RCPT TO:<{BOB}>", 250)
            await self._cmd(r, w, "DATA", 354)
            w.write(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
            code, text = await self._reply(r)
            if code != 250 or "sha256=" not in text:
                raise RuntimeError(f"DATA: {code} {text}")
            accepted[i] = time.monotonic()
        w.write(b"QUIT\r\n")
        w.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, help="default 3000 (3 with --size-mb)")
    ap.add_argument("--connections", type=int, help="default 16 (1 with --size-mb)")
    ap.add_argument(
        "--size-mb", type=float, help="large mode: PGP/MIME messages of this size (module doc)"
    )
    ap.add_argument("--db", help="database URL (default: SQLite in the notary directory)")
    ap.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="serve processes sharing the queue (PostgreSQL only); the sessions "
        "are spread over their relays",
    )
    args = ap.parse_args()
    large = args.size_mb is not None
    if args.messages is None:
        args.messages = 3 if large else 3000
    if args.connections is None:
        args.connections = 1 if large else 16
    message = large_message(pgp_mime_body(int(args.size_mb * 1e6))) if large else small_message
    if args.nodes > 1 and not args.db:
        ap.error("--nodes needs --db postgresql://...")

    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    ndir = work / "notary"
    init = [*CERTMAIL, "notary", "init", "--dir", str(ndir), "--origin", "bench.test/log"]
    db = args.db
    if db and "schema=" not in db:
        # A fresh schema per run (dropped at the end): a second run on the same
        # database would otherwise meet the first run's log and accounts.
        db += ("&" if "?" in db else "?") + f"schema=bench_{os.getpid()}_{int(time.time())}"
    if db:
        init += ["--db", db]
    subprocess.run(init, check=True, capture_output=True)
    token = subprocess.run(
        [*CERTMAIL, "notary", "accounts", "add", ALICE, "--dir", str(ndir)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    sink_port = free_port()
    smtp_ports = [free_port() for _ in range(args.nodes)]
    http_ports = [free_port() for _ in range(args.nodes)]
    arrivals = work / "arrivals.txt"
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(
        target=sink_main, args=(sink_port, str(arrivals), ready), daemon=True
    )
    sink.start()
    ready.wait(10)
    serves = []
    for k in range(args.nodes):
        log = open(work / f"serve-{k}.log", "wb")
        serves.append(
            subprocess.Popen(
                [
                    *CERTMAIL,
                    "notary",
                    "serve",
                    "--dir",
                    str(ndir),
                    "--http",
                    f"127.0.0.1:{http_ports[k]}",
                    "--smtp",
                    f"127.0.0.1:{smtp_ports[k]}",
                    "--smarthost",
                    f"127.0.0.1:{sink_port}",
                    "--node",
                    f"bench-{k}",
                ],
                stdout=log,
                stderr=log,
            )
        )
    serve = serves[0]
    try:
        import httpx

        deadline = time.monotonic() + 30
        for k, proc in enumerate(serves):
            while True:
                try:
                    url = f"http://127.0.0.1:{http_ports[k]}/v1/relay"
                    if httpx.get(url).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    text = (work / f"serve-{k}.log").read_text()
                    raise SystemExit(f"notary did not start: {text}")
                time.sleep(0.1)

        accepted: dict[int, float] = {}
        ids = list(range(args.messages))
        shares = [ids[k :: args.connections] for k in range(args.connections)]

        async def load() -> float:
            t0 = time.monotonic()
            await asyncio.gather(
                *(
                    Client(smtp_ports[k % args.nodes], token, message).run(s, accepted)
                    for k, s in enumerate(shares)
                )
            )
            return t0

        prof = None
        if os.environ.get("BENCH_PYSPY"):
            spy = str(Path(sys.executable).parent / "py-spy")
            prof = subprocess.Popen(
                [
                    spy,
                    "record",
                    "-o",
                    os.environ["BENCH_PYSPY"],
                    "-f",
                    "raw",
                    "-p",
                    str(serve.pid),
                    "-d",
                    "8",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        from benchmarks.proctree import cpu_of

        idle = cpu_of([p.pid for p in serves])
        time.sleep(2.0)  # the serve processes' own background work, for comparison
        cpu0 = cpu_of([p.pid for p in serves])
        idle = (cpu0 - idle) / 2.0
        sink0 = cpu_of([sink.pid]) if sink.pid else 0.0
        t0 = asyncio.run(load())
        t_accepted = time.monotonic()
        delivered: dict[int, float] = {}
        copies = 0
        deadline = time.monotonic() + 300
        while len(delivered) < args.messages and time.monotonic() < deadline:
            time.sleep(0.2)
            delivered = {}
            lines = arrivals.read_text().splitlines()
            for line in lines:
                mid, t = line.split()
                delivered.setdefault(int(mid.split("@")[0]), float(t))
            copies = len(lines)
        if prof is not None:
            prof.wait()
        sink_cpu = (cpu_of([sink.pid]) if sink.pid else 0.0) - sink0
        cpu, hwm = 0.0, 0
        for proc in serves:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
            hwm = max(
                hwm, int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
            )
    finally:
        for proc in serves:
            proc.terminate()
        for proc in serves:
            proc.wait(30)
        sink.terminate()
        if db and db != args.db:
            from notary.storage.postgres import PostgresStorage

            st = PostgresStorage(db)
            st.drop_schema()
            st.close()
    if len(delivered) < args.messages:
        raise SystemExit(f"only {len(delivered)} of {args.messages} delivered")
    t_end = max(delivered.values())
    lat = sorted(delivered[i] - accepted[i] for i in ids)

    def p(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    if large:
        from benchmarks.relay_peers import postfix_cpu

        peers = {
            "plain aiosmtpd (the recipient server)": sink_cpu / args.messages,
            "Postfix: smtpd, cleanup, virtual(8)": postfix_cpu(
                message(0), args.messages, ALICE, BOB
            )[0],
        }
        print_large(
            message(0), args.messages, cpu - cpu0, t_end - t0, floor_cpu(message(0), work), peers
        )
        print(f"  (notary idle: {idle * 100:.1f}% of a core)")
        return
    print(
        f"relay benchmark: {args.messages} messages of ~1 KB, {args.connections} sessions, "
        f"{'PostgreSQL' if args.db else 'SQLite'}, {args.nodes} serve process(es), "
        f"{os.cpu_count()} CPUs"
    )
    if copies != len(delivered):
        print(f"  DUPLICATES: {copies - len(delivered)} extra copies at the recipient")
    print(f"  accepted (250, durable):  {args.messages / (t_accepted - t0):8.0f} msg/s")
    print(f"  accepted + delivered:     {args.messages / (t_end - t0):8.0f} msg/s")
    print(f"  accept->delivered p50:    {p(0.50):8.1f} ms")
    print(f"  accept->delivered p99:    {p(0.99):8.1f} ms")
    print(f"  notary peak RSS (VmHWM):  {hwm / 1024:8.1f} MiB (largest process)")
    print(
        f"  notary CPU time:          {cpu:8.1f} s ({cpu / (t_end - t0) * 100:.0f}% of one core,"
        " all processes)"
    )


def print_large(
    msg: bytes,
    n: int,
    cpu: float,
    wall: float,
    floor: dict[str, float],
    peers: dict[str, float],
) -> None:
    mb = len(msg) / 1e6
    per = cpu / n
    print(
        f"relay benchmark, large: {n} PGP/MIME messages of {mb:.1f} MB, 1 session, SQLite, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(f"  notary CPU per message:   {per:8.3f} s ({mb / per:.0f} MB per CPU second)")
    print(f"  accepted + delivered:     {n * mb / wall:8.1f} MB/s wall")
    for name, sec in peers.items():
        print(f"  peer, {name + ':':38}{sec:8.3f} s ({mb / max(sec, 1e-6):.0f} MB per CPU second)")
    for name, sec in floor.items():
        print(f"  floor, {name + ':':18}{sec:8.3f} s ({mb / max(sec, 1e-6):.0f} MB per CPU second)")


if __name__ == "__main__":
    main()

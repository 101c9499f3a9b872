"""Benchmark the kept SMTP session with and without PIPELINING (RFC 2920).

A loopback aiosmtpd server in its own process (discarding what it takes, and
offering PIPELINING or not) and ``certmail.submitter.submit`` over one kept
session, N small messages. Printed per message: wall, the client's CPU and the
server's CPU (from /proc), and the client's ``send`` calls (writes).

    .venv/bin/python benchmarks/bench_submit_pipelining.py [--n 500] [--rounds 3]

``CERTMAIL_BENCH_TREE=DIR`` imports certmail from another copy of the tree (an
older commit, for a before/after in the same run).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("CERTMAIL_BENCH_TREE") or str(ROOT))

from certmail import submitter  # noqa: E402

SERVER = """
import asyncio, sys
from aiosmtpd.controller import Controller
offer = sys.argv[2] == "1"
class H:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if offer else responses
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 accepted"
c = Controller(H(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"""


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(n: int, offer: bool) -> tuple[float, float, float, float]:
    port = _port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), "1" if offer else "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        peer = submitter.Peer("127.0.0.1", port, starttls="never")
        msg = b"From: a@a.test\r\nTo: b@b.test\r\nSubject: x\r\n\r\n" + (b"y" * 70 + b"\r\n") * 30
        submitter.keep_sessions()
        submitter.submit(peer, "a@a.test", ["b@b.test"], msg)  # the session is open
        sends = 0
        original = socket.socket.sendall

        def counting(self: socket.socket, data: object, *a: object) -> None:
            nonlocal sends
            sends += 1
            original(self, data, *a)  # type: ignore[arg-type]

        socket.socket.sendall = counting  # type: ignore[method-assign]
        s0, c0, w0 = _cpu_of(server.pid), resource.getrusage(resource.RUSAGE_SELF), time.time()
        try:
            for _ in range(n):
                submitter.submit(peer, "a@a.test", ["b@b.test"], msg)
        finally:
            socket.socket.sendall = original  # type: ignore[method-assign]
        w1, c1, s1 = time.time(), resource.getrusage(resource.RUSAGE_SELF), _cpu_of(server.pid)
        submitter.close_sessions()
        client = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
        return (w1 - w0) / n * 1e3, client / n * 1e3, (s1 - s0) / n * 1e3, sends / n
    finally:
        server.communicate("")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"certmail from {submitter.__file__}; {args.n} messages of 2 KB a round")
    print("server offers     wall ms/msg  client CPU ms  server CPU ms  writes/msg")
    for _ in range(args.rounds):
        for offer in (False, True):
            wall, client, server, sends = run(args.n, offer)
            label = "PIPELINING" if offer else "no PIPELINING"
            print(f"{label:16} {wall:12.2f} {client:14.2f} {server:14.2f} {sends:11.1f}")


if __name__ == "__main__":
    main()

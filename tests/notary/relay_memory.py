"""Large concurrent submissions through a real relay, and the notary's peak RSS.

Shared by ``tests/notary/test_relay_memory.py`` (a bound) and
``benchmarks/bench_relay_memory.py`` (the figures). The recipient server
counts and hashes what it gets without keeping it, so only the notary's
memory is measured: its ``VmHWM`` (peak resident set) from ``/proc``.
"""

from __future__ import annotations

import base64
import hashlib
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

ALICE = "alice@a.test"
BOB = "bob@b.test"
MIB = 1024 * 1024


def status_kib(pid: int, key: str) -> int:
    """``VmRSS``/``VmHWM`` of ``pid`` in KiB (Linux ``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise LookupError(f"{key} not in /proc/{pid}/status")


def big_message(mid: str, size: int) -> bytes:
    """A plain message of about ``size`` bytes: base64 lines, as an attachment would be."""
    line = base64.b64encode(hashlib.sha512(mid.encode()).digest())[:76] + b"\r\n"
    head = (
        f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: big\r\nMessage-ID: <{mid}@a.test>\r\n"
        "Date: Sat, 21 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    return head + line * (max(size - len(head), 0) // len(line))


@dataclass
class CountingSink:
    """A recipient server that keeps only (SHA-256 of the submitted bytes, size) of each message."""

    host: str = "127.0.0.1"
    port: int = 0
    got: dict[str, int] = field(default_factory=dict)
    controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content
        # Keyed by the submitted bytes' hash (the relay prepends header lines only).
        at = data.find(b"\r\nFrom: ") + 2
        self.got[hashlib.sha256(data[at:]).hexdigest()] = len(data) - at
        envelope.original_content = envelope.content = b""
        return "250 2.0.0 queued as sink"

    def start(self) -> None:
        if not self.port:
            with socket.socket() as sock:
                sock.bind((self.host, 0))
                self.port = int(sock.getsockname()[1])
        self.controller = Controller(
            self, hostname=self.host, port=self.port, data_size_limit=None, decode_data=False
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def submit(port: int, token: str, data: bytes) -> tuple[int, bytes]:
    """One STARTTLS + AUTH session submitting ``data``; the reply to DATA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as s:
        s.starttls(context=ctx)
        s.login(ALICE, token)
        s.mail(ALICE, [f"SIZE={len(data)}"])
        s.rcpt(BOB)
        return s.data(data)


def run_concurrent(port: int, token: str, messages: list[bytes]) -> list[tuple[int, bytes]]:
    """Submit ``messages`` at once, one session (thread) each."""
    out: list[tuple[int, bytes]] = [(0, b"")] * len(messages)

    def one(i: int) -> None:
        out[i] = submit(port, token, messages[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(messages))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return out


def wait_delivered(sink: CountingSink, want: set[str], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not want <= set(sink.got):
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(want - set(sink.got))} messages not delivered")
        time.sleep(0.1)


def peak_mib(pid: int) -> float:
    return status_kib(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    return status_kib(pid, "VmRSS") / 1024


__all__ = [
    "CountingSink",
    "big_message",
    "peak_mib",
    "rss_mib",
    "run_concurrent",
    "submit",
    "wait_delivered",
]

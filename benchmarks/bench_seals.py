"""Benchmark sealed delivery (issue 12): seal releases per second over HTTP, and p99.

A real ``certmail notary serve`` (one process, SQLite) holds N sealed messages
(notarized, K_n registered). 16 client threads each post signed
acknowledgements to ``POST /v1/seals/{sha256}/open``: every release is a gpg
signature check, a durable ContentHandover entry (group commit) and an answer
with K_n and the receipt. The peer, from the same run and the same notary, is
``POST /v1/ack`` (the plain acknowledgement: the same check and log entry,
no key release). Target: >= 500 releases/s, p99 <= 100 ms.

Acknowledgements are signed before timing (the recipient's work, not the
notary's). ``CERTMAIL_BENCH_SEALS=N`` sets N (default 400).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from certmail.ack import make_ack
from keys.gpg import Keyring
from notary.evidence import format_time

CERTMAIL = [sys.executable, "-m", "certmail.cli.main"]
CLIENTS = 16
EMAIL = "bob@example.net"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_notary(d: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    subprocess.run(
        [*CERTMAIL, "notary", "init", "--dir", str(d), "--origin", "bench.test/log"],
        check=True,
        capture_output=True,
    )
    toml = d / "notary.toml"  # the per-source bound of unauthenticated acks, lifted
    text = re.sub(r"(?m)^ack_per_source = .*$", "ack_per_source = 100000000", toml.read_text())
    toml.write_text(text)
    out = subprocess.run(
        [*CERTMAIL, "notary", "accounts", "add", "alice@example.org", "--dir", str(d)],
        check=True,
        capture_output=True,
        text=True,
    )
    token = out.stdout.strip().splitlines()[-1]
    url = f"http://127.0.0.1:{free_port()}"
    log = open(d / "serve.log", "ab")
    proc = subprocess.Popen(
        [*CERTMAIL, "notary", "serve", "--dir", str(d), "--http", url.removeprefix("http://")],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url, token
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the notary did not start")


def prepare(url: str, token: str, ring: Keyring, fpr: str, n: int, tag: str) -> list[Any]:
    """n messages notarized and sealed; one signed acknowledgement body each."""
    auth = {"Authorization": f"Bearer {token}"}
    expires = format_time(datetime.now(UTC) + timedelta(hours=1))
    bodies = []
    with httpx.Client(base_url=url, headers=auth, timeout=30) as c:
        for i in range(n):
            sha = hashlib.sha256(f"{tag}-{i}".encode()).hexdigest()
            mid = f"<{tag}.{i}@bench.test>"
            c.post("/v1/notarize", json={"sha256": sha, "message_id": mid}).raise_for_status()
            if tag == "sealed":
                seal = {
                    "sha256": sha,
                    "message_id": mid,
                    "share": base64.b64encode(os.urandom(32)).decode(),
                    "fingerprints": [fpr],
                    "expires": expires,
                    "recipients": [EMAIL],
                }
                c.post("/v1/seals", json=seal).raise_for_status()
            ack = make_ack(
                ring, sha256=sha, message_id=mid, recipient=EMAIL, notary=url,
                time=datetime.now(UTC),
            )  # fmt: skip
            bodies.append(ack.to_json())
    return bodies


def drive(url: str, bodies: list[Any], route: Any) -> tuple[float, list[float]]:
    """16 threads post every body once; (requests/s, latencies in s)."""
    lat: list[float] = []
    lock = threading.Lock()
    chunks = [bodies[i::CLIENTS] for i in range(CLIENTS)]

    def client(mine: list[Any]) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            for b in mine:
                t0 = time.perf_counter()
                r = c.post(route(b), json=b)
                dt = time.perf_counter() - t0
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code} {r.text[:200]}")
                with lock:
                    lat.append(dt)

    threads = [threading.Thread(target=client, args=(ch,)) for ch in chunks]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat) / (time.perf_counter() - t0), sorted(lat)


def p99(lat: list[float]) -> float:
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")


def main() -> int:
    n = int(os.environ.get("CERTMAIL_BENCH_SEALS", "400"))
    work = Path(tempfile.mkdtemp(prefix="bench-seals-", dir="/tmp"))
    proc = None
    try:
        gh = work / "g"
        gh.mkdir(mode=0o700)
        ring = Keyring(gh)
        fpr = ring.generate_identity(EMAIL, "Bob")
        proc, url, token = start_notary(work / "notary")
        sealed = prepare(url, token, ring, fpr, n, "sealed")
        plain = prepare(url, token, ring, fpr, n, "plain")
        s_rate, s_lat = drive(url, sealed, lambda b: f"/v1/seals/{b['sha256']}/open")
        a_rate, a_lat = drive(url, plain, lambda b: "/v1/ack")
        print(f"seal releases over HTTP, {CLIENTS} clients, {n} each run (one notary process)")
        print(f"  {'what':<44} {'per s':>10} {'p99 ms':>10}")
        ours = "POST /v1/seals/{sha256}/open (certmail)"
        print(f"  {ours:<44} {s_rate:>10.0f} {p99(s_lat):>10.1f}")
        peer = "POST /v1/ack (peer: plain acknowledgement)"
        print(f"  {peer:<44} {a_rate:>10.0f} {p99(a_lat):>10.1f}")
        print("  target: >= 500 releases/s, p99 <= 100 ms")
        return 0
    finally:
        if proc is not None:
            os.killpg(proc.pid, 15)
            proc.wait(10)
        subprocess.run(["gpgconf", "--homedir", str(work / "g"), "--kill", "all"], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

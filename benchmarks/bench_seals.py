"""Benchmark sealed delivery (issue 12): seal releases per second over HTTP, and p99.

A real ``certmail notary serve`` (one process, SQLite) holds N sealed messages
(notarized, K_n registered). wrk (16 connections, 2 threads, a Lua script
posting each prepared body once) posts signed acknowledgements to
``POST /v1/seals/{sha256}/open``: every release is a signature check
(Sequoia, in-process), a durable ContentHandover entry (group commit) and an
answer with K_n and the receipt. Target: >= 500 releases/s, p99 <= 100 ms.

Peers from the same run: ``POST /v1/ack`` of the same notary (the same check
and log entry, no key release), ``POST /v1/notarize`` of the same notary (a
durable log entry and nothing else: the ceiling a release could reach), and,
in a loop in this process, the GnuPG check the notary made before (keys.gpg:
the key imported into a fresh GNUPGHOME, verified, the agent stopped) and a
keys.gpg verify in one long-lived keyring, beside the notary's check now.

Acknowledgements are signed before timing (the recipient's work, not the
notary's), with Sequoia for speed. ``CERTMAIL_BENCH_SEALS=N`` sets N per run
(default 2500; wrk runs ``CERTMAIL_BENCH_SECONDS``, default 4, and the table
says so if the bodies ran out first).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pysequoia

from keys.gpg import Keyring
from notary.ackformat import Ack, ack_text
from notary.evidence import format_time

CERTMAIL = [sys.executable, "-m", "certmail.cli.main"]
CONNECTIONS = 16
EMAIL = "bob@example.net"

#: Each wrk thread posts its share of the lines of a file ("path<TAB>body") once.
LUA = r"""
local lines, mine, i, n = {}, {}, 0, 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  for line in io.lines(args[1]) do table.insert(lines, line) end
  n = tonumber(args[2])
  for k = (id or 0) + 1, #lines, n do table.insert(mine, lines[k]) end
end
function request()
  i = i + 1
  if i > #mine then
    wrk.thread:stop()
    i = #mine
  end
  local tab = mine[i]:find("\t")
  return wrk.format("POST", mine[i]:sub(1, tab - 1),
    {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("BENCH_AUTH")},
    mine[i]:sub(tab + 1))
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(99), summary.errors.status))
end
"""


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
    toml = d / "notary.toml"  # the bounds of unauthenticated acks, lifted
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


class Signer:
    """The recipient's key (Sequoia) and its acknowledgements."""

    def __init__(self) -> None:
        self.tsk = pysequoia.Tsk.generate(f"Bob <{EMAIL}>")
        self.cert = str(self.tsk.extract_certificate())
        self.fingerprint = self.tsk.extract_certificate().fingerprint.upper()

    def ack(self, url: str, sha: str, mid: str) -> dict[str, str]:
        text = ack_text(Ack(sha, mid, EMAIL, datetime.now(UTC), url))
        mode = pysequoia.SignatureMode.DETACHED
        sig = pysequoia.sign(self.tsk.signer(), text.encode(), mode=mode).decode()
        return {
            "sha256": sha,
            "message_id": mid,
            "recipient": EMAIL,
            "signed": text,
            "signature": sig,
            "public_key": self.cert,
        }


def prepare(url: str, token: str, signer: Signer, n: int, tag: str) -> list[dict[str, str]]:
    """n messages notarized (and, for ``sealed``, K_n registered); one ack body each."""
    auth = {"Authorization": f"Bearer {token}"}
    expires = format_time(datetime.now(UTC) + timedelta(hours=1))
    items = [
        {"sha256": hashlib.sha256(f"{tag}-{i}".encode()).hexdigest(), "message_id": f"<{tag}{i}@b>"}
        for i in range(n)
    ]
    with httpx.Client(base_url=url, headers=auth, timeout=60) as c:
        c.post("/v1/notarize/batch", json={"items": items, "tst": False}).raise_for_status()
    if tag == "sealed":

        def register(chunk: list[dict[str, str]]) -> None:
            with httpx.Client(base_url=url, headers=auth, timeout=60) as c:
                for it in chunk:
                    seal = {
                        **it,
                        "share": base64.b64encode(os.urandom(32)).decode(),
                        "fingerprints": [signer.fingerprint],
                        "expires": expires,
                        "recipients": [EMAIL],
                    }
                    c.post("/v1/seals", json=seal).raise_for_status()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(register, [items[i::8] for i in range(8)]))
    return [signer.ack(url, it["sha256"], it["message_id"]) for it in items]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) the process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str, lines: list[str], work: Path, seconds: int, pid: int, auth: str = ""
) -> dict[str, Any]:
    """Post every line once with wrk; its requests/s, p99 ms, the server's CPU µs per
    request (``pid``'s user + system time over the run) and whether it ran out."""
    data, script = work / "bodies.txt", work / "post.lua"
    data.write_text("\n".join(lines) + "\n")
    script.write_text(LUA)
    threads = 2
    cmd = ["wrk", f"-t{threads}", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script), url]
    cpu = cpu_seconds(pid)
    out = subprocess.run(
        [*cmd, "--", str(data), str(threads)],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_AUTH": auth},
        check=True,
    )
    cpu = cpu_seconds(pid) - cpu
    results = [ln.split()[1:] for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    requests, duration_us, p99_us, bad = (int(x) for x in results[-1])
    if bad:
        raise RuntimeError(f"{bad} answers were not 2xx:\n{out.stdout}")
    return {
        "rate": requests / (duration_us / 1e6),
        "p99": p99_us / 1000,
        "cpu_us": cpu * 1e6 / max(1, requests),
        "ran_out": requests >= len(lines),
    }


def gpg_rates(body: dict[str, str], work: Path) -> tuple[float, float]:
    """Checks per second of the gpg check the notary made before (a fresh GNUPGHOME per
    check: import, verify, gpgconf --kill) and of keys.gpg verify in one keyring."""
    text, sig, cert = body["signed"].encode(), body["signature"].encode(), body["public_key"]
    t0, n = time.perf_counter(), 10
    for i in range(n):
        home = work / f"fresh{i}"
        home.mkdir(mode=0o700)
        fresh = Keyring(home)
        fresh.import_keys(cert.encode())
        fresh.verify_detached(text, sig)
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    fresh_rate = n / (time.perf_counter() - t0)
    kept = work / "kept"
    kept.mkdir(mode=0o700)
    ring = Keyring(kept)
    ring.import_keys(cert.encode())
    t0, n = time.perf_counter(), 50
    for _ in range(n):
        ring.verify_detached(text, sig)
    rate = n / (time.perf_counter() - t0)
    subprocess.run(["gpgconf", "--homedir", str(kept), "--kill", "all"], check=False)
    return fresh_rate, rate


def sequoia_rate(body: dict[str, str]) -> float:
    """Checks per second of the notary's check (notary.ack.check_signature), one thread."""
    from notary.ack import check_signature

    t0, n = time.perf_counter(), 500
    for _ in range(n):
        check_signature(body["signed"], body["signature"], body["public_key"], EMAIL)
    return n / (time.perf_counter() - t0)


def line(path: str, body: dict[str, str]) -> str:
    return f"{path}\t{json.dumps(body, separators=(',', ':'))}"


def main() -> int:
    n = int(os.environ.get("CERTMAIL_BENCH_SEALS", "2500"))
    seconds = int(os.environ.get("CERTMAIL_BENCH_SECONDS", "4"))
    if not shutil.which("wrk"):
        print("bench_seals: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-seals-", dir="/tmp"))
    proc = None
    try:
        signer = Signer()
        proc, url, token = start_notary(work / "notary")
        sealed = prepare(url, token, signer, n, "sealed")
        plain = prepare(url, token, signer, n, "plain")
        notarize = [
            {"sha256": hashlib.sha256(f"n-{i}".encode()).hexdigest(), "message_id": f"<n{i}@b>"}
            for i in range(n)
        ]
        runs = [
            (
                "POST /v1/seals/{sha256}/open (certmail)",
                wrk(
                    url,
                    [line(f"/v1/seals/{b['sha256']}/open", b) for b in sealed],
                    work,
                    seconds,
                    proc.pid,
                ),
            ),
            (
                "POST /v1/ack (peer: plain acknowledgement)",
                wrk(url, [line("/v1/ack", b) for b in plain], work, seconds, proc.pid),
            ),
            (
                "POST /v1/notarize (peer: a log entry alone)",
                wrk(
                    url,
                    [line("/v1/notarize", b) for b in notarize],
                    work,
                    seconds,
                    proc.pid,
                    f"Bearer {token}",
                ),
            ),
        ]
        fresh, kept = gpg_rates(plain[0], work)
        seq = sequoia_rate(plain[0])
        load = os.getloadavg()[0]
        print(
            f"seal releases over HTTP: wrk, {CONNECTIONS} connections, one notary process,"
            f" SQLite (load average {load:.1f} on {os.cpu_count()} cores)"
        )
        print(f"  {'what':<58} {'per s':>8} {'p99 ms':>8} {'CPU µs':>8}")
        for what, r in runs:
            more = f"  (all {n} bodies sent: a lower bound)" if r["ran_out"] else ""
            print(f"  {what:<58} {r['rate']:>8.0f} {r['p99']:>8.1f} {r['cpu_us']:>8.0f}{more}")
        print("  CPU µs: the notary process's user + system time per request (all threads)")
        print("  signature checks alone, one thread of this process:")
        for what, rate in (
            ("Sequoia in-process (the notary's check now)", seq),
            ("gpg, fresh GNUPGHOME each (the notary's check before)", fresh),
            ("gpg verify in one kept keyring (keys.gpg)", kept),
        ):
            print(f"  {what:<58} {rate:>8.0f}")
        print("  target: >= 500 releases/s, p99 <= 100 ms")
        return 0
    finally:
        if proc is not None:
            os.killpg(proc.pid, 15)
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

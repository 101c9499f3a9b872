"""Benchmark the RFC 3161 TSA: POST /tsa through the real `certmail notary serve`, and its peer.

Run: .venv/bin/python benchmarks/bench_tsa.py [--duration 10] [--connections 16]
     [--uts-server PATH]

Prints one table:
- ECDSA P-256 sign rate (cryptography, in-process, one core): the ceiling per core;
- TimeStampAuthority.respond() in-process (one core): the token work without HTTP;
- `openssl ts -reply` in a loop (a new process per token, as a shell script would);
- POST /tsa through `certmail notary serve` of a freshly initialised notary, with
  `--workers 1` and `--workers 2`, loaded by wrk (C, one thread, so the load client
  eats little of the CPU being measured) with 16 connections, with keep-alive and
  with `Connection: close` (a new TCP connection per token);
- the peer in the same run, with the same TSA key, certificate chain and query:
  uts-server (a C RFC 3161 server on OpenSSL and civetweb) when one is found
  (`--uts-server`, `$CERTMAIL_BENCH_UTS_SERVER` or `uts-server` on PATH; it is
  not packaged by Debian, build it from github.com/kakwa/uts-server). Without it
  the `openssl ts -reply` row is the only, weaker, peer and the table says so.

Each HTTP row also gives the server's CPU time per token (user + system of every
thread of the server's processes, from /proc): on a machine shared with other work
the throughput mostly measures the share of the CPU a server gets (a server with
34 threads gets more than one with 2 processes), the CPU per token what a token
costs it.

wrk comes from Debian (`apt-get install -y wrk`); the script installs it when it is
missing and it runs as root. Every HTTP run first checks that the server grants a
token that `openssl ts -verify` accepts, and counts non-200 answers and socket
errors as failures (with a new connection per token, not wrk's read errors on a
server's close after a complete response).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ORIGIN = "bench.example/tsa"
POLICY = "1.3.6.1.4.1.32473.3161.1"  # certmail's default TSA policy

Row = tuple[str, float, int, float | None]  # what, tokens/s, failed, server CPU µs/token


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            fn()
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def openssl_reply_loop(work: Path, pki: Path, query: Path, seconds: float) -> float:
    conf = work / "openssl-tsa.cnf"
    conf.write_text(
        f"""[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
dir = {pki}
serial = {work / "openssl-serial"}
crypto_device = builtin
signer_cert = $dir/tsa-cert.pem
certs = $dir/tsa-chain.pem
signer_key = $dir/tsa-key.pem
signer_digest = sha256
default_policy = {POLICY}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""
    )
    (work / "openssl-serial").write_text("01\n")
    out = work / "openssl.tsr"
    cmd = ["openssl", "ts", "-reply", "-config", str(conf), "-queryfile", str(query)]
    cmd += ["-out", str(out)]

    def one() -> None:
        subprocess.run(cmd, check=True, capture_output=True)

    one()
    verify_reply(out, query, pki / "root-ca.pem")
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        one()
        n += 1
    return n / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: How long a server may take to listen (imports alone take seconds on a loaded machine).
START_TIMEOUT = 60.0


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not start listening")


def verify_reply(reply: Path, query: Path, root: Path) -> None:
    """``openssl ts -verify`` accepts the reply to ``query`` against ``root``."""
    cmd = ["openssl", "ts", "-verify", "-queryfile", str(query), "-in", str(reply)]
    subprocess.run([*cmd, "-CAfile", str(root)], check=True, capture_output=True)


def check_server(url: str, work: Path, query: Path, root: Path) -> None:
    import httpx

    r = httpx.post(
        url,
        content=query.read_bytes(),
        headers={"content-type": "application/timestamp-query"},
        timeout=START_TIMEOUT,  # workers still starting on a loaded machine
    )
    r.raise_for_status()
    reply = work / "http.tsr"
    reply.write_bytes(r.content)
    verify_reply(reply, query, root)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the serve supervisor and its workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        todo += [int(k) for k in kids]
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of every thread of ``pids``, in seconds."""
    ticks = 0
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str, lua: Path, connections: int, seconds: float, close: bool
) -> tuple[float, int, int]:
    """Requests per second, failures and requests of one wrk run."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(lua)]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    if not m or not n:
        raise SystemExit(f"cannot read wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    failures = int(bad.group(1)) if bad else 0
    for kind, count in re.findall(r"(connect|read|write|timeout) (\d+)", out):
        # With Connection: close, wrk counts a read error when the server's close
        # reaches it as a reset after a complete response (uts-server's civetweb
        # does this for every token): the response was read and counted.
        if not (close and kind == "read"):
            failures += int(count)
    return float(m.group(1)), failures, int(n.group(1))


def load_runs(
    label: str, url: str, pid: int, lua: Path, connections: int, seconds: float
) -> list[Row]:
    """Keep-alive and new-connection runs against a listening server (after a warm-up)."""
    wrk(url, lua, connections, 2, close=False)
    rows: list[Row] = []
    for close in (False, True):
        pids = process_tree(pid)
        before = cpu_seconds(pids)
        rps, failures, n = wrk(url, lua, connections, seconds, close)
        cpu = cpu_seconds(pids) - before
        what = "new connection per token" if close else "keep-alive"
        rows.append((f"{label}, {what}", rps, failures, cpu / max(n, 1) * 1e6))
    return rows


@contextmanager
def running(
    cmd: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process listening on ``port``, stopped with SIGINT (then SIGKILL) after;
    its log goes to this script's stderr."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env, cwd=cwd)
    try:
        wait_listening(port, proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_runs(
    notary: Path, query: Path, lua: Path, workers: int, connections: int, seconds: float
) -> list[Row]:
    """POST /tsa through `certmail notary serve --workers N` of the notary ``notary``."""
    port = free_port()
    cmd = [sys.executable, "-m", "certmail.cli.main", "notary", "serve", "--dir", str(notary)]
    cmd += ["--http", f"127.0.0.1:{port}", "--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if k != "CERTMAIL_REFERENCE_ONLY"}
    with running(cmd, port, env=env, cwd=ROOT) as proc:
        time.sleep(1.0 if workers > 1 else 0.2)  # let every worker start
        url = f"http://127.0.0.1:{port}/tsa"
        check_server(url, notary.parent, query, notary / "tsa" / "root-ca.pem")
        label = f"certmail notary serve --workers {workers}"
        return load_runs(label, url, proc.pid, lua, connections, seconds)


def find_uts_server(given: str | None) -> str | None:
    for candidate in (
        given,
        os.environ.get("CERTMAIL_BENCH_UTS_SERVER"),
        shutil.which("uts-server"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def uts_runs(
    binary: str, work: Path, pki: Path, query: Path, lua: Path, connections: int, seconds: float
) -> list[Row]:
    """The same load against uts-server with the notary's TSA key, chain and policy."""
    port = free_port()
    conf = work / "uts-server.cnf"
    conf.write_text(
        f"""oid_section = oids
[ oids ]
tsa_policy1 = {POLICY}
[ main ]
listening_ports = 127.0.0.1:{port}
enable_keep_alive = yes
num_threads = 32
throttle = *=0
request_timeout_ms = 30000
tcp_nodelay = 1
log_level = err
log_to_syslog = no
[ tsa ]
dir = {pki}
serial = {work / "uts-serial"}
crypto_device = builtin
signer_cert = $dir/tsa-cert.pem
certs = $dir/tsa-chain.pem
signer_key = $dir/tsa-key.pem
signer_digest = sha256
default_policy = tsa_policy1
digests = sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = 3
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""
    )
    (work / "uts-serial").write_text("01\n")
    with running([binary, "-c", str(conf)], port) as proc:
        url = f"http://127.0.0.1:{port}/"
        check_server(url, work, query, pki / "root-ca.pem")
        return load_runs("uts-server (C, 32 threads)", url, proc.pid, lua, connections, seconds)


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)


def make_query(work: Path) -> Path:
    message = work / "message.eml"
    message.write_bytes(b"Subject: benchmark\r\n\r\nhello\r\n")
    query = work / "query.tsq"
    cmd = ["openssl", "ts", "-query", "-data", str(message), "-sha256", "-cert"]
    subprocess.run([*cmd, "-out", str(query)], check=True, capture_output=True)
    return query


def make_lua(work: Path, query: Path) -> Path:
    lua = work / "post.lua"
    lua.write_text(
        'wrk.method = "POST"\n'
        f'local f = io.open("{query}", "rb")\n'
        'wrk.body = f:read("*a")\n'
        "f:close()\n"
        'wrk.headers["Content-Type"] = "application/timestamp-query"\n'
    )
    return lua


def in_process_rows(pki: Path, query: Path) -> list[Row]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from keys.tsa import load_tsa
    from notary.rfc3161 import TimeStampAuthority

    creds = load_tsa(pki)
    ecdsa = ec.ECDSA(hashes.SHA256())
    payload = hashlib.sha256(b"x").digest() * 6
    tsa = TimeStampAuthority(creds)
    q = query.read_bytes()
    return [
        (
            "ECDSA P-256 sign (cryptography, 1 core)",
            rate(lambda: creds.key.sign(payload, ecdsa), 3),
            0,
            None,
        ),
        (
            "TimeStampAuthority.respond() in-process (1 core)",
            rate(lambda: tsa.respond(q), 3),
            0,
            None,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per HTTP run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--uts-server", help="the uts-server binary (the C peer)")
    args = parser.parse_args()
    ensure_wrk()
    uts = find_uts_server(args.uts_server)

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-tsa-") as tmp:
        work = Path(tmp)
        notary = work / "notary"
        init = [sys.executable, "-m", "certmail.cli.main", "notary", "init", "--dir", str(notary)]
        subprocess.run([*init, "--origin", ORIGIN], check=True, capture_output=True, cwd=ROOT)
        pki = notary / "tsa"
        query = make_query(work)
        lua = make_lua(work, query)
        rows += in_process_rows(pki, query)
        loop = openssl_reply_loop(work, pki, query, 3)
        rows.append(("openssl ts -reply, a process per token, in a loop", loop, 0, None))
        load_before = os.getloadavg()[0]
        for workers in (1, 2):
            rows += serve_runs(notary, query, lua, workers, args.connections, args.duration)
        if uts is not None:
            rows += uts_runs(uts, work, pki, query, lua, args.connections, args.duration)
        load_after = os.getloadavg()[0]

    print(
        f"TSA benchmark: {os.cpu_count()} CPUs, {args.connections} concurrent connections "
        f"(wrk -t1), {args.duration:g} s per HTTP run, SHA-256 query with nonce and certReq, "
        "the same TSA key, chain and query for every server"
    )
    print(
        f"1-minute load average before/after the HTTP runs: {load_before:.2f}/{load_after:.2f} "
        "(other work on the machine lowers every throughput figure)"
    )
    if uts is None:
        print(
            "peer: uts-server not found (--uts-server PATH); the only peer is the weaker "
            "openssl ts -reply loop"
        )
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'tokens/s':>10}  {'failed':>6}  {'server CPU/token':>16}")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 6}  {'-' * 16}")
    for what, per_s, failed, cpu in rows:
        cpu_text = "" if cpu is None else f"{cpu:,.0f} µs"
        print(f"{what:<{width}}  {per_s:>10,.0f}  {failed:>6}  {cpu_text:>16}")
    print(
        "targets: certmail notary serve --workers 2 ≥ 10,000 tokens/s keep-alive, "
        "≥ 7,000/s with a new connection per token"
    )


if __name__ == "__main__":
    main()

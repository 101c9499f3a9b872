"""Benchmark the RFC 3161 TSA: HTTP throughput of POST /tsa and its reference points.

Run: .venv/bin/python benchmarks/bench_tsa.py [--duration 10] [--connections 16]

Prints one table:
- ECDSA P-256 sign rate (cryptography, in-process, one core): the ceiling per core;
- TimeStampAuthority.respond() in-process (one core): the token work without HTTP;
- `openssl ts -reply` in a loop (a new process per token, as a shell script would);
- a trivial raw ASGI app under the same server and load: uvicorn's own ceiling;
- POST /tsa over HTTP, served by uvicorn (uvloop, httptools) with the TSAMiddleware
  around a trivial FastAPI app, 1 and 2 workers, loaded by wrk (C, one thread, so
  the load client eats little of the CPU being measured) with 16 connections,
  with keep-alive and with `Connection: close` (a new TCP connection per token).

wrk comes from Debian (`apt-get install -y wrk`); the script installs it when it is
missing and it runs as root. Every HTTP run first checks that the server grants a
token that `openssl ts -verify` accepts, and counts non-200 answers as failures.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENV_DIR = "CERTMAIL_BENCH_TSA_DIR"


def make_app() -> Any:
    """uvicorn factory: the TSAMiddleware around a trivial FastAPI app."""
    from fastapi import FastAPI

    from keys.tsa import load_tsa
    from notary.rfc3161 import TimeStampAuthority
    from notary.tsa_asgi import TSAMiddleware

    directory = Path(os.environ[ENV_DIR])
    inner = FastAPI()

    @inner.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    tsa = TimeStampAuthority(load_tsa(directory), state_dir=directory)
    return TSAMiddleware(inner, tsa)


async def trivial_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app that reads the body and answers 2 bytes: uvicorn's own ceiling."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def make_trivial_app() -> Any:
    return trivial_app


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


def openssl_reply_loop(work: Path, query: Path, seconds: float) -> float:
    conf = work / "openssl-tsa.cnf"
    conf.write_text(
        f"""[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
dir = {work / "pki"}
serial = {work / "openssl-serial"}
crypto_device = builtin
signer_cert = $dir/tsa-cert.pem
certs = $dir/tsa-chain.pem
signer_key = $dir/tsa-key.pem
signer_digest = sha256
default_policy = 1.3.6.1.4.1.32473.3161.1
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
    verify = ["openssl", "ts", "-verify", "-queryfile", str(query), "-in", str(out)]
    subprocess.run(
        [*verify, "-CAfile", str(work / "pki" / "root-ca.pem")], check=True, capture_output=True
    )
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


#: How long uvicorn may take to listen (its imports alone take seconds on a loaded machine).
START_TIMEOUT = 60.0


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"uvicorn exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("uvicorn did not start listening")


def check_server(port: int, work: Path, query: Path) -> None:
    import httpx

    r = httpx.post(
        f"http://127.0.0.1:{port}/tsa",
        content=query.read_bytes(),
        headers={"content-type": "application/timestamp-query"},
    )
    r.raise_for_status()
    reply = work / "http.tsr"
    reply.write_bytes(r.content)
    subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-queryfile",
            str(query),
            "-in",
            str(reply),
            "-CAfile",
            str(work / "pki" / "root-ca.pem"),
        ],
        check=True,
        capture_output=True,
    )


def wrk(port: int, lua: Path, connections: int, seconds: float, close: bool) -> tuple[float, int]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(lua)]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}/tsa"], check=True, capture_output=True, text=True
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"cannot read wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    failures = int(bad.group(1)) if bad else 0
    if errors:
        failures += sum(int(x) for x in re.findall(r"\d+", errors.group(1)))
    return float(m.group(1)), failures


def http_runs(
    work: Path,
    query: Path,
    workers: int,
    connections: int,
    seconds: float,
    factory: str = "make_app",
) -> list[tuple[str, float, int]]:
    lua = work / "post.lua"
    lua.write_text(
        'wrk.method = "POST"\n'
        f'local f = io.open("{query}", "rb")\n'
        'wrk.body = f:read("*a")\n'
        "f:close()\n"
        'wrk.headers["Content-Type"] = "application/timestamp-query"\n'
    )
    port = free_port()
    env = dict(os.environ, **{ENV_DIR: str(work / "pki")})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            f"bench_tsa:{factory}",
            "--app-dir",
            str(Path(__file__).parent),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "4096",
        ],
        env=env,
    )
    try:
        wait_listening(port, proc)
        time.sleep(1.0 if workers > 1 else 0.2)  # let every worker start
        if factory == "make_app":
            check_server(port, work, query)
        wrk(port, lua, connections, 2, close=False)  # warm-up
        rows = []
        for close in (False, True):
            rps, failures = wrk(port, lua, connections, seconds, close)
            label = "new connection per token" if close else "keep-alive"
            what = "POST /tsa" if factory == "make_app" else "trivial ASGI app (uvicorn ceiling)"
            rows.append((f"{what}, --workers {workers}, {label}", rps, failures))
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per HTTP run")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    ensure_wrk()

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from keys.tsa import generate_tsa_pki
    from notary.rfc3161 import TimeStampAuthority

    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="bench-tsa-") as tmp:
        work = Path(tmp)
        creds = generate_tsa_pki(work / "pki", "Benchmark TSA")
        message = work / "message.eml"
        message.write_bytes(b"Subject: benchmark\r\n\r\nhello\r\n")
        query = work / "query.tsq"
        subprocess.run(
            [
                "openssl",
                "ts",
                "-query",
                "-data",
                str(message),
                "-sha256",
                "-cert",
                "-out",
                str(query),
            ],
            check=True,
            capture_output=True,
        )

        ecdsa = ec.ECDSA(hashes.SHA256())
        payload = hashlib.sha256(b"x").digest() * 6
        rows.append(
            (
                "ECDSA P-256 sign (cryptography, 1 core)",
                rate(lambda: creds.key.sign(payload, ecdsa), 3),
                0,
            )
        )
        tsa = TimeStampAuthority(creds)
        q = query.read_bytes()
        rows.append(
            ("TimeStampAuthority.respond() in-process (1 core)", rate(lambda: tsa.respond(q), 3), 0)
        )
        rows.append(
            (
                "openssl ts -reply, a process per token, in a loop",
                openssl_reply_loop(work, query, 3),
                0,
            )
        )
        load_before = os.getloadavg()[0]
        for workers in (1, 2):
            rows.extend(http_runs(work, query, workers, args.connections, args.duration))
        for workers in (1, 2):
            rows.extend(
                http_runs(
                    work,
                    query,
                    workers,
                    args.connections,
                    args.duration / 2,
                    factory="make_trivial_app",
                )
            )
        load_after = os.getloadavg()[0]

    print(
        f"TSA benchmark: {os.cpu_count()} CPUs, {args.connections} concurrent connections "
        f"(wrk -t1), {args.duration:g} s per HTTP run, SHA-256 query with nonce and certReq"
    )
    print(
        f"1-minute load average before/after the HTTP runs: {load_before:.2f}/{load_after:.2f} "
        "(other work on the machine lowers every figure)"
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'tokens/s':>10}  {'failed':>6}")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 6}")
    for what, per_s, failed in rows:
        print(f"{what:<{width}}  {per_s:>10,.0f}  {failed:>6}")


if __name__ == "__main__":
    main()

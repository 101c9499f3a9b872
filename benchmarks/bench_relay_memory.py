"""Benchmark the relay's memory with large concurrent submissions (issue 10 item 5).

Run: .venv/bin/python benchmarks/bench_relay_memory.py [--sessions 8] [--mib 45]
     [--before COMMIT]

A real `certmail notary serve --smtp ... --smarthost ...` process (SQLite) takes
--sessions submissions of --mib MiB each at once (one STARTTLS + AUTH session
per message) and delivers them to a loopback aiosmtpd server that keeps only
their hashes. Printed: the notary's resident set before (VmRSS) and its peak
(VmHWM from /proc) once every message has been delivered, and the wall time.

The peer is the relay before streaming: the same run repeated with the
notary's code from ``--before`` (default: the commit before submissions were
streamed to the spool), unpacked with ``git archive`` into a temporary
directory and put first on PYTHONPATH. ``--before ''`` skips it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.notary.relay_memory import (  # noqa: E402
    ALICE,
    MIB,
    CountingSink,
    big_message,
    peak_mib,
    rss_mib,
    run_concurrent,
    wait_delivered,
)

#: The last commit whose relay gathered DATA in memory (aiosmtpd's reader).
BEFORE = "6b0a4af"
CERTMAIL = [sys.executable, "-m", "certmail.cli.main"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(tree: Path, sessions: int, size: int, work: Path) -> tuple[float, float, float]:
    """(base RSS, peak RSS in MiB, seconds) of one run with the notary's code from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    ndir = work / "notary"
    subprocess.run(
        [*CERTMAIL, "notary", "init", "--dir", str(ndir), "--origin", "bench.test/log"],
        check=True,
        capture_output=True,
        env=env,
        cwd=tree,
    )
    token = subprocess.run(
        [*CERTMAIL, "notary", "accounts", "add", ALICE, "--dir", str(ndir)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
    ).stdout.split()[-1]
    sink = CountingSink()
    sink.start()
    http, smtp = free_port(), free_port()
    log = open(work / "serve.log", "wb")
    serve = subprocess.Popen(
        [
            *CERTMAIL,
            "notary",
            "serve",
            "--dir",
            str(ndir),
            "--http",
            f"127.0.0.1:{http}",
            "--smtp",
            f"127.0.0.1:{smtp}",
            "--smarthost",
            f"127.0.0.1:{sink.port}",
        ],
        stdout=log,
        stderr=log,
        env=env,
        cwd=tree,
    )
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{http}/v1/relay").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or serve.poll() is not None:
                raise SystemExit(f"notary did not start: {(work / 'serve.log').read_text()}")
            time.sleep(0.1)
        base = rss_mib(serve.pid)
        messages = [big_message(f"m{i}", size) for i in range(sessions)]
        t0 = time.monotonic()
        replies = run_concurrent(smtp, token, messages)
        if any(code != 250 for code, _ in replies):
            raise SystemExit(f"refused: {replies}")
        wait_delivered(sink, {hashlib.sha256(m).hexdigest() for m in messages})
        seconds = time.monotonic() - t0
        return base, peak_mib(serve.pid), seconds
    finally:
        serve.terminate()
        serve.wait(30)
        sink.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--mib", type=int, default=45)
    ap.add_argument("--before", default=BEFORE, help="commit of the peer ('' for none)")
    args = ap.parse_args()
    size = args.mib * MIB
    rows: list[tuple[str, tuple[float, float, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-relay-mem-") as tmp:
        work = Path(tmp)
        if args.before:
            old = work / "before"
            old.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.before], check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            (work / "run-before").mkdir()
            rows.append(
                (f"before ({args.before})", run(old, args.sessions, size, work / "run-before"))
            )
        (work / "run-now").mkdir()
        rows.append(("now (streamed)", run(ROOT, args.sessions, size, work / "run-now")))
    print(f"{args.sessions} concurrent submissions of {args.mib} MiB, SQLite, delivered")
    print(f"{'relay':<22} {'base RSS':>10} {'peak RSS':>10} {'peak-base':>10} {'wall':>8}")
    for name, (base, peak, secs) in rows:
        print(f"{name:<22} {base:>7.0f} MiB {peak:>7.0f} MiB {peak - base:>7.0f} MiB {secs:>7.1f}s")


if __name__ == "__main__":
    main()

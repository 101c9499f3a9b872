"""Witness cosigning rate (issue 14: a witness cosigns >= 1,000 checkpoints/s).

A log in memory grows by one batch per checkpoint; each new checkpoint, with
its consistency proof from the previous one, goes to ``add-checkpoint``:

- in process (``notary.witness.Witness.add_checkpoint``: parse, verify the log's
  Ed25519 signature, verify the proof, commit the new state durably in SQLite
  with ``synchronous=FULL``, cosign), from 1 thread and from 16 and 64 threads
  for as many logs (requests that arrive together share one commit);
- over HTTP through the real ``certmail witness serve``, one keep-alive client
  (httpx), and 16 clients for 16 logs at once;

beside, in the same run, the floors those costs are made of: one Ed25519
signature verification plus one signature (pyca/cryptography) per checkpoint,
and one SQLite ``synchronous=FULL`` commit per checkpoint.

Then the log's side: entries/s notarized through ``certmail notary serve``
(4 clients, batches of 250 with RFC 3161 tokens) without witnesses and with 3
witnesses configured and cosigning (at most once a second), best of three runs each
(target: within 10 %).
"""

from __future__ import annotations

import base64
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from notary.checkpoint import Checkpoint, sign_checkpoint  # noqa: E402
from notary.merkle import MemoryHashStore, prove_consistency  # noqa: E402
from notary.note import Signer  # noqa: E402
from notary.witness import Witness, add_log, init_witness  # noqa: E402

CERTMAIL = [sys.executable, "-m", "certmail.cli.main"]
TARGET = 1000.0


def requests(origin: str, count: int, per: int = 10) -> tuple[Signer, list[bytes]]:
    """``count`` add-checkpoint bodies of a log growing by ``per`` entries each time."""
    signer = Signer.generate(origin)
    store = MemoryHashStore()
    bodies = []
    old = 0
    for _ in range(count):
        store.extend(os.urandom(16) for _ in range(per))
        note = sign_checkpoint(Checkpoint(origin, store.size, store.root()), signer)
        proof = prove_consistency(old, store.size, store) if old else []
        lines = [f"old {old}"] + [base64.b64encode(h).decode() for h in proof]
        bodies.append(("\n".join(lines) + "\n\n").encode() + note)
        old = store.size
    return signer, bodies


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def in_process(work: Path, count: int, threads: int) -> float:
    d = work / f"inproc{threads}"
    init_witness(d, "bench.test/w")
    logs = [requests(f"bench.test/log{i}", count // threads) for i in range(threads)]
    for signer, _ in logs:
        add_log(d, signer.verifier().vkey())
    w = Witness(d)

    def run(bodies: list[bytes]) -> None:
        for b in bodies:
            r = w.add_checkpoint(b)
            assert r.status == 200, r.body

    try:
        workers = [threading.Thread(target=run, args=(b,)) for _, b in logs]
        t = time.perf_counter()
        for th in workers:
            th.start()
        for th in workers:
            th.join()
        return rate(sum(len(b) for _, b in logs), time.perf_counter() - t)
    finally:
        w.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def over_http(work: Path, count: int, clients: int) -> float:
    d = work / f"http{clients}"
    init_witness(d, "bench.test/w")
    logs = [requests(f"bench.test/log{i}", count // clients) for i in range(clients)]
    for signer, _ in logs:
        add_log(d, signer.verifier().vkey())
    port = free_port()
    cmd = [*CERTMAIL, "witness", "serve", "--dir", str(d), "--http", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/add-checkpoint"
    try:
        for _ in range(300):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

        def run(bodies: list[bytes]) -> None:
            with httpx.Client(timeout=30) as c:
                for b in bodies:
                    r = c.post(url, content=b)
                    assert r.status_code == 200, r.text

        threads = [threading.Thread(target=run, args=(b,)) for _, b in logs]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return rate(sum(len(b) for _, b in logs), time.perf_counter() - t)
    finally:
        proc.terminate()
        proc.wait(30)


def floors(work: Path, count: int) -> tuple[float, float]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    msg = b"x" * 120
    sig = key.sign(msg)
    t = time.perf_counter()
    for _ in range(count):
        pub.verify(sig, msg)
        key.sign(msg)
    crypto = rate(count, time.perf_counter() - t)
    db = sqlite3.connect(work / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    t = time.perf_counter()
    for i in range(count):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO t VALUES ('a', ?)", (i,))
        db.execute("COMMIT")
    commits = rate(count, time.perf_counter() - t)
    db.close()
    return crypto, commits


def _serve(cmd: list[str], health: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            httpx.get(health, timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{cmd[3]} did not start")


def _notarize_rate(url: str, token: str, tag: str, batches: int, size: int) -> float:
    auth = {"Authorization": f"Bearer {token}"}
    done = [0]

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            for b in range(k, batches, 4):
                items = [
                    {"sha256": os.urandom(32).hex(), "message_id": f"<{tag}.{b}.{i}@bench>"}
                    for i in range(size)
                ]
                r = c.post("/v1/notarize/batch", json={"items": items}, headers=auth)
                r.raise_for_status()
                done[0] += size

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return rate(done[0], time.perf_counter() - t)


def sequencing(work: Path, batches: int = 40, size: int = 250) -> tuple[float, float]:
    """Entries/s notarized (4 clients, batches with RFC 3161 tokens) without and with
    3 witnesses configured (each served by certmail witness serve); best of 3 each."""
    d = work / "notary"
    subprocess.run(
        [*CERTMAIL, "notary", "init", "--dir", str(d), "--origin", "bench.test/seq"],
        check=True,
        capture_output=True,
    )
    add = [*CERTMAIL, "notary", "accounts", "add", "b@example.test", "--dir", str(d)]
    token = subprocess.run(add, check=True, capture_output=True, text=True).stdout.split()[-1]
    vkey = (d / "notary.vkey").read_text().strip()
    witnesses = []
    for i in range(3):
        wd = work / f"seqw{i}"
        wv = init_witness(wd, f"bench.test/sw{i}")
        add_log(wd, vkey)
        port = free_port()
        cmd = [*CERTMAIL, "witness", "serve", "--dir", str(wd), "--http", f"127.0.0.1:{port}"]
        witnesses.append((_serve(cmd, f"http://127.0.0.1:{port}/"), port, wv))
    best = {False: 0.0, True: 0.0}
    try:
        for round_ in range(3):
            for with_witnesses in (False, True):
                cfg = d / "witnesses.toml"
                cfg.unlink(missing_ok=True)
                if with_witnesses:
                    from notary.cosigning import add_witness

                    for _, port, wv in witnesses:
                        add_witness(d, f"http://127.0.0.1:{port}", wv.vkey(), None)
                port = free_port()
                cmd = [*CERTMAIL, "notary", "serve", "--dir", str(d), "--http", f"127.0.0.1:{port}"]
                url = f"http://127.0.0.1:{port}"
                proc = _serve(cmd, url + "/healthz")
                try:
                    tag = f"{round_}{with_witnesses}"
                    r = _notarize_rate(url, token, tag, batches, size)
                    best[with_witnesses] = max(best[with_witnesses], r)
                finally:
                    proc.terminate()
                    proc.wait(30)
    finally:
        for proc, _, _ in witnesses:
            proc.terminate()
            proc.wait(30)
    return best[False], best[True]


def main() -> int:
    count = int(os.environ.get("BENCH_WITNESS_COUNT", "3200"))
    with tempfile.TemporaryDirectory(prefix="bench-witness-") as tmp:
        work = Path(tmp)
        rows = [
            ("witness in process, 1 thread", in_process(work, count, 1)),
            ("witness in process, 16 threads, 16 logs (group commit)", in_process(work, count, 16)),
            ("witness in process, 64 threads, 64 logs (group commit)", in_process(work, count, 64)),
            ("certmail witness serve, 1 keep-alive client", over_http(work, count, 1)),
            ("certmail witness serve, 16 clients, 16 logs", over_http(work, count, 16)),
        ]
        without, with3 = sequencing(work)
        crypto, commits = floors(work, count)
        rows.append(("floor: Ed25519 verify + sign (cryptography)", crypto))
        rows.append(("floor: SQLite synchronous=FULL commit", commits))
    print(f"{'what':58} {'checkpoints/s':>14}")
    for what, r in rows:
        print(f"{what:58} {r:14.0f}")
    print(f"\n{'sequencing, 4 clients, batches of 250 with tokens':58} {'entries/s':>14}")
    print(f"{'notary serve, no witnesses':58} {without:14.0f}")
    print(f"{'notary serve, 3 witnesses configured (cosigning live)':58} {with3:14.0f}")
    change = (with3 - without) / without * 100 if without else 0.0
    print(f"with 3 witnesses: {change:+.1f} % (target: within 10 %)")
    best = max(r for w, r in rows[:5])
    verdict = "meets" if best >= TARGET else "misses"
    print(f"\nwitness cosigning: {best:.0f} checkpoints/s ({verdict} the {TARGET:.0f}/s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

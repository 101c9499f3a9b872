"""One batch of the log on SQLite and on PostgreSQL, side by side (issue 16).

The sequencer alone (no HTTP), a token on every entry, batches of ``--batch``
entries (48: about what 64 clients of POST /v1/notarize make), the two backends
alternated for ``--rounds`` rounds: this process's CPU and the wall time per batch.
The wall time beyond the CPU is waiting: SQLite's fsync; PostgreSQL's round trips and
its WAL flush. ``--clients N`` runs the group commit instead: N submitters in this
process's event loop (no HTTP), each submitting one entry and waiting for its receipt, for
``--seconds`` a round: entries per second, entries per batch, CPU per entry. Run it with
``PYTHONPATH=TREE`` to measure the code in TREE.

    python benchmarks/bench_batch_peers.py [--batch 48] [--batches 300] [--rounds 3]
    python benchmarks/bench_batch_peers.py --clients 64 [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from keys.tsa import generate_tsa_pki
from notary.rfc3161 import TimeStampAuthority
from notary.sequencer import Sequencer
from notary.storage.sqlite import SQLiteStorage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from log_setup import cpu, pg_dsn, pg_storage, sequencer, subs


def group_commit(
    seq: Sequencer, clients: int, seconds: float, tag: str
) -> tuple[float, float, float]:
    """``clients`` submitters for ``seconds``: (entries/s, entries per batch, CPU ms per
    entry)."""

    async def client(c: int, until: float) -> int:
        loop, n = asyncio.get_running_loop(), 0
        while loop.time() < until:
            await seq.submit(subs(1, f"{tag}-{c}-{n}-", timestamp=True))
            n += 1
        return n

    async def run() -> tuple[int, int]:
        await seq.start()
        try:
            until = asyncio.get_running_loop().time() + seconds
            b0 = seq.metrics.batches
            done = await asyncio.gather(*(client(c, until) for c in range(clients)))
            return sum(done), seq.metrics.batches - b0
        finally:
            await seq.stop()

    c0, t0 = cpu(), time.perf_counter()
    n, batches = asyncio.run(run())
    wall, used = time.perf_counter() - t0, cpu() - c0
    return n / wall, n / max(batches, 1), used / max(n, 1) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    dsn = pg_dsn()
    if dsn is None:
        raise SystemExit("bench_batch_peers: error: no PostgreSQL (set CERTMAIL_TEST_POSTGRES_DSN)")
    with tempfile.TemporaryDirectory() as tmp, pg_storage(dsn) as pg:
        tsa = TimeStampAuthority(generate_tsa_pki(Path(tmp) / "pki", "Batch TSA"))
        sq = SQLiteStorage(Path(tmp) / "batch.db")
        try:
            seqs = {name: sequencer(st, tsa) for name, st in (("SQLite", sq), ("PostgreSQL", pg))}
            if args.clients:
                print(
                    "| round | backend | entries/s | entries/batch | CPU ms/entry"
                    f" | ({args.clients} clients) |"
                )
                print("|---:|---|---:|---:|---:|---|")
                for r in range(args.rounds):
                    for name, s in seqs.items():
                        rate, per, ms = group_commit(s, args.clients, args.seconds, f"{name}{r}")
                        print(f"| {r + 1} | {name} | {rate:,.0f} | {per:.1f} | {ms:.3f} | |")
                return
            print(f"| round | backend | CPU ms/batch | wall ms/batch | (batches of {args.batch}) |")
            print("|---:|---|---:|---:|---|")
            for r in range(args.rounds):
                for name, s in seqs.items():
                    work = [
                        subs(args.batch, f"{name}{r}-{b}-", timestamp=True)
                        for b in range(args.batches)
                    ]
                    c0, t0 = cpu(), time.perf_counter()
                    for w in work:
                        s.commit_batch(w)
                    used, wall = cpu() - c0, time.perf_counter() - t0
                    n = args.batches
                    print(f"| {r + 1} | {name} | {used / n * 1e3:.2f} | {wall / n * 1e3:.2f} | |")
        finally:
            sq.close()


if __name__ == "__main__":
    main()

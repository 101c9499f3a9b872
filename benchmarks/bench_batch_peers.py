"""One batch of the log on SQLite and on PostgreSQL, side by side (issue 16).

The sequencer alone (no HTTP), a token on every entry, batches of ``--batch``
entries (48: about what 64 clients of POST /v1/notarize make), the two backends
alternated for ``--rounds`` rounds: this process's CPU and the wall time per batch.
The wall time beyond the CPU is waiting: SQLite's fsync; PostgreSQL's round trips and
its WAL flush. Run it with ``PYTHONPATH=TREE`` to measure the code in TREE.

    python benchmarks/bench_batch_peers.py [--batch 48] [--batches 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from keys.tsa import generate_tsa_pki
from notary.rfc3161 import TimeStampAuthority
from notary.storage.sqlite import SQLiteStorage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from log_setup import cpu, pg_dsn, pg_storage, sequencer, subs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    dsn = pg_dsn()
    if dsn is None:
        raise SystemExit("bench_batch_peers: error: no PostgreSQL (set CERTMAIL_TEST_POSTGRES_DSN)")
    with tempfile.TemporaryDirectory() as tmp, pg_storage(dsn) as pg:
        tsa = TimeStampAuthority(generate_tsa_pki(Path(tmp) / "pki", "Batch TSA"))
        sq = SQLiteStorage(Path(tmp) / "batch.db")
        try:
            seqs = {name: sequencer(st, tsa) for name, st in (("SQLite", sq), ("PostgreSQL", pg))}
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

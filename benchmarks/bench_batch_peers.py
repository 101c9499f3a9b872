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
import hashlib
import os
import resource
import tempfile
import time
import uuid
from pathlib import Path

from keys.tsa import generate_tsa_pki
from notary.note import Signer
from notary.rfc3161 import TimeStampAuthority
from notary.sequencer import Sequencer, Submission
from notary.storage.postgres import PostgresStorage
from notary.storage.sqlite import SQLiteStorage


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _work(n: int, tag: str) -> list[Submission]:
    return [
        Submission(
            "SubmissionAcceptance",
            hashlib.sha256(f"{tag}{i}".encode()).hexdigest(),
            f"<{i}.{tag}@bench>",
            1,
            {"submitter": "bench@example.test", "channel": "api"},
            True,
        )
        for i in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    dsn = os.environ.get("CERTMAIL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    with tempfile.TemporaryDirectory() as tmp:
        tsa = TimeStampAuthority(generate_tsa_pki(Path(tmp) / "pki", "Batch TSA"))
        sq = SQLiteStorage(Path(tmp) / "batch.db")
        pg = PostgresStorage(dsn, schema="bench_" + uuid.uuid4().hex[:12])
        try:
            seqs = {
                name: Sequencer(st, Signer.generate("bench.test/log"), tsa=tsa)
                for name, st in (("SQLite", sq), ("PostgreSQL", pg))
            }
            for s in seqs.values():
                s.commit_batch(_work(10, "warm"))
            print(f"| round | backend | CPU ms/batch | wall ms/batch | (batches of {args.batch}) |")
            print("|---:|---|---:|---:|---|")
            for r in range(args.rounds):
                for name, s in seqs.items():
                    work = [_work(args.batch, f"{name}{r}-{b}-") for b in range(args.batches)]
                    c0, t0 = _cpu(), time.perf_counter()
                    for w in work:
                        s.commit_batch(w)
                    cpu, wall = _cpu() - c0, time.perf_counter() - t0
                    n = args.batches
                    print(f"| {r + 1} | {name} | {cpu / n * 1e3:.2f} | {wall / n * 1e3:.2f} | |")
        finally:
            pg.drop_schema()
            pg.close()
            sq.close()


if __name__ == "__main__":
    main()

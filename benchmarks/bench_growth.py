"""Benchmark the log as it grows (issue: speed where people feel it, item 4).

At each size the log reaches, prints: the sequencer's durable rate (batches
of 1,000, each committed with its signed checkpoint), inclusion-proof latency
(p50/p99 of proofs for random entries against the latest tree, read from
storage), bytes per entry on disk, and bytes written per entry while
sequencing (SQLite: this process's write_bytes from /proc/self/io, which
counts the WAL and its checkpoints; PostgreSQL: the server's WAL bytes from
pg_stat_wal). Beside them, the peers: the rate at the first size (a flat log
keeps ≥ 0.9× of it) and the C2SP tiles layout's ~291 bytes per entry.

    python benchmarks/bench_growth.py             # 10^4 and 10^5 (make bench)
    python benchmarks/bench_growth.py --large     # 10^6 and 10^7
    python benchmarks/bench_growth.py --tst       # every entry with an RFC 3161 token
    python benchmarks/bench_growth.py --postgres  # on PostgreSQL (CERTMAIL_TEST_POSTGRES_DSN)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from notary.merkle import prove_inclusion
from notary.note import Signer
from notary.sequencer import Sequencer, Submission
from notary.storage import Storage

TILES_BYTES_PER_ENTRY = 291  # C2SP tlog-tiles, from the measurement
FILL_BATCH = 10_000
MEASURE_BATCH, MEASURE_BATCHES = 1_000, 20
PROOFS = 300


def subs(start: int, n: int, tst: bool) -> list[Submission]:
    return [
        Submission(
            "SubmissionAcceptance",
            hashlib.sha256(f"growth-{i}".encode()).hexdigest(),
            f"<{i}@growth.bench>",
            1,
            {"submitter": "bench@example.test", "channel": "api"},
            tst,
        )
        for i in range(start, start + n)
    ]


class SQLiteSide:
    name = "SQLite"

    def __init__(self, tmp: Path) -> None:
        from notary.storage.sqlite import SQLiteStorage

        self.path = tmp / "growth.db"
        self.storage: Storage = SQLiteStorage(self.path)

    def bytes_on_disk(self) -> int:
        return sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-accounts"))
            if p.exists()
        )

    def bytes_written(self) -> int:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
        return 0

    def breakdown(self) -> list[str]:
        """Bytes per entry of each table and index (dbstat), and each token issued vs stored."""
        conn = sqlite3.connect(self.path)
        try:
            n = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0] or 1
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            rows = conn.execute(
                "SELECT name, COUNT(*), SUM(payload), SUM(unused) FROM dbstat"
                " GROUP BY name HAVING COUNT(*) > 1 ORDER BY COUNT(*) DESC"
            ).fetchall()
            stored = conn.execute(
                "SELECT AVG(LENGTH(entry)), AVG(LENGTH(tst)) FROM entries"
            ).fetchone()
        finally:
            conn.close()
        out = [
            f"| {name} | {pages * page / n:,.1f} | {payload / n:,.1f} | {unused / n:,.1f} |"
            for name, pages, payload, unused in rows
        ]
        out.append(f"| (statement bytes, avg) | | {stored[0] or 0:,.1f} | |")
        if stored[1] is not None:
            out.append(f"| (token as stored, avg) | | {stored[1]:,.1f} | |")
        return out

    def close(self) -> None:
        self.storage.close()


class PostgresSide:
    name = "PostgreSQL"

    def __init__(self, dsn: str) -> None:
        import psycopg

        from notary.storage.postgres import PostgresStorage

        self.schema = "growth_" + uuid.uuid4().hex[:10]
        self.pg = PostgresStorage(dsn, schema=self.schema)
        self.storage = self.pg
        self.conn: Any = psycopg.connect(dsn, autocommit=True)

    def bytes_on_disk(self) -> int:
        row = self.conn.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
            (self.schema,),
        ).fetchone()
        return int(row[0])

    def bytes_written(self) -> int:
        row = self.conn.execute("SELECT wal_bytes FROM pg_stat_wal").fetchone()
        return int(row[0])

    def close(self) -> None:
        self.pg.drop_schema()
        self.pg.close()
        self.conn.close()


def fill(seq: Sequencer, have: int, want: int, tst: bool) -> None:
    while have < want:
        n = min(FILL_BATCH, want - have)
        seq.commit_batch(subs(have, n, tst))
        have += n


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(
    side: Any, seq: Sequencer, size: int, tst: bool, profile: str | None = None
) -> dict[str, float]:
    work = [subs(size + b * MEASURE_BATCH, MEASURE_BATCH, tst) for b in range(MEASURE_BATCHES)]
    written = side.bytes_written()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    cpu0, t0 = _cpu(), time.perf_counter()
    for w in work:
        seq.commit_batch(w)
    dt, cpu = time.perf_counter() - t0, _cpu() - cpu0
    if prof is not None:
        prof.disable()
        prof.dump_stats(f"{profile}.{size}")
    n = MEASURE_BATCH * MEASURE_BATCHES
    written = side.bytes_written() - written
    new_size = size + n
    rng = random.Random(size)
    lat = []
    for _ in range(PROOFS):
        i = rng.randrange(new_size)
        t = time.perf_counter()
        prove_inclusion(new_size, i, side.storage)
        lat.append(time.perf_counter() - t)
    lat.sort()
    return {
        "rate": n / dt,
        "cpu_us": cpu / n * 1e6,
        "p50": statistics.median(lat) * 1e3,
        "p99": lat[int(len(lat) * 0.99) - 1] * 1e3,
        "per_entry": side.bytes_on_disk() / new_size,
        "written": written / n,
    }


def print_breakdown(side: SQLiteSide, seq: Sequencer, tst: bool) -> None:
    """Where the bytes are at the last size; with tokens, the issued size beside the stored."""
    print("\n| table or index | bytes/entry (pages) | payload | unused |")
    print("|---|---:|---:|---:|")
    for line in side.breakdown():
        print(line)
    if tst and seq.tsa is not None:
        issued = seq.tsa.stamp(hashlib.sha256(b"size").digest(), cert_req=False)
        print(f"| (token as issued, certReq false) | | {len(issued):,} | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--large", action="store_true", help="10^6 and 10^7 entries")
    ap.add_argument("--tst", action="store_true", help="an RFC 3161 token on every entry")
    ap.add_argument("--postgres", action="store_true", help="on PostgreSQL")
    ap.add_argument("--sizes", help="comma-separated sizes (overrides --large)")
    ap.add_argument("--profile", metavar="PREFIX", help="cProfile each measure to PREFIX.SIZE")
    args = ap.parse_args()
    sizes = [10**6, 10**7] if args.large else [10**4, 10**5]
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        tsa = None
        if args.tst:
            from keys.tsa import generate_tsa_pki
            from notary.rfc3161 import TimeStampAuthority

            tsa = TimeStampAuthority(generate_tsa_pki(Path(tmp) / "pki", "Growth TSA"))
        if args.postgres:
            dsn = os.environ.get(
                "CERTMAIL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
            )
            side: Any = PostgresSide(dsn)
        else:
            side = SQLiteSide(Path(tmp))
        try:
            seq = Sequencer(side.storage, Signer.generate("growth.bench/log"), tsa=tsa)
            tokens = "with a token each" if args.tst else "no tokens"
            print(f"certmail log growth, {side.name}, {tokens} (2-core machine)\n")
            print(
                "| entries | sequencing /s | × first size | CPU us/entry | proof p50 ms"
                " | proof p99 ms | bytes/entry | C2SP tiles | bytes written/entry |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            have, first = 0, None
            for size in sizes:
                fill(seq, have, size, args.tst)
                m = measure(side, seq, size, args.tst, args.profile)
                have = size + MEASURE_BATCH * MEASURE_BATCHES
                first = first or m["rate"]
                print(
                    f"| {size:,} | {m['rate']:,.0f} | {m['rate'] / first:.2f} | {m['cpu_us']:.1f}"
                    f" | {m['p50']:.2f}"
                    f" | {m['p99']:.2f} | {m['per_entry']:,.0f} | {TILES_BYTES_PER_ENTRY}"
                    f" | {m['written']:,.0f} |",
                    flush=True,
                )
            if isinstance(side, SQLiteSide):
                print_breakdown(side, seq, args.tst)
        finally:
            side.close()


if __name__ == "__main__":
    main()

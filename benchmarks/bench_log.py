"""Benchmark the notary's log (issue: foundation and transparency log).

Prints one table: the machine's SHA-256 and Ed25519 sign rates (the ceiling),
the sequencer's durable batch rate on SQLite and PostgreSQL (entries in a
signed, committed checkpoint), batch notarization over HTTP, and single
POST /v1/notarize with 64 concurrent clients driven by wrk (C, so the load
generator does not eat the CPU being measured): one process and
``serve --workers 2`` side by side (their runs alternated), on SQLite and on
PostgreSQL, with the group commit each got (entries per batch, from /metrics)
and the notary processes' CPU time per request.

``--backends [--rounds 3] [--before TREE]`` runs only the SQLite/PostgreSQL peers: one
notary on each (with ``--before``, two more on the code in TREE, e.g. a ``git archive``
of the last commit), their wrk runs alternated (``--rounds`` each), every run printed with
p50/p99, the notary's CPU per request and the PostgreSQL backends' own CPU per request
(their processes found by ``application_name`` in pg_stat_activity), then the medians.

``--sequencer [--sizes 64,2048,16384] [--copy-rows N]`` runs only the PostgreSQL
sequencer rows, with this process's CPU per entry (getrusage); ``--copy-rows`` sets
notary.storage.postgres.COPY_ROWS (1: COPY always, 10**9: never). Run it with
``PYTHONPATH=TREE`` to measure the code in TREE.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from notary.storage import Storage
from notary.storage.sqlite import SQLiteStorage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from log_setup import cpu, pg_dsn, pg_storage, sequencer, subs

ROOT = Path(__file__).resolve().parent.parent
CERTMAIL = [sys.executable, "-m", "certmail.cli.main"]
ROWS: list[tuple[str, str, str]] = []


def row(what: str, value: str, note: str = "") -> None:
    ROWS.append((what, value, note))
    print(f"  {what:<58} {value:>16}  {note}", file=sys.stderr, flush=True)


def rate(fn, seconds: float = 1.0) -> float:  # type: ignore[no-untyped-def]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(1000):
            fn()
        n += 1000
    return n / (time.perf_counter() - t0)


def ceilings() -> None:
    data = os.urandom(64)
    row("SHA-256 of 64 bytes (hashlib)", f"{rate(lambda: hashlib.sha256(data).digest()):,.0f}/s")
    key = Ed25519PrivateKey.generate()
    row("Ed25519 sign (cryptography)", f"{rate(lambda: key.sign(data)):,.0f}/s")


def sequencer_rate(storage: Storage, label: str, batch: int, batches: int) -> None:
    seq = sequencer(storage)
    work = [subs(batch, f"{label}{b}-") for b in range(batches)]
    cpu0, t0 = cpu(), time.perf_counter()
    for w in work:
        seq.commit_batch(w)
    dt, used = time.perf_counter() - t0, cpu() - cpu0
    row(
        f"sequencer, {label}, batches of {batch:,}",
        f"{batch * batches / dt:,.0f}/s",
        f"durable: committed with its signed checkpoint;"
        f" {used / (batch * batches) * 1e6:.1f} us CPU per entry",
    )


def sequencer_only(dsn: str) -> None:
    """``--sequencer``: the PostgreSQL sequencer at ``--sizes``, ~50k entries each."""
    from notary.storage import postgres

    argv = sys.argv
    if "--copy-rows" in argv:
        postgres.COPY_ROWS = int(argv[argv.index("--copy-rows") + 1])
    sizes = argv[argv.index("--sizes") + 1] if "--sizes" in argv else "64,2048,16384"
    with pg_storage(dsn) as pg:
        for batch in (int(n) for n in sizes.split(",")):
            sequencer_rate(pg, "PostgreSQL", batch, max(3, 50_000 // batch))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(
    tmp: Path,
    workers: int = 1,
    database: str | None = None,
    tag: str = "",
    tree: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str, str]:
    """A ``notary serve`` (of the code in ``tree``, else this one): (process, URL, token).
    Each runs in its tree (``python -m`` puts the working directory first on its path,
    before PYTHONPATH: from this repository, a ``tree`` would run this code)."""
    d = tmp / f"notary{workers}{'pg' if database else ''}{tag}"
    db = ["--db", database] if database else []
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
    cwd = tree or ROOT
    subprocess.run(
        [*CERTMAIL, "notary", "init", "--dir", str(d), "--origin", "bench.test/log", *db],
        check=True,
        capture_output=True,
        env=env,
        cwd=cwd,
    )
    out = subprocess.run(
        [*CERTMAIL, "notary", "accounts", "add", "bench@example.test", "--dir", str(d)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    token = out.stdout.strip().splitlines()[-1]
    port = free_port()
    proc = subprocess.Popen(
        [
            *CERTMAIL,
            "notary",
            "serve",
            "--dir",
            str(d),
            "--http",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
        ],
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return proc, url, token


def http_batch(url: str, token: str, batch: int, per_client: int, clients: int) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    bodies = [
        [
            json.dumps(
                {
                    "tst": False,
                    "items": [
                        {
                            "sha256": hashlib.sha256(f"h{c}-{b}-{i}".encode()).hexdigest(),
                            "message_id": f"<{c}.{b}.{i}@bench>",
                        }
                        for i in range(batch)
                    ],
                }
            ).encode()
            for b in range(per_client)
        ]
        for c in range(clients)
    ]

    def run(c: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as cl:
            for body in bodies[c]:
                r = cl.post(
                    "/v1/notarize/batch",
                    content=body,
                    headers={**auth, "content-type": "application/json"},
                )
                r.raise_for_status()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    row(
        f"POST /v1/notarize/batch ({clients} clients, {batch:,}/request, no tst)",
        f"{batch * per_client * clients / dt:,.0f}/s",
        "receipts returned over HTTP",
    )


WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
local n = 0
local tid = 0
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("tid", threads) end
init = function(args) n = 0 end
request = function()
  n = n + 1
  local hex = string.format("%%08x%%08x", tid or 0, n) .. string.rep("ab", 24)
  return wrk.format(nil, "/v1/notarize", nil,
    '{"sha256":"' .. hex .. '","message_id":"<' .. n .. '@wrk>"}')
end
"""


def wrk_run(url: str, token: str, seconds: int) -> tuple[float, int, str] | None:
    """wrk, 64 connections, POST /v1/notarize (with tst): (requests/s, requests, latency
    and non-2xx note), or None when wrk is missing or failed (a row says why)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        row("POST /v1/notarize, 64 clients", "skipped", "wrk not installed (apt-get install wrk)")
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA % token)
    res = subprocess.run(
        [wrk, "-t2", "-c64", f"-d{seconds}s", "--latency", "-s", f.name, url],
        capture_output=True,
        text=True,
    )
    os.unlink(f.name)
    if res.returncode != 0:
        row("POST /v1/notarize, 64 clients", "failed", (res.stderr or res.stdout).strip()[:80])
        return None
    out = res.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = f", {non2xx.group(1)} non-2xx" if non2xx else ""
    return rps, done, f"p50 {lat.get('50')}, p99 {lat.get('99')}{errs}"


def batch_totals(url: str) -> tuple[float, float]:
    """(entries, batches) the sequencers committed so far, summed over the workers."""
    return metric_totals(url, "batch_size_sum", "batch_size_count")  # type: ignore[return-value]


def metric_totals(url: str, *names: str) -> tuple[float, ...]:
    """The sequencer metrics ``certmail_sequencer_NAME`` so far, summed over the workers."""
    text = httpx.get(url + "/metrics", timeout=5).text

    def total(name: str) -> float:
        pattern = rf"^certmail_sequencer_{name}(?:{{[^}}]*}})? ([\d.e+-]+)$"
        return sum(float(v) for v in re.findall(pattern, text, re.M))

    return tuple(total(n) for n in names)


def serve_tree_cpu(proc: subprocess.Popen[bytes]) -> float:
    """CPU seconds (user + system) of a serve and its workers so far."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from proctree import cpu_of, tree

    return cpu_of(tree(proc.pid))


def workers_peers(
    tmp: Path, label: str, database: Callable[[int], str] | None, rounds: int = 2
) -> None:
    """1 worker and ``serve --workers 2`` side by side on one backend, their wrk runs
    alternated: requests/s, the group commit (entries per batch, commits/s) and the
    notary processes' CPU per request (PostgreSQL's own CPU not counted)."""
    seconds = 5
    serves = {w: serve(tmp, w, database(w) if database else None, tag="peers") for w in (1, 2)}
    got: dict[int, list[tuple[float, float, float, float]]] = {1: [], 2: []}
    try:
        for _ in range(rounds):
            for w, (proc, url, token) in serves.items():
                n0, b0 = batch_totals(url)
                c0 = serve_tree_cpu(proc)
                r = wrk_run(url, token, seconds)
                if r is None:
                    return
                c1 = serve_tree_cpu(proc)
                n1, b1 = batch_totals(url)
                n, b = n1 - n0, max(b1 - b0, 1)
                got[w].append((r[0], n / b, b / seconds, (c1 - c0) / max(r[1], 1) * 1e3))
    finally:
        for proc, _, _ in serves.values():
            proc.terminate()
            proc.wait()
    for w, runs in got.items():
        who = "1 process" if w == 1 else "serve --workers 2"
        for i, (rps, per_batch, commits, cpu_ms) in enumerate(runs):
            row(
                f"POST /v1/notarize, 64 clients (wrk), tst, {label}, {who}, run {i + 1}",
                f"{rps:,.0f}/s",
                f"{per_batch:,.1f} entries/batch, {commits:,.0f} commits/s,"
                f" {cpu_ms:.2f} ms CPU/request",
            )


def pg_schemas(dsn: str) -> tuple[Callable[[int], str], list[str]]:
    """A function naming a fresh schema per serve (for ``workers_peers``), and their list."""
    made: list[str] = []
    sep = "&" if "?" in dsn else "?"

    def url(workers: int) -> str:
        made.append("bench_" + uuid.uuid4().hex[:12])
        return f"{dsn}{sep}schema={made[-1]}"

    return url, made


def drop_schemas(dsn: str, schemas: list[str]) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        for schema in schemas:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pg_backend_cpu(dsn: str, app_name: str) -> float:
    """CPU seconds (user + system) so far of the PostgreSQL backends named ``app_name``."""
    import psycopg

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from proctree import cpu_of

    with psycopg.connect(dsn, autocommit=True) as c:
        pids = [
            int(r[0])
            for r in c.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app_name,)
            )
        ]
    return cpu_of(pids)


def backends_peers(
    tmp: Path, dsn: str, rounds: int, before: Path | None = None, seconds: int = 5
) -> None:
    """SQLite and PostgreSQL side by side (one process each; with ``before``, also both
    on the code in that tree), their wrk runs alternated: requests/s, latency, notary CPU
    per request and PostgreSQL's CPU per request."""
    import statistics

    name, schemas = pg_schemas(dsn)
    trees: dict[str, Path | None] = {"": None} if before is None else {"before, ": before, "": None}
    serves: dict[str, tuple[subprocess.Popen[bytes], str, str, str | None]] = {}
    try:
        for prefix, tree in trees.items():
            app_name = "bench_" + uuid.uuid4().hex[:8]
            for backend in ("SQLite", "PostgreSQL"):
                db = name(1) + f"&application_name={app_name}" if backend == "PostgreSQL" else None
                tag = f"backends{len(serves)}"
                proc, url, token = serve(tmp, 1, db, tag=tag, tree=tree)
                serves[prefix + backend] = (proc, url, token, app_name if db else None)
        got = _alternate(serves, dsn, rounds, seconds)
    finally:
        for proc, _, _, _ in serves.values():
            proc.terminate()
            proc.wait()
        drop_schemas(dsn, schemas)
    for label, runs in got.items():
        for i, (rps, lat, cpu_ms, pg_ms) in enumerate(runs):
            pg = f", PostgreSQL {pg_ms:.2f} ms CPU/request" if "PostgreSQL" in label else ""
            row(
                f"POST /v1/notarize, 64 clients (wrk), tst, {label}, run {i + 1}",
                f"{rps:,.0f}/s",
                f"{lat}, notary {cpu_ms:.2f} ms CPU/request{pg}",
            )
    med = {k: statistics.median(r[0] for r in v) for k, v in got.items() if v}
    for prefix in trees:
        sq, pg = med.get(prefix + "SQLite"), med.get(prefix + "PostgreSQL")
        if sq and pg:
            row(
                f"POST /v1/notarize, 64 clients, {prefix}PostgreSQL / SQLite (medians)",
                f"{pg / sq:.2f}x",
                f"SQLite {sq:,.0f}/s, PostgreSQL {pg:,.0f}/s",
            )


#: The metrics _alternate reads around each run: entries, batches, commit seconds.
SEQ_METRICS = ("batch_size_sum", "batch_size_count", "commit_seconds_sum")


def _alternate(
    serves: dict[str, tuple[subprocess.Popen[bytes], str, str, str | None]],
    dsn: str,
    rounds: int,
    seconds: int,
) -> dict[str, list[tuple[float, str, float, float]]]:
    """``rounds`` wrk runs of each serve, alternated: (requests/s, latency and entries per
    batch, notary and PostgreSQL CPU milliseconds per request) per run."""
    got: dict[str, list[tuple[float, str, float, float]]] = {k: [] for k in serves}
    for _ in range(rounds):
        for label, (proc, url, token, app_name) in serves.items():
            c0, (e0, b0, s0) = serve_tree_cpu(proc), metric_totals(url, *SEQ_METRICS)
            p0 = pg_backend_cpu(dsn, app_name) if app_name else 0.0
            t0 = time.perf_counter()
            r = wrk_run(url, token, seconds)
            if r is None:
                return got
            wall = time.perf_counter() - t0
            c1, (e1, b1, s1) = serve_tree_cpu(proc), metric_totals(url, *SEQ_METRICS)
            p1 = pg_backend_cpu(dsn, app_name) if app_name else 0.0
            batches = max(b1 - b0, 1)
            n, note = max(r[1], 1), f"{r[2]}, {(e1 - e0) / batches:.1f} entries/batch"
            # The sequencer's time between one commit and the next (commit_seconds counts
            # Sequencer.commit_prepared), over wrk's run and the reads around it.
            note += f", {(wall - (s1 - s0)) / batches * 1e3:.1f} ms between commits"
            got[label].append((r[0], note, (c1 - c0) / n * 1e3, (p1 - p0) / n * 1e3))
    return got


def main() -> None:
    if "--backends" in sys.argv or "--sequencer" in sys.argv:
        dsn = pg_dsn()
        if dsn is None:
            raise SystemExit("bench_log: error: no PostgreSQL (set CERTMAIL_TEST_POSTGRES_DSN)")
        if "--sequencer" in sys.argv:
            return sequencer_only(dsn)
        rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
        before = Path(sys.argv[sys.argv.index("--before") + 1]) if "--before" in sys.argv else None
        with tempfile.TemporaryDirectory() as tmp:
            backends_peers(Path(tmp), dsn, rounds, before)
        print("\n| measure | figure | note |\n|---|---:|---|")
        for what, value, note in ROWS:
            print(f"| {what} | {value} | {note} |")
        return
    print("certmail log benchmark (2-core machine; figures side by side)", file=sys.stderr)
    ceilings()
    with tempfile.TemporaryDirectory() as tmp:
        st = SQLiteStorage(Path(tmp) / "bench.db")
        for batch, batches in ((1000, 10), (20000, 3)):
            sequencer_rate(st, "SQLite", batch, batches)
        st.close()
        dsn = pg_dsn()
        if dsn:
            with pg_storage(dsn) as pg:
                for batch, batches in ((1000, 10), (20000, 3)):
                    sequencer_rate(pg, "PostgreSQL", batch, batches)
        else:
            row("sequencer, PostgreSQL", "skipped", "no PostgreSQL at 127.0.0.1:5432")
        proc, url, token = serve(Path(tmp))
        try:
            http_batch(url, token, batch=5000, per_client=4, clients=2)
        finally:
            proc.terminate()
            proc.wait()
        workers_peers(Path(tmp), "SQLite", None)
        if dsn:
            name, schemas = pg_schemas(dsn)
            try:
                workers_peers(Path(tmp), "PostgreSQL", name)
            finally:
                drop_schemas(dsn, schemas)
    print("\n| measure | figure | note |\n|---|---:|---|")
    for what, value, note in ROWS:
        print(f"| {what} | {value} | {note} |")


if __name__ == "__main__":
    main()

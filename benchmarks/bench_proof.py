"""Benchmark proof-bundle verification (DESIGN §4.5).

Run: .venv/bin/python benchmarks/bench_proof.py [--runs 15] [--seconds 5]

Builds bundles from a real notary (initialised in a temporary directory and
served on loopback). The typical bundle mirrors submission + delivery +
acknowledgement: three events for one message with the log moving on in
between, only the first with an RFC 3161 token (the others are logged with
``"tst": false``), so three checkpoints and two consistency proofs. A heavier
bundle has a token on every event. ``DISTINCT`` more typical bundles, one per
distinct message from the same notary (each message time-stamped on its own, its
delivery and acknowledgement logged in two batches), so the library figure cycles
through different bundles and only per-notary caches (keys, chain, shared
checkpoints) help. Then prints one table:

- ``certmail proof verify BUNDLE --vkey --tsa-root`` as a fresh process: the
  median and best wall time and the best CPU time (user + system, less
  sensitive to a loaded machine) of ``--runs`` runs (target: ≤ 300 ms wall).
  The CLI runs with a bytecode cache (``PYTHONPYCACHEPREFIX`` in the temporary
  directory, warmed by one run), as an installed package has its .pyc files;
  ``PYTHONDONTWRITEBYTECODE`` would otherwise recompile every module on every run;
- the same with ``--json``;
- ``python -c pass`` with the same interpreter: the floor any CLI pays;
- ``verify_bundle()`` in one process, one core: bundles per second
  (target: ≥ 1,000/s): each distinct bundle seen for the first time (one pass:
  only what the bundles share is cached), then cycling through them (each
  message's own checkpoint is then in the verifier's signature cache too), and
  one bundle repeated; each with its CPU time per bundle (``time.process_time``: steadier
  than wall time on a loaded machine);
- the typical bundle in format 1 (no bundle.json, renderer 2: what bundles were before
  format 2; like for like with the verifier of before), built from the format 2 one;
- the format 2 golden bundle with public keys (tests/vectors/proof-bundle/v2,
  signed-ack): the whole verification, and on its own line the temporary gpg keyring
  (keys/*.asc imported, exported again and compared, the sender's key made the trust
  anchor: gpg subprocesses, new work format 1 did not do), CPU of the gpg children
  included.

``--peer DIR`` (or ``CERTMAIL_BENCH_PEER=DIR make bench``): then runs the bench_proof.py
of another checkout DIR with its own ``DIR/.venv/bin/python``, same arguments, and prints
its table below this one (e.g. the tree of before a refactor: issue 9 compares every
figure with it in one session; its "typical, one repeated" row is format 1 as that tree
wrote it, like this table's "typical, format 1, repeated").
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MESSAGE = (
    b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
    b"Subject: Bench\r\nMessage-ID: <bench-1@example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + b"A typical letter.\r\n" * 200
)
#: Distinct messages (and so bundles) for the library's cycling figure.
DISTINCT = 50


def distinct_message(i: int) -> bytes:
    return MESSAGE.replace(b"<bench-1@", b"<bench-d%d@" % i).replace(
        b"A typical letter.", b"Letter %04d.  " % i, 1
    )


def build(workdir: Path) -> tuple[Path, Path, list[Path], Path, Path]:
    """Notarize the messages with a real notary; write the bundles, notary.vkey, root.pem."""
    import httpx

    from certmail.bundle import export_bundle
    from certmail.notary_client import NotaryClient
    from tests.fixtures.notary import NotaryProcess, init_notary_dir

    directory = init_notary_dir(workdir / "notary")
    notary = NotaryProcess(directory)
    notary.start()
    try:
        token = notary.token_for("alice@example.org")
        sha = hashlib.sha256(MESSAGE).hexdigest()
        typical, heavy = [], []
        auth = {"Authorization": f"Bearer {token}"}
        with NotaryClient(notary.url, token) as client:
            for i in range(3):
                heavy.append(client.notarize(sha, "<bench-1@example.org>"))
                if i == 0:
                    typical.append(heavy[0])
                else:
                    body = {
                        "items": [{"sha256": sha, "message_id": "<bench-1@example.org>"}],
                        "tst": False,
                    }
                    r = httpx.post(notary.url + "/v1/notarize/batch", json=body, headers=auth)
                    typical.append(r.json()["receipts"][0])
                client.notarize(hashlib.sha256(b"other %d" % i).hexdigest(), f"<o{i}@x>")
            # DISTINCT messages: each time-stamped alone, then two batches without tokens
            msgs = [distinct_message(i) for i in range(DISTINCT)]
            ids = [f"<bench-d{i}@example.org>" for i in range(DISTINCT)]
            per: list[list[dict[str, object]]] = [
                [client.notarize(hashlib.sha256(m).hexdigest(), mid)]
                for m, mid in zip(msgs, ids, strict=True)
            ]
            for _ in range(2):
                body = {
                    "items": [
                        {"sha256": hashlib.sha256(m).hexdigest(), "message_id": mid}
                        for m, mid in zip(msgs, ids, strict=True)
                    ],
                    "tst": False,
                }
                r = httpx.post(notary.url + "/v1/notarize/batch", json=body, headers=auth)
                for lst, rec in zip(per, r.json()["receipts"], strict=True):
                    lst.append(rec)
        chain = httpx.get(notary.url + "/v1/tsa/chain").content

        def consistency(old: int, new: int) -> list[bytes]:
            body = httpx.get(
                notary.url + "/v1/proof/consistency", params={"old": old, "new": new}
            ).json()
            return [base64.b64decode(h) for h in body["proof"]]

        bundle = workdir / "typical.certmail-proof.zip"
        bundle.write_bytes(
            export_bundle(
                MESSAGE, typical, vkey=notary.vkey, tsa_chain_pem=chain, consistency=consistency
            )
        )
        heavy_bundle = workdir / "heavy.certmail-proof.zip"
        heavy_bundle.write_bytes(
            export_bundle(
                MESSAGE, heavy, vkey=notary.vkey, tsa_chain_pem=chain, consistency=consistency
            )
        )
        distinct = []
        for i, (m, recs) in enumerate(zip(msgs, per, strict=True)):
            path = workdir / f"d{i:02d}.certmail-proof.zip"
            path.write_bytes(
                export_bundle(
                    m, recs, vkey=notary.vkey, tsa_chain_pem=chain, consistency=consistency
                )
            )
            distinct.append(path)
    finally:
        notary.stop()
    vkey = workdir / "notary.vkey"
    vkey.write_text(notary.vkey + "\n")
    return bundle, heavy_bundle, distinct, vkey, directory / "tsa" / "root-ca.pem"


def wall(cmd: list[str], runs: int, env: dict[str, str]) -> tuple[list[float], float]:
    """Wall times of ``runs`` runs, and the least CPU time (user + system) of one run."""
    import resource

    times, cpu = [], float("inf")
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, env=env, check=False)
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = min(cpu, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
        if p.returncode != 0:
            raise SystemExit(f"{cmd} failed: {p.stderr.decode()[-500:]}")
    return times, cpu


def format1(data: bytes, vkey: str) -> bytes:
    """The format 1 form of a format 2 bundle without keys: no bundle.json, the documents
    by renderer 2 (as verify regenerates them); the bundle itself when it is format 1."""
    from dataclasses import replace

    from certmail.bundle import read_members, write_members

    files = read_members(data)
    if "bundle.json" not in files:
        return data
    from certmail.bundle import documents
    from certmail.bundle.verify import check_evidence

    del files["bundle.json"]
    _, _, facts = check_evidence(files, vkey, None, None, documents=False)
    files.update(documents.render(replace(facts, renderer=2), False))
    return write_members(files)


def per_bundle(run: object, seconds: float, unit: int = 1) -> tuple[float, float, int]:
    """Wall and CPU seconds (this process and its children) per call of ``run()``, for
    calls during at least ``seconds``."""
    import resource

    assert callable(run)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while n < unit or time.perf_counter() - t0 < seconds:
        run()
        n += unit
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    return elapsed / n, cpu / n, n


def keys_rows(seconds: float) -> list[tuple[str, str, str]]:
    """The format 2 golden bundle with keys: verify_bundle(), and the keyring step alone."""
    golden = ROOT / "tests" / "vectors" / "proof-bundle" / "v2"
    if not (golden / "signed-ack.certmail-proof.zip").exists():
        return []  # a tree from before format 2
    from cryptography import x509

    from certmail.bundle import read_members, verify_bundle
    from certmail.bundle.headers import header_facts
    from certmail.bundle.pgpkeys import bundle_keyring

    data = (golden / "signed-ack.certmail-proof.zip").read_bytes()
    vkey = (golden / "notary.vkey").read_text().strip()
    roots = x509.load_pem_x509_certificates((golden / "tsa-root.pem").read_bytes())
    files = read_members(data)
    sender = header_facts(files["message.eml"]).sender

    def keyring() -> None:
        with bundle_keyring(files, sender) as ring:
            assert ring is not None

    rows = []
    for label, run in (
        (
            "format 2 with keys (golden signed-ack), whole",
            lambda: verify_bundle(data, vkey=vkey, tsa_roots=roots),
        ),
        ("  of which the gpg keyring (keys/*.asc)", keyring),
    ):
        run()
        wall_s, cpu_s, n = per_bundle(run, seconds)
        rows.append(
            (
                f"verify_bundle() {label}",
                f"{1 / wall_s:,.0f} bundles/s",
                f"{wall_s * 1e3:,.1f} ms wall, {cpu_s * 1e3:,.1f} ms CPU with gpg each ({n} runs)",
            )
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--peer", type=Path, default=os.environ.get("CERTMAIL_BENCH_PEER") or None)
    args = ap.parse_args()
    rc = table(args)
    if args.peer is not None:
        rc = rc or peer(args.peer, args.runs, args.seconds)
    return rc


def peer(directory: Path, runs: int, seconds: float) -> int:
    """The same benchmark in another checkout (its own venv), printed after this one."""
    py, script = directory / ".venv" / "bin" / "python", directory / "benchmarks" / "bench_proof.py"
    print(f"\npeer: {directory} (same session)", flush=True)
    cmd = [str(py), str(script), "--runs", str(runs), "--seconds", str(seconds)]
    env = {k: v for k, v in os.environ.items() if k != "CERTMAIL_BENCH_PEER"}
    return subprocess.run(cmd, cwd=directory, env=env, check=False).returncode


def table(args: argparse.Namespace) -> int:
    """Build the bundles, measure, print this tree's table."""

    from cryptography import x509

    from certmail.bundle import verify_bundle

    with tempfile.TemporaryDirectory(prefix="bench-proof-") as tmp:
        work = Path(tmp)
        bundle, heavy, distinct, vkey_file, root = build(work)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CERTMAIL_") and k != "PYTHONDONTWRITEBYTECODE"
        }
        env["CERTMAIL_HOME"] = str(work / "home")  # no keyring: nothing to spawn gpg for
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        cli = [
            sys.executable,
            "-m",
            "certmail.cli.main",
            "proof",
            "verify",
            str(bundle),
            "--vkey",
            str(vkey_file),
            "--tsa-root",
            str(root),
        ]
        rows: list[tuple[str, str, str]] = []
        wall([sys.executable, "-c", "pass"], 2, env)  # warm the page cache
        wall(cli, 1, env)  # and the bytecode cache
        floor = wall([sys.executable, "-c", "pass"], args.runs, env)
        table = wall(cli, args.runs, env)
        as_json = wall([*cli, "--json"], args.runs, env)
        for name, (t, cpu) in (
            ("python -c pass (floor)", floor),
            ("certmail proof verify (table)", table),
            ("certmail proof verify --json", as_json),
        ):
            rows.append(
                (
                    name,
                    f"median {statistics.median(t) * 1000:.0f} ms",
                    f"best {min(t) * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU",
                )
            )

        vkey = vkey_file.read_text().strip()
        roots = x509.load_pem_x509_certificates(root.read_bytes())
        sizes = []
        # First sight: each distinct bundle verified once, only per-notary caches warm (the
        # vkey, the chain, the checkpoints the batches share; made by the typical bundle).
        verify_bundle(bundle.read_bytes(), vkey=vkey, tsa_roots=roots)
        datas = [p.read_bytes() for p in distinct]
        t0, c0 = time.perf_counter(), time.process_time()
        for data in datas:
            report = verify_bundle(data, vkey=vkey, tsa_roots=roots)
            assert len(report.events) == 3 and not report.warnings
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows.append(
            (
                f"verify_bundle() typical, {len(datas)} distinct, first sight",
                f"{len(datas) / elapsed:,.0f} bundles/s",
                f"{elapsed / len(datas) * 1e6:,.0f} µs wall, {cpu / len(datas) * 1e6:,.0f} µs "
                "CPU each, one pass",
            )
        )
        v1 = [format1(p.read_bytes(), vkey) for p in (bundle, heavy)]
        for label, datas in (
            (f"typical, {len(distinct)} distinct", [p.read_bytes() for p in distinct]),
            ("typical, one repeated", [bundle.read_bytes()]),
            ("heavy (3 tokens), repeated", [heavy.read_bytes()]),
            ("typical, format 1, repeated", v1[:1]),
            ("heavy, format 1, repeated", v1[1:]),
        ):
            sizes.append(f"{label.split(',')[1].strip()}: {len(datas[0]):,} bytes")
            for data in datas:
                report = verify_bundle(data, vkey=vkey, tsa_roots=roots)
                assert len(report.events) == 3 and not report.warnings

            def cycle(datas: list[bytes] = datas) -> None:
                for data in datas:
                    verify_bundle(data, vkey=vkey, tsa_roots=roots)

            wall_s, cpu_s, _ = per_bundle(cycle, args.seconds, len(datas))
            rows.append(
                (
                    f"verify_bundle() {label}",
                    f"{1 / wall_s:,.0f} bundles/s",
                    f"{wall_s * 1e6:,.0f} µs wall, {cpu_s * 1e6:,.0f} µs CPU each, one core",
                )
            )
        rows += keys_rows(args.seconds)

    print(
        f"bundles: {'; '.join(sizes[:2])}; 3 events, 3 checkpoints, 2 consistency proofs; "
        f"{args.runs} runs per CLI row; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    w = max(len(r[0]) for r in rows)
    print(f"{'what':<{w}}  {'result':<22}  detail")
    for name, a, b in rows:
        print(f"{name:<{w}}  {a:<22}  {b}")
    print("targets: CLI ≤ 300 ms wall (median); library ≥ 1,000 bundles/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

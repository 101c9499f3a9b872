"""Benchmark the fixed part of `certmail send`: a 1 KB attachment, what every send pays.

Each round runs a fresh ``certmail send --no-notarize --via smtp`` process of a 1 KB
attachment (interpreter start, imports, key lookups, the gpg runs, SMTP to a loopback
sink) of the tree ``--before`` (a ``git archive`` of another commit), then of this tree;
CPU is user + system with the children (gpg) from wait4, beside wall time. Before the
rounds, one untimed send of each tree with a logging ``gpg`` first on PATH counts its
gpg processes. The peer: ``gpg --sign --encrypt -z0 --armor`` of the same file.

    .venv/bin/python benchmarks/bench_send_small.py [--runs 9] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.send_world import ALICE, BOB, bytecode_env, identities, timed_child  # noqa: E402
from benchmarks.sinks import LoopbackSink  # noqa: E402


def send_cmd(data: Path, body: Path) -> list[str]:
    return [sys.executable, "-m", "certmail.cli.main", "send", "--to", BOB, "--subject", "small",
            "--attach", str(data), "--no-notarize", "--via", "smtp",
            "--body-file", str(body)]  # fmt: skip


def gpg_runs(cmd: list[str], env: dict[str, str], cwd: Path, work: Path) -> Counter[str]:
    """The gpg processes one send starts, by operation (a logging wrapper on PATH)."""
    real = shutil.which("gpg")
    assert real is not None
    bindir, log = work / "bin", work / "gpg.log"
    bindir.mkdir(exist_ok=True)
    (bindir / "gpg").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    (bindir / "gpg").chmod(0o755)
    log.unlink(missing_ok=True)
    timed_child(cmd, {**env, "PATH": f"{bindir}{os.pathsep}{env['PATH']}"}, cwd=cwd)
    ops: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        words = line.split()
        ops[next((w for w in words if w in OPS), "other")] += 1
    return ops


#: The options that name a gpg run's operation (``--sign`` with ``--encrypt``: one run).
OPS = ("--list-keys", "--list-secret-keys", "--list-config", "--export", "--detach-sign",
       "--encrypt", "--decrypt", "--import", "--version")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--before", type=Path, default=None, help="a checkout of another tree")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-small-"))
    alice, bob = identities(work)
    sink = LoopbackSink()
    data, body = work / "small.bin", work / "body.txt"
    data.write_bytes(os.urandom(1024))
    body.write_text("small one\n")
    env = {**bytecode_env(), "CERTMAIL_HOME": str(alice), "CERTMAIL_EMAIL": ALICE,
           "CERTMAIL_SMTP_URL": f"smtp://127.0.0.1:{sink.port}"}  # fmt: skip
    env.pop("CERTMAIL_CLAMD", None)
    trees = [("this tree", ROOT, env)]
    if args.before is not None:
        old = {**env, **bytecode_env(args.before), "PYTHONPATH": str(args.before)}
        trees.insert(0, ("before", args.before, old))
    cmd = send_cmd(data, body)
    try:
        for name, cwd, e in trees:
            ops = gpg_runs(cmd, e, cwd, work)
            print(f"{name}: {sum(ops.values())} gpg runs a send: {dict(sorted(ops.items()))}")
        peer_cmd = ["gpg", "--homedir", str(alice / "gnupg"), "--batch", "--yes", "--sign",
                    "--encrypt", "-z0", "--armor", "-u", ALICE, "-r", BOB,
                    "-o", str(work / "out.gpg"), str(data)]  # fmt: skip
        rows: dict[str, list[tuple[float, int, float]]] = {"peer": []}
        print("\n| round | " + " | ".join(["peer", *(n for n, _, _ in trees)]) + " |")
        print("|---:|" + "---:|" * (len(trees) + 1))
        for rnd in range(args.runs):
            cells = []
            rows["peer"].append(timed_child(peer_cmd, dict(os.environ)))
            for name, cwd, e in trees:
                rows.setdefault(name, []).append(timed_child(cmd, e, cwd=cwd))
            for name in rows:
                wall, _, cpu = rows[name][-1]
                cells.append(f"{cpu:.3f} ({wall:.3f})")
            print(f"| {rnd + 1} | " + " | ".join(cells) + " |")
        print("\nmedian CPU s (wall s) of the rounds:")
        for name, got in rows.items():
            cpu = statistics.median(r[2] for r in got)
            wall = statistics.median(r[0] for r in got)
            rss = max(r[1] for r in got) / 1024
            print(f"  {name}: {cpu:.3f} ({wall:.3f}); peak RSS {rss:.1f} MB")
    finally:
        for h in (alice, bob):
            subprocess.run(["gpgconf", "--homedir", str(h / "gnupg"), "--kill", "all"],
                           check=False, capture_output=True)  # fmt: skip
            shutil.rmtree(h, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

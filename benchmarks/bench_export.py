"""Benchmark `certmail proof export` of a big message against `gpg --decrypt` of it.

A real notary (initialised in a temporary directory, served on loopback), Alice and
Bob with temporary GnuPG homes; Alice sends an N MB random attachment (encrypted,
signed, notarized directly: `--via smtp` to a loopback sink), then
`certmail proof export` of it runs as a child process: wall time, CPU and peak RSS
(GNU time), beside the peer, `gpg --decrypt` of the same message's ciphertext with
Alice's keyring (send encrypts to the sender too), in the same run. The issue 16
target: export <= 2x gpg --decrypt, peak RSS < 300 MB at 200 MB.

    .venv/bin/python benchmarks/bench_export.py [--mb N] [--runs R] [--code DIR]

N defaults to $CERTMAIL_BENCH_EXPORT_MB or 10 (`make bench` stays quick); 100 is the
issue's figure. `--code DIR` runs the export from another checkout (e.g. a
`git worktree` of an older commit) for a before/after table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_send import ALICE, BOB, identities  # noqa: E402

from benchmarks.sinks import LoopbackSink  # noqa: E402


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (with the children waited for) and peak RSS (MB), by
    GNU time (/usr/bin/time): wait4 on our own child would count the pages of this
    process, which the child shares until it execs."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        t = time.perf_counter()
        p = subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%U %S %M", *cmd],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        wall = time.perf_counter() - t
        if p.returncode != 0:
            raise SystemExit(f"{cmd[:6]} failed: {p.stderr.decode()}")
        user, system, kib = report.read().split()[-3:]
    return wall, float(user) + float(system), int(kib) / 1024


def send(alice: Path, notary: Any, sink: LoopbackSink, mb: int, work: Path) -> tuple[str, Path]:
    """Alice's certified send of an ``mb`` MB attachment; its sha256 and ledger copy."""
    data = work / "attach.bin"
    with data.open("wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    (work / "body.txt").write_text("the big one\n")
    env = env_of(alice, notary)
    env["CERTMAIL_SMTP_URL"] = f"smtp://127.0.0.1:{sink.port}"
    cmd = [sys.executable, "-m", "certmail.cli.main", "send", "--to", BOB, "--subject", "big"]
    cmd += ["--attach", str(data), "--body-file", str(work / "body.txt"), "--via", "smtp"]
    p = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, check=False)
    if p.returncode:
        raise SystemExit(f"send failed: {p.stderr}")
    data.unlink()
    sha = json.loads(p.stdout)["sha256"]
    return sha, alice / "sent" / f"{sha}.eml"


_TOKENS: dict[str, str] = {}


def env_of(home: Path, notary: Any) -> dict[str, str]:
    if ALICE not in _TOKENS:
        _TOKENS[ALICE] = notary.token_for(ALICE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTMAIL_")}
    env.update(
        CERTMAIL_HOME=str(home),
        CERTMAIL_EMAIL=ALICE,
        CERTMAIL_NOTARY_URL=notary.url,
        CERTMAIL_NOTARY_TOKEN=_TOKENS[ALICE],
    )
    return env


def ciphertext(eml: Path, work: Path) -> Path:
    """The message's OpenPGP ciphertext (the second part of multipart/encrypted)."""
    from certmail.bundle.headers import header_facts

    raw = eml.read_bytes()
    layout = header_facts(raw).layout
    assert layout is not None and layout.kind == "encrypted"
    off, n = layout.first
    out = work / "message.asc"
    out.write_bytes(raw[off : off + n])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=int(os.environ.get("CERTMAIL_BENCH_EXPORT_MB", 10)))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--code", type=Path, default=ROOT, help="the checkout whose export runs")
    args = ap.parse_args()
    from tests.fixtures.notary import NotaryProcess, init_notary_dir

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    alice, bob = identities(work)
    notary = NotaryProcess(init_notary_dir(work / "notary"))
    notary.start()
    try:
        sha, eml = send(alice, notary, LoopbackSink(), args.mb, work)
        asc = ciphertext(eml, work)
        gpg = ["gpg", "--homedir", str(alice / "gnupg"), "--batch", "--yes", "--decrypt"]
        gpg += ["-o", str(work / "plain.out"), str(asc)]
        env = env_of(alice, notary)
        env["PYTHONPATH"] = str(args.code)
        out = work / "out.certmail-proof.zip"
        export = [sys.executable, "-m", "certmail.cli.main", "proof", "export", sha]
        export += ["-o", str(out), "--force"]
        rows: dict[str, list[tuple[float, float, float]]] = {"gpg": [], "export": []}
        for _ in range(args.runs):  # alternately, so both see the same machine
            rows["gpg"].append(timed(gpg, dict(os.environ), work))
            rows["export"].append(timed(export, env, args.code))
        size = eml.stat().st_size / 1e6
        print(f"message {size:.1f} MB ({args.mb} MB attachment), {args.runs} runs, medians")
        print(f"export from {args.code}")
        print("| what                       | wall s | CPU s | peak RSS MB |")
        print("|----------------------------|-------:|------:|------------:|")
        med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in rows.items()}
        for label, key in (("gpg --decrypt (peer)", "gpg"), ("certmail proof export", "export")):
            w, c, r = med[key]
            print(f"| {label:<26} | {w:6.2f} | {c:5.2f} | {r:11.1f} |")
        print(
            f"\nratio export / gpg --decrypt: {med['export'][0] / med['gpg'][0]:.2f} "
            f"(target <= 2); bundle {out.stat().st_size / 1e6:.1f} MB"
        )
    finally:
        notary.stop()
        for h in (alice, bob):
            subprocess.run(
                ["gpgconf", "--homedir", str(h / "gnupg"), "--kill", "all"],
                check=False,
                capture_output=True,
            )
            shutil.rmtree(h, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark `certmail open` of a message with one big attachment, against `gpg --decrypt`.

One sealed message (signed and encrypted to bob, one random attachment of N MB,
made with the library's `seal`) is opened by `certmail open --save-dir`
(a child process, no virus scanner) and decrypted by `gpg --decrypt` of its
armored ciphertext in the same run, interleaved, medians of ``--runs``. Wall
times and CPU seconds, their ratio (target <= 1.5) and peak RSS: the largest
process's (wait4) and the whole process tree's (benchmarks/proctree.py; target
< 300 MB at 200 MB). ``--code DIR`` opens with another checkout (e.g. `git archive`
of an older commit) for a before/after table.

    .venv/bin/python benchmarks/bench_open.py [--mb 8] [--runs 3] [--code DIR]
    CERTMAIL_BENCH_MB=100 make bench      (or --mb 100 / --mb 200)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from proctree import Measured, measured, medians  # noqa: E402

from certmail.compose import Headers, ScanRecord, new_message_id, now_date  # noqa: E402
from keys.gpg import Keyring  # noqa: E402

ALICE, BOB = "alice@example.org", "bob@example.net"
DEFAULT_MB = int(os.environ.get("CERTMAIL_BENCH_MB", "8"))


def identities(base: Path) -> tuple[Path, Path]:
    """Alice's and Bob's homes, each key known to the other (and certified)."""
    homes = []
    for addr, name in ((ALICE, "Alice"), (BOB, "Bob")):
        home = base / name.lower()
        Keyring(home / "gnupg").generate_identity(addr, name)
        homes.append(home)
    a, b = (Keyring(h / "gnupg") for h in homes)
    a.import_keys(b.export_public(BOB).encode())
    a.trust(BOB)
    b.import_keys(a.export_public(ALICE).encode())
    b.trust(ALICE)
    return homes[0], homes[1]


def make_message(alice: Path, mb: int, work: Path) -> Path:
    """A sealed message from alice to bob with one random ``mb`` MB attachment."""
    from certmail.seal import seal

    data = work / "attach.bin"
    with data.open("wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    h = Headers(ALICE, (BOB,), "bench", new_message_id("example.org"), now_date())
    sealed = seal(
        Keyring(alice / "gnupg"),
        work / "seal",
        h,
        b"big one\n",
        [(data, ScanRecord("not scanned"))],
    )
    msg = work / "message.eml"
    os.replace(sealed.path, msg)
    shutil.rmtree(work / "seal", ignore_errors=True)
    data.unlink()
    return msg


def armored_part(msg: Path, out: Path) -> None:
    """The ASCII-armored ciphertext of ``msg`` (what gpg is given), streamed to ``out``."""
    begin, end = b"-----BEGIN PGP MESSAGE-----", b"-----END PGP MESSAGE-----"
    with msg.open("rb") as f, out.open("wb") as o:
        inside = False
        for line in f:
            if line.startswith(begin):
                inside = True
            if inside:
                o.write(line)
                if line.startswith(end):
                    return


def run(mb: int, runs: int, code: Path = ROOT) -> dict[str, Any]:
    """Medians of ``runs`` interleaved runs of gpg and ``certmail open`` (from ``code``)."""
    work = Path(tempfile.mkdtemp(prefix="bench-open-", dir="/tmp"))
    try:
        alice, bob = identities(work)
        msg = make_message(alice, mb, work)
        armored = work / "encrypted.asc"
        armored_part(msg, armored)
        env = {**os.environ, "CERTMAIL_HOME": str(bob), "CERTMAIL_EMAIL": BOB}
        env["PYTHONPATH"] = str(code)
        for k in ("CERTMAIL_CLAMD", "CERTMAIL_NOTARY_URL", "CERTMAIL_NOTARY_TOKEN"):
            env.pop(k, None)
        gpg = ["gpg", "--homedir", str(bob / "gnupg"), "--batch", "--yes", "--decrypt"]
        gpg += ["-o", str(work / "plain.out"), str(armored)]
        save = work / "saved"
        cm = [sys.executable, "-m", "certmail.cli.main", "open", str(msg)]
        cm += ["--save-dir", str(save), "--no-ack", "--force"]
        rows: dict[str, list[Measured]] = {"gpg": [], "certmail": []}
        for _ in range(runs):
            rows["gpg"].append(measured(gpg, dict(os.environ)))
            rows["certmail"].append(measured(cm, env, code))
            (work / "plain.out").unlink()
        if not (save / "attach.bin").is_file() or (save / "attach.bin").stat().st_size != mb << 20:
            raise SystemExit("certmail open did not save the attachment")
        out: dict[str, Any] = {k: medians(v) for k, v in rows.items()}
        out["size_mb"] = msg.stat().st_size / 1e6
        return out
    finally:
        for h in ("alice", "bob"):
            subprocess.run(
                ["gpgconf", "--homedir", str(work / h / "gnupg"), "--kill", "all"],
                check=False,
                capture_output=True,
            )
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=DEFAULT_MB, help="attachment size (MB)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--code", type=Path, default=ROOT, help="the checkout whose open runs")
    args = ap.parse_args()
    r = run(args.mb, args.runs, args.code)
    g, c = r["gpg"], r["certmail"]
    print(
        f"| open, {args.mb} MB attachment ({r['size_mb']:.0f} MB message), from {args.code} "
        f"| wall s (median of {args.runs}) | CPU s | largest RSS MB | tree RSS MB |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, m in (("gpg --decrypt (the armored part)", g), ("certmail open --save-dir", c)):
        print(f"| {label} | {m.wall:.2f} | {m.cpu:.2f} | {m.largest:.1f} | {m.tree:.1f} |")
    print(
        f"\nratio certmail / gpg: wall {c.wall / g.wall:.2f}, CPU {c.cpu / g.cpu:.2f} "
        f"(target <= 1.5 at 100 MB); tree peak RSS {c.tree:.0f} MB (target < 300 MB at 200 MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the notary's check of an S/MIME (CMS) acknowledgement beside plain ``openssl``.

Run: .venv/bin/python benchmarks/bench_ack_cms.py [--runs 40]

A test CA (tests/fixtures/smime.py) certifies Bob (RSA 2048); ``openssl cms -sign``
signs an acknowledgement text. certmail's side is :func:`notary.ack_cms.check_cms`
(the structure read with asn1crypto, then ``openssl cms -verify -purpose smimesign``
in a private work directory, the certificate's address checked); the peer is the same
``openssl cms -verify`` run directly on files written once. The two alternate, one
run each at a time; printed: the median wall time per check and the CPU time per
check (this process and its children, os.times: independent of the machine's load).
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from notary.ack_cms import check_cms  # noqa: E402
from notary.ackformat import Ack, ack_text  # noqa: E402
from tests.fixtures.smime import SmimePki  # noqa: E402


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, tuple[float, float]]:
    """Median wall seconds and mean CPU seconds per call of each, alternating."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, float] = dict.fromkeys(fns, 0.0)
    for _ in range(runs):
        for name, fn in fns.items():
            c0, t0 = _cpu(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name] += _cpu() - c0
    return {k: (statistics.median(wall[k]), cpu[k] / runs) for k in fns}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pki = SmimePki(work / "pki")
        bob = pki.person("bob@example.net")
        text = ack_text(Ack("ab" * 32, "<m@x>", bob.email, datetime.now(UTC), "http://notary.test"))
        (work / "ack.txt").write_text(text, encoding="utf-8")
        der = subprocess.run(
            ["openssl", "cms", "-sign", "-binary", "-outform", "DER", "-md", "sha256",
             "-in", str(work / "ack.txt"), "-signer", str(bob.cert_pem),
             "-inkey", str(bob.key_pem)],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        (work / "ack.der").write_bytes(der)
        cms = base64.b64encode(der).decode()
        peer = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                str(work / "ack.der"), "-content", str(work / "ack.txt"), "-CAfile",
                str(pki.ca), "-purpose", "smimesign", "-out", os.devnull]  # fmt: skip
        got = measure(
            {
                "certmail check_cms": lambda: check_cms(text, cms, bob.email, pki.ca),
                "openssl cms -verify": lambda: subprocess.run(
                    peer, capture_output=True, check=True
                ),
            },
            args.runs,
        )
    print(f"{'check':24} {'wall ms (median)':>17} {'CPU ms / check':>15}")
    for name, (w, c) in got.items():
        print(f"{name:24} {w * 1000:17.2f} {c * 1000:15.2f}")


if __name__ == "__main__":
    main()

"""Benchmark S/MIME seal and open: certmail beside ``openssl cms`` on the same bytes.

Run: .venv/bin/python benchmarks/bench_smime.py [--mb 16]

A test CA (tests/fixtures/smime.py) certifies Alice and Bob (RSA 2048). One
message with an attachment of --mb MB is sealed by certmail
(:func:`certmail.smime.sealing.seal_smime`: compose, sign, encrypt to Bob and
to Alice, re-verify) and opened by certmail
(:func:`certmail.smime.opening.open_layers`: decrypt, verify the chain and the
sender). The peer runs the same two steps with the ``openssl`` program on the
inner entity certmail composed: ``cms -sign | cms -encrypt -aes256`` (two
recipients), then ``cms -decrypt | cms -verify -CAfile``. Each is run three
times; the best time is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from certmail.compose import NOT_SCANNED, Headers, ScanRecord  # noqa: E402
from certmail.mime import parse_entity  # noqa: E402
from certmail.smime.opening import SmimeContext, open_layers  # noqa: E402
from certmail.smime.sealing import seal_smime  # noqa: E402
from certmail.smime.store import SmimeStore  # noqa: E402
from tests.fixtures.smime import PASSPHRASE, SmimePki  # noqa: E402


def best(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=16)
    mb = ap.parse_args().mb
    d = Path(tempfile.mkdtemp(prefix="bench-smime-"))
    try:
        pki = SmimePki(d / "pki")
        alice, bob = pki.person("alice@example.org"), pki.person("bob@example.net")
        ask = lambda request: PASSPHRASE  # noqa: E731
        a_store, b_store = SmimeStore(d / "a" / "smime"), SmimeStore(d / "b" / "smime")
        a_store.import_p12(alice.p12.read_bytes(), "alice.p12", ask)
        b_store.import_p12(bob.p12.read_bytes(), "bob.p12", ask)
        a_store.import_certs([bob.cert])
        a_ctx, b_ctx = SmimeContext(a_store, pki.ca, ask), SmimeContext(b_store, pki.ca, ask)
        att = d / "data.bin"
        att.write_bytes(os.urandom(mb << 20))
        headers = Headers(
            "alice@example.org", ("bob@example.net",), "Bench", "<bench@example.org>",
            "Tue, 01 Dec 2026 12:00:00 +0000",
        )  # fmt: skip
        scanned = [(att, ScanRecord(NOT_SCANNED))]
        work = d / "work"

        def seal() -> None:
            shutil.rmtree(work, ignore_errors=True)
            seal_smime(a_ctx, work, headers, b"Numbers attached.\n", scanned)

        t_seal = best(seal)
        message = (work / "message.eml").read_bytes()
        inner = work / "inner.mime"
        owork = d / "open"

        def open_() -> None:
            shutil.rmtree(owork, ignore_errors=True)
            owork.mkdir()
            open_layers(b_ctx, parse_entity(message), owork)

        t_open = best(open_)

        def peer_seal() -> None:
            signed = _openssl(
                "cms", "-sign", "-binary", "-in", str(inner), "-signer", str(alice.cert_pem),
                "-inkey", str(alice.key_pem), "-md", "sha256",
            )  # fmt: skip
            (d / "peer-signed.eml").write_bytes(signed)
            enc = _openssl(
                "cms", "-encrypt", "-binary", "-aes256", "-in", str(d / "peer-signed.eml"),
                str(bob.cert_pem), str(alice.cert_pem),
            )  # fmt: skip
            (d / "peer.eml").write_bytes(enc)

        t_peer_seal = best(peer_seal)

        def peer_open() -> None:
            plain = _openssl(
                "cms", "-decrypt", "-in", str(d / "peer.eml"), "-recip", str(bob.cert_pem),
                "-inkey", str(bob.key_pem),
            )  # fmt: skip
            _openssl("cms", "-verify", "-CAfile", str(pki.ca), "-purpose", "smimesign", stdin=plain)

        t_peer_open = best(peer_open)
        size = len(message) / (1 << 20)
        print(f"S/MIME, one {mb} MiB attachment ({size:.1f} MiB sealed), best of 3:")
        print(f"{'step':<34}{'certmail':>12}{'openssl cms':>14}")
        print(f"{'seal (sign + encrypt + re-verify)':<34}{t_seal:>11.2f}s{t_peer_seal:>13.2f}s")
        print(f"{'open (decrypt + verify chain)':<34}{t_open:>11.2f}s{t_peer_open:>13.2f}s")
        print("(openssl's seal does no re-verification; certmail's decrypts and verifies again)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

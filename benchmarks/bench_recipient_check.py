"""Memory of the encryption's recipient check with many keys in the keyring (issue 15).

A keyring of the sender's key and ``--keys`` others (pysequoia certificates, one
gpg import); the check of one recipient fingerprint (the sender's own, fully
valid), each on a new :class:`~keys.gpg.Keyring`, interleaved, three of each:
the whole listing (``_listing`` then ``trusted_by_fingerprint``, what
``_check_recipients`` did before 9cbc50b) against ``_check_recipients`` now
(only the named keys). Printed: the tracemalloc peak, what the keyring object
still holds after the check, and user CPU (this process and gpg).

    .venv/bin/python benchmarks/bench_recipient_check.py [--keys 5000]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keys.gpg import Keyring  # noqa: E402
from keys.gpg.selection import trusted_by_fingerprint  # noqa: E402


def user_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    return own + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime


def keyring_of(home: Path, n: int) -> str:
    """The sender's fingerprint, in ``home`` with ``n`` other public keys."""
    import pysequoia as pgp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        certs = [str(pgp.Cert.generate(f"<m{i:05d}@example.net>")) for i in range(n)]
    own = Keyring(home).generate_identity("sender@example.org", "Sender")
    cmd = ["gpg", "--homedir", str(home), "--batch", "--import"]
    subprocess.run(cmd, input="".join(certs).encode(), capture_output=True, check=True)
    return own


def measure(home: Path, own: str, check: Callable[[Keyring], list[str]]) -> str:
    k = Keyring(home)
    tracemalloc.start()
    c0 = user_cpu()
    out = check(k)
    c1 = user_cpu()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if out != [own]:
        raise SystemExit(f"unexpected check result {out}")
    return f"peak {peak / 2**20:6.2f} MiB, held {held / 2**20:5.2f} MiB, user CPU {c1 - c0:.3f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=5000)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-check", dir="/tmp"))
    try:
        t = time.monotonic()
        own = keyring_of(home, args.keys)
        print(f"keyring of {args.keys + 1} keys made in {time.monotonic() - t:.0f} s")
        checks: dict[str, Callable[[Keyring], list[str]]] = {
            "whole listing (before)": lambda k: [
                trusted_by_fingerprint(k._listing(secret=False), own)
            ],
            "named keys (now)      ": lambda k: k._check_recipients([own]),
        }
        for _ in range(3):
            for label, check in checks.items():
                print(f"{label}: {measure(home, own, check)}")
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

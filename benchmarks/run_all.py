"""`make bench`: run every benchmarks/bench_*.py in turn, each printing its table.

Big-message benchmarks (bench_send, bench_open) use a small attachment by
default; ``CERTMAIL_BENCH_MB=100 make bench`` runs them at issue 16's size
(``make bench`` with ``CERTMAIL_BENCH_MB=200`` for the memory target).

Load generators some benchmarks use (wrk) are installed from Debian when
missing and running as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ensure_wrk() -> None:
    if shutil.which("wrk") or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False, stdout=subprocess.DEVNULL
    )


def main() -> int:
    ensure_wrk()
    only = set(sys.argv[1:])
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        if only and script.stem not in only:
            continue
        print(f"\n### {script.stem}\n", flush=True)
        rc = subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode
        if rc:
            failed.append(script.stem)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

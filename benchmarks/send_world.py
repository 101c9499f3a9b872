"""The sender and recipient the send benchmarks share (two fresh gpg homes, Bob's key
trusted in Alice's), and how they time a ``certmail`` child process (with bytecode, from
wait4)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keys.gpg import Keyring

__all__ = ["ALICE", "BOB", "ROOT", "bytecode_env", "identities", "timed_child"]

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB = "alice@example.org", "bob@example.net"


def identities(base: Path) -> tuple[Path, Path]:
    homes = []
    for addr, name in ((ALICE, "Alice"), (BOB, "Bob")):
        home = Path(tempfile.mkdtemp(prefix="b", dir="/tmp"))
        kr = Keyring(home / "gnupg")
        kr.generate_identity(addr, name)
        homes.append(home)
    a, b = (Keyring(h / "gnupg") for h in homes)
    a.import_keys(b.export_public(BOB).encode())
    a.trust(BOB)
    return homes[0], homes[1]


def bytecode_env(root: Path = ROOT) -> dict[str, str]:
    """The environment for a timed ``certmail`` child: with bytecode, as an installed
    package has its .pyc files (compiled here, into the tree's ``__pycache__``
    directories, which git ignores; the interpreter's and the dependencies' own
    .pyc files are used as they are). ``PYTHONDONTWRITEBYTECODE`` (set on the
    development machines) would otherwise compile every certmail module on every
    run: about 0.4 CPU s of each send, the same for 1 KB as for 100 MB."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("PYTHONPYCACHEPREFIX", None)
    dirs = [str(root / d) for d in ("certmail", "keys", "notary")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], env=env, check=True)
    return env


def timed_child(
    cmd: list[str], env: dict[str, str], cwd: Path | None = None
) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (user + system, with the processes it
    waited for: gpg, base64) of one child process, from wait4."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        err = p.stderr.read().decode() if p.stderr else ""
        raise SystemExit(f"{cmd[:4]} failed: {err}")
    return wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime

"""Processes under a root, from Linux /proc: their CPU time and resident sets, sampled.

Used by benchmarks/bench_campaign.py for the sender (``campaign send``, its
workers, their gpg processes), the notary and a GnuPG home's gpg-agent.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Peaks", "agent_pids", "cpu_of", "tree"]

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(root: int) -> list[int]:
    """``root`` and every live process under it."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _stat(int(d))) is not None:
            parent[int(d)] = st[0]
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parent.items() if pp == p]
    return out


def cpu_of(pids: list[int]) -> float:
    return sum(st[1] for p in pids if (st := _stat(p)) is not None)


def _is_python(pid: int) -> bool:
    try:
        return b"python" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False


def agent_pids(gnupghome: Path) -> list[int]:
    """The gpg-agent serving ``gnupghome`` (its command line names the home)."""
    out = []
    for d in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"gpg-agent") and str(gnupghome).encode() in cmd:
            out.append(int(d))
    return out


@dataclass
class Peaks:
    """Peak resident sets, sampled every 0.2 s: the root process alone, the largest
    single process under it, and the whole tree summed (MiB)."""

    root: int
    own: float = 0.0
    largest_child: float = 0.0
    tree: float = 0.0
    #: CPU seconds last seen of each Python process (the command and its workers).
    python_cpu: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        pids = tree(self.root)
        for p in pids:
            st = _stat(p)
            if st is not None and _is_python(p):
                self.python_cpu[p] = st[1]
        rss = {p: _rss_kib(p) / 1024 for p in pids}
        self.own = max(self.own, rss.get(self.root, 0.0))
        self.largest_child = max(
            self.largest_child, *[v for p, v in rss.items() if p != self.root], 0.0
        )
        self.tree = max(self.tree, sum(rss.values()))

    def run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def start(self) -> Peaks:
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

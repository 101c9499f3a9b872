"""Processes under a root, from Linux /proc: their CPU time and resident sets, sampled.

Used by benchmarks/bench_campaign.py for the sender (``campaign send``, its
workers, their gpg processes), the notary and a GnuPG home's gpg-agent, and by
bench_open.py and bench_export.py (:func:`measured`: one command's whole tree).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Measured", "Peaks", "agent_pids", "cpu_of", "measured", "medians", "tree"]

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


def _parent(pid: int) -> int | None:
    st = _stat(pid)
    return None if st is None else st[0]


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages (libraries, a fork's untouched pages) split
    between the processes sharing them, so the tree's sum counts each page once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    exe = os.path.basename(cmd[0].decode(errors="replace"))
    return f"{exe} {cmd[1].decode(errors='replace')}" if len(cmd) > 1 and cmd[1] else exe


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
    #: The whole tree's peak of proportional set sizes (shared pages counted once), MiB.
    tree_pss: float = 0.0
    #: The whole tree's peak RSS without a child caught between fork and exec: it
    #: shares its parent's memory, /proc shows it the parent's very RSS and PSS, and
    #: the plain sum counts that memory twice (MiB).
    tree_exec: float = 0.0
    #: At the sample of the peak ``tree``: (process, RSS MiB, PSS MiB) of each process.
    at_peak: list[tuple[str, float, float]] = field(default_factory=list)
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
        pss = {p: _pss_kib(p) / 1024 for p in pids}
        parent = {p: _parent(p) for p in pids}
        shared = {
            p
            for p, pp in parent.items()
            if p != self.root and pp in rss and (rss[p], pss[p]) == (rss[pp], pss[pp])
        }
        self.tree_exec = max(self.tree_exec, sum(v for p, v in rss.items() if p not in shared))
        self.tree_pss = max(self.tree_pss, sum(pss.values()))
        if sum(rss.values()) > self.tree:
            self.tree = sum(rss.values())
            self.at_peak = sorted(((_name(p), rss[p], pss[p]) for p in pids), key=lambda x: -x[1])

    def run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def start(self) -> Peaks:
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


@dataclass(frozen=True)
class Measured:
    """One command run to its end: wall and CPU seconds (its own and every descendant
    it waited for), the largest single process's peak RSS and the peak of the whole
    tree's summed RSS (sampled every 0.2 s, a child between fork and exec not counted
    twice), in MiB."""

    wall: float
    cpu: float
    largest: float
    tree: float


def measured(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> Measured:
    """Run ``cmd`` (stdout discarded) under GNU time and measure it and its process
    tree; SystemExit with its stderr when it fails. GNU time, not wait4 on our own
    child: until it execs, a child of this process shares (and is counted with) the
    pages of this process, which may hold a big message."""
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        t = time.perf_counter()
        p = subprocess.Popen(
            ["/usr/bin/time", "-o", report.name, "-f", "%U %S %M", *cmd],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        peaks = Peaks(p.pid).start()
        _, err = p.communicate()
        wall = time.perf_counter() - t
        peaks.stop()
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:6])} failed: {err.decode(errors='replace')}")
        user, system, kib = report.read().split()[-3:]
    largest = int(kib) / 1024
    return Measured(wall, float(user) + float(system), largest, max(peaks.tree_exec, largest))


def medians(runs: list[Measured]) -> Measured:
    """Each figure's median over ``runs`` (the peaks too: one run's spike is load)."""
    figures = ("wall", "cpu", "largest", "tree")
    return Measured(*(statistics.median(getattr(r, f) for r in runs) for f in figures))

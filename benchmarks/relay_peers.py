"""The peers of ``bench_relay.py --size-mb``: Postfix's intake of the same message.

A private Debian Postfix on loopback (:mod:`tests.fixtures.postfix`) takes the
message over plain SMTP: smtpd reads DATA, cleanup(8) writes the queue file
(fsynced), qmgr(8) hands it to virtual(8), which writes it to a Maildir. The
CPU is that of every process under Postfix's master, including those that
exited meanwhile (the master's ``cutime``/``cstime``), from /proc.
"""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

from benchmarks.proctree import TICK, cpu_of, tree
from tests.fixtures.postfix import start_postfix

__all__ = ["postfix_cpu", "tree_cpu"]


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every live process under it, plus what ``root``
    has reaped of its children (a child that exits moves its time there)."""
    with open(f"/proc/{root}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    return cpu_of(tree(root)) + (int(fields[13]) + int(fields[14])) / TICK


def postfix_cpu(message: bytes, n: int, sender: str, recipient: str) -> tuple[float, float]:
    """(CPU seconds of Postfix per message, seconds) for ``n`` copies of ``message``
    taken by smtpd and delivered by virtual(8) to ``recipient``'s Maildir."""
    pf = start_postfix(recipient.partition("@")[2], [recipient])
    try:
        master = int((pf.base / "queue" / "pid" / "master.pid").read_text().split()[0])
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=300) as s:
            s.ehlo()  # smtpd is running now: its start is not counted
            c0, t0 = tree_cpu(master), time.monotonic()
            for _ in range(n):
                s.sendmail(sender, [recipient], message)
            pf.wait_maildir(recipient, n, timeout=300)
            cpu, wall = tree_cpu(master) - c0, time.monotonic() - t0
    finally:
        pf.stop()
        _remove(pf.base)
    return cpu / n, wall


def _remove(base: Path) -> None:
    import shutil

    shutil.rmtree(base, ignore_errors=True)

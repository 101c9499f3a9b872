"""Benchmark `certmail campaign report` of a delivered campaign, this code beside another.

N recipients (one Sequoia key per ten addresses), sent through a real `certmail notary
serve` relay to a loopback recipient server, then, once every Delivery receipt is in,
`campaign report NAME --format json` (and csv) run ``--rounds`` times, this tree's code
and, with ``--before DIR`` (a copy of the code before, e.g. ``git archive COMMIT | tar -x
-C DIR``), that code, interleaved. Printed per run: wall seconds, the command's CPU (user
+ sys, ``os.wait4``), the notary's CPU over the run; and whether both wrote the same
bytes. ``--deferred``: the recipient server answers every RCPT 451, so no message is
delivered and the report asks for each one's delivery state (the code before: one ``GET
.../deliveries`` a message; now one ``POST /v1/deliveries/batch`` a page).

    .venv/bin/python benchmarks/bench_campaign_report.py [--n 50] [--rounds 5] [--before DIR]
        [--deferred]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.campaign import write_csv  # noqa: E402
from tests.fixtures.cli import CERTMAIL  # noqa: E402
from tests.notary.relay_memory import CountingSink  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from campaign_world import campaign_world  # noqa: E402
from proctree import cpu_of, tree  # noqa: E402


def run(env: dict[str, str], code: Path, work: Path, *args: str) -> tuple[float, float, bytes]:
    """Wall seconds, CPU seconds and stdout of ``certmail *args`` importing ``code``."""
    out = work / "out"
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        p = subprocess.Popen(
            [*CERTMAIL, *args], env={**env, "PYTHONPATH": str(code)}, cwd=work, stdout=f
        )
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"certmail {' '.join(args)} failed ({status})")
    return wall, ru.ru_utime + ru.ru_stime, out.read_bytes()


class DeferringSink(CountingSink):
    """A recipient server that defers every recipient (the relay will try again)."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return "451 4.7.1 greylisted, come back later"


def _settled(text: bytes, n: int, deferred: bool) -> bool:
    """Whether the report shows every recipient delivered (``deferred``: deferred)."""
    rows = json.loads(text)["recipients"]
    if deferred:
        return len(rows) == n and all(r["deferred"] for r in rows)
    return sum(1 for r in rows if r["state"] == "delivered") == n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", type=Path, default=None, help="a copy of the code before")
    ap.add_argument("--deferred", action="store_true", help="no delivery: every one deferred")
    args = ap.parse_args()
    codes = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    got: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    outputs: dict[tuple[str, str], set[bytes]] = {}
    sink = DeferringSink() if args.deferred else CountingSink()
    with campaign_world("bcr", args.n, sink) as w:
        work, env, pid = w.work, w.env, w.notary.proc.pid
        rows = [{"email": e, "name": f"Tenant {i}"} for i, e in enumerate(w.recipients.emails)]
        (work / "body.txt").write_text("Dear {{ name }},\nthe rent changes.\n")
        create = [
            "campaign", "create", "rent", "--recipients", str(write_csv(work / "r.csv", rows)),
            "--subject", "Rent notice", "--body-file", str(work / "body.txt"),
        ]  # fmt: skip
        run(env, ROOT, work, *create)
        run(env, ROOT, work, "campaign", "send", "rent", "--concurrency", "2")
        deadline = time.monotonic() + 300
        report = ("campaign", "report", "rent", "--format", "json")
        while not _settled(run(env, ROOT, work, *report)[2], args.n, args.deferred):
            if time.monotonic() > deadline:
                raise SystemExit("the delivery evidence never came")
            time.sleep(0.5)
        for _ in range(args.rounds):
            for fmt in ("json", "csv"):
                for label, code in codes.items():
                    n0 = cpu_of(tree(pid))
                    wall, cpu, text = run(
                        env, code, work, "campaign", "report", "rent", "--format", fmt
                    )
                    ncpu = cpu_of(tree(pid)) - n0
                    got.setdefault((label, fmt), []).append((wall, cpu, ncpu))
                    outputs.setdefault((label, fmt), set()).add(text)
    what = "deferred" if args.deferred else "delivered"
    print(f"campaign report of {args.n} {what} recipients, {args.rounds} rounds, interleaved")
    print("code    format  wall s (median, min-max)   command CPU s (median)  notary CPU s")
    for (label, fmt), xs in sorted(got.items()):
        w = [x[0] for x in xs]
        print(
            f"{label:7} {fmt:6}  {statistics.median(w):.3f} ({min(w):.3f}-{max(w):.3f})"
            f"           {statistics.median(x[1] for x in xs):.3f}"
            f"                   {statistics.median(x[2] for x in xs):.3f}"
        )
    for fmt in ("json", "csv"):
        texts = set().union(*(v for (_, f), v in outputs.items() if f == fmt))
        print(f"{fmt}: {len(texts)} distinct output(s) over every run of every code")


if __name__ == "__main__":
    main()

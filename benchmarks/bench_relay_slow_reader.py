"""Benchmark the relay's delivery to a recipient server that reads slowly.

Run: .venv/bin/python benchmarks/bench_relay_slow_reader.py [--messages 2] [--mb 7]
     [--pause 0.1]

A real `certmail notary serve --smtp ... --smarthost ...` process takes
--messages plain messages of --mb MB (base64 lines) and delivers them to a
loopback SMTP server (in this process, benchmarks/sinks.py) that reads DATA 64 KiB
at a time and sleeps --pause seconds after each read. Printed: the notary's CPU seconds
(user+sys from /proc, every process under it) per message and the wall time.
What it shows is the cost of waiting for a slow reader: the relay's writer
must sleep until the transport drains, not poll it.

To compare with another commit's relay, run it from outside the worktree with
that commit's code (``git archive``) first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.proctree import cpu_of, tree  # noqa: E402
from benchmarks.sinks import LoopbackSink  # noqa: E402
from tests.fixtures.notary import relay_notary  # noqa: E402
from tests.notary.relay_memory import ALICE, big_message, submit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2)
    ap.add_argument("--mb", type=float, default=7.0)
    ap.add_argument("--pause", type=float, default=0.1)
    args = ap.parse_args()
    sink = LoopbackSink(read_size=65536, pause=args.pause)
    work = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    notary, token, smtp = relay_notary(work / "notary", sink.port, ALICE)
    assert notary.proc is not None
    pid = notary.proc.pid
    try:
        msgs = [big_message(f"slow{i}", int(args.mb * 1e6)) for i in range(args.messages)]
        time.sleep(1.0)
        c0, t0 = cpu_of(tree(pid)), time.monotonic()
        for m in msgs:
            code, reply = submit(smtp, token, m)
            if code != 250:
                raise SystemExit(f"not accepted: {code} {reply!r}")
        while len(sink.got) < len(msgs):
            time.sleep(0.1)
        cpu, wall = cpu_of(tree(pid)) - c0, time.monotonic() - t0
    finally:
        notary.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"relay to a slow reader ({args.pause} s per 64 KiB): {args.messages} messages of "
        f"{args.mb} MB; notary CPU per message {cpu / args.messages:.3f} s, wall {wall:.1f} s"
    )


if __name__ == "__main__":
    main()

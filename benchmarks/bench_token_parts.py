"""Benchmark the split of RFC 3161 tokens into fixed and variable parts (the log's ``tst`` column).

Per token, in µs (wall and this process's CPU time): ``FixedParts.parts_of``
(what sequencing does for every token of a known template), ``split`` (a
token of a new template) and ``rebuild`` (every read of a stored token).
Peer: the TSA's own issuing of the token (``TimeStampAuthority.stamp``), in
the same run. Run it against two trees to compare them (PYTHONPATH=tree).

    python benchmarks/bench_token_parts.py [N]
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from keys.tsa import generate_tsa_pki
from notary.rfc3161 import TimeStampAuthority
from notary.rfc3161.compact import rebuild, split


def timed(fn: Callable[[bytes], object], tokens: list[bytes]) -> tuple[float, float]:
    """(wall µs, CPU µs) per token."""
    w0, c0 = time.perf_counter(), time.process_time()
    for t in tokens:
        fn(t)
    n = len(tokens)
    return (time.perf_counter() - w0) / n * 1e6, (time.process_time() - c0) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory(prefix="bench-token-parts-") as tmp:
        tsa = TimeStampAuthority(generate_tsa_pki(Path(tmp) / "pki", "Bench TSA"))
        digests = [hashlib.sha256(b"%d" % i).digest() for i in range(n)]
        tokens: list[bytes] = []
        stamp = timed(lambda d: tokens.append(tsa.stamp(d, cert_req=False)), digests)  # type: ignore[arg-type]
    found = split(tokens[0])
    assert found is not None
    fixed = found[0]
    parts = [fixed.parts_of(t) for t in tokens]
    assert all(p is not None for p in parts)
    rows = [
        ("parts_of (known template)", timed(fixed.parts_of, tokens)),
        ("split (new template)", timed(split, tokens)),
        ("rebuild", timed(lambda t: rebuild(fixed, fixed.parts_of(t)), tokens)),  # type: ignore[arg-type]
        ("peer: TSA stamp", stamp),
    ]
    print(f"RFC 3161 token parts, {n:,} tokens, {len(tokens[0])} bytes each\n")
    print("| step | wall µs/token | CPU µs/token |")
    print("|---|---:|---:|")
    for name, (wall, cpu) in rows:
        print(f"| {name} | {wall:.1f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()

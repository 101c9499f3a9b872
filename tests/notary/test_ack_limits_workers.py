"""/v1/ack's limits hold across `serve --workers 2`: one allowance, not one per worker."""

from __future__ import annotations

from pathlib import Path

import httpx

from notary.ratelimit import SharedRateLimiter
from tests.fixtures.notary import NotaryProcess

PER_SOURCE = 6


def test_two_workers_share_one_allowance_per_source(notary_dir: Path) -> None:
    import re

    cfg = notary_dir / "notary.toml"
    text = re.sub(r"(?m)^ack_per_source = .*$", f"ack_per_source = {PER_SOURCE}", cfg.read_text())
    cfg.write_text(re.sub(r"(?m)^ack_window = .*$", "ack_window = 3600.0", text), encoding="utf-8")
    p = NotaryProcess(notary_dir)
    p.start(extra=["--workers", "2"])
    try:
        codes = []
        for _ in range(8 * PER_SOURCE):
            # A new connection each time, so the kernel hands them to both workers.
            with httpx.Client(base_url=p.url, timeout=30) as c:
                codes.append(c.post("/v1/ack", content=b"{}").status_code)
    finally:
        p.stop()
    # Each worker alone would let PER_SOURCE through; together they let exactly that many.
    assert sum(c != 429 for c in codes) == PER_SOURCE
    assert codes[:PER_SOURCE].count(429) == 0 and set(codes[PER_SOURCE:]) == {429}


def test_shared_limiter_counts_across_instances_and_windows(tmp_path: Path) -> None:
    now = [1000.0]
    a = SharedRateLimiter(tmp_path / "l.db", "s", 3, 10.0, clock=lambda: now[0])
    b = SharedRateLimiter(tmp_path / "l.db", "s", 3, 10.0, clock=lambda: now[0])
    other = SharedRateLimiter(tmp_path / "l.db", "m", 1, 10.0, clock=lambda: now[0])
    try:
        assert [a.allow(b"k"), b.allow(b"k"), a.allow(b"k"), b.allow(b"k")] == [
            True,
            True,
            True,
            False,
        ]
        assert b.allow(b"other key") and other.allow(b"k")  # keys and scopes are apart
        now[0] += 10.5
        assert a.allow(b"k") and b.allow(b"k")  # the window moved on
        assert (tmp_path / "l.db").stat().st_mode & 0o777 == 0o600
    finally:
        a.close()
        b.close()
        other.close()

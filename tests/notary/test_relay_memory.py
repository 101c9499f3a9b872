"""Submissions stream to the spool: the notary's memory stays bounded (issue 10 item 5).

Before, aiosmtpd gathered the whole DATA in memory (a list of lines, then
joined), the relay kept that copy while it checked, hashed and spooled it, and
the worker kept it again for delivery: eight 45 MiB submissions took the
notary from 71 to 1,291 MiB. Now each session writes DATA to a spool file as
it arrives, and whole-message work (spooling, scanning, delivery) on large
messages runs under a byte budget (docs/relay.md, "Large messages").

The bound is on memory, measured from /proc (VmHWM, the peak resident set of
the notary process), not on time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.notary.relay_helpers import RelayNotary, configure
from tests.notary.relay_memory import (
    MIB,
    CountingSink,
    big_message,
    peak_mib,
    rss_mib,
    run_concurrent,
    wait_delivered,
)

SESSIONS = 6
SIZE = 30 * MIB


@pytest.fixture
def counting_sink() -> Iterator[CountingSink]:
    s = CountingSink()
    s.start()
    yield s
    s.stop()


def test_large_concurrent_submissions_keep_memory_bounded(
    notary_dir: Path, counting_sink: CountingSink
) -> None:
    configure(notary_dir, relay_retry_initial=0.2)
    relay = RelayNotary(notary_dir, counting_sink.port)
    relay.start()
    try:
        assert relay.proc.proc is not None
        pid = relay.proc.proc.pid
        base = rss_mib(pid)
        messages = [big_message(f"big{i}", SIZE) for i in range(SESSIONS)]
        replies = run_concurrent(relay.smtp_port, relay.token, messages)
        shas = {hashlib.sha256(m).hexdigest() for m in messages}
        assert all(code == 250 for code, _ in replies), replies
        assert {text.decode().rsplit("sha256=", 1)[1] for _, text in replies} == shas
        wait_delivered(counting_sink, shas)
        peak = peak_mib(pid)
    finally:
        relay.proc.stop()
    total = SESSIONS * SIZE / MIB
    # Six 30 MiB messages at once (180 MiB): the old code peaked 727 MiB over its
    # base (24 message sizes); streaming keeps it to a few message sizes (about
    # 140 MiB: one message being spooled, one being delivered).
    print(f"base {base:.0f} MiB, peak {peak:.0f} MiB for {SESSIONS} x {SIZE // MIB} MiB")
    assert peak - base < 6 * SIZE / MIB, (base, peak, total)

"""Benchmark reading a large message over IMAP: certmail's chunked copy against one FETCH.

Run: .venv/bin/python benchmarks/bench_inbox.py [--mb 32]

A private Dovecot (tests/fixtures/dovecot.py, TLS with a test CA) serves a
Maildir holding one message of --mb MB. certmail's reader
(:class:`certmail.inbox.imap.ImapSource`, 1 MiB ``BODY.PEEK[]<o.n>`` pieces
written to a 0600 temporary file, each command bounded) is timed beside the
peer, imapclient's plain ``fetch(uid, ["BODY.PEEK[]"])`` that holds the whole
message in memory. Each is run three times, the best time printed, and the
peak of Python allocations during one more run (tracemalloc) beside it. Then
the notarized-bytes rule (LF copy to canonical CRLF, then SHA-256) beside a
bare hashlib.sha256 of the same bytes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import pwd
import shutil
import ssl
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imapclient import IMAPClient  # noqa: E402

from certmail.inbox.imap import ImapSource  # noqa: E402
from certmail.inbox.imapurl import parse_imap_url  # noqa: E402
from certmail.inbox.notarized import notarized  # noqa: E402
from tests.fixtures.dovecot import Dovecot  # noqa: E402


def _message(mb: int) -> bytes:
    blob = base64.encodebytes(os.urandom(mb * 750_000))
    return (
        b"From: alice@example.org\nTo: bob@example.net\nSubject: big\n"
        b"Message-ID: <big@example.org>\n\n" + blob
    )


def _best(fn: Callable[[], object], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _peak(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / (1 << 20)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=32)
    args = ap.parse_args()
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="bin", dir="/tmp"))
    base.chmod(0o755)
    home = base / "bob"
    for sub in ("cur", "new", "tmp"):
        (home / "Maildir" / sub).mkdir(parents=True)
    raw = _message(args.mb)
    (home / "Maildir" / "new" / "1.big.bench").write_bytes(raw)
    for p in (home, *home.rglob("*")):
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    d = Dovecot("bob@example.net", "pw", home, nobody.pw_uid, nobody.pw_gid)
    try:
        d.start()
        url = parse_imap_url(d.url(), ca=str(d.ca.ca))
        src = ImapSource(url, "pw")
        (item,) = src.items()
        out = base / "copy.eml"

        def ours() -> None:
            out.unlink(missing_ok=True)
            src.copy(item.id, out)

        peer_client = IMAPClient(
            "127.0.0.1",
            port=d.imaps_port,
            ssl_context=ssl.create_default_context(cafile=str(d.ca.ca)),
        )
        peer_client.login("bob@example.net", "pw")
        peer_client.select_folder("INBOX", readonly=True)
        uid = int(item.id)

        def peer() -> None:
            peer_client.fetch([uid], ["BODY.PEEK[]"])

        size = (item.size or 0) / 1e6
        t_ours, t_peer = _best(ours), _best(peer)
        m_ours, m_peer = _peak(ours), _peak(peer)
        print(f"one {size:.1f} MB message over IMAPS from a private Dovecot (loopback)")
        print(f"  certmail chunked copy to disk: {size / t_ours:7.1f} MB/s, peak {m_ours:6.1f} MiB")
        print(f"  imapclient one FETCH (peer):   {size / t_peer:7.1f} MB/s, peak {m_peer:6.1f} MiB")
        src.close()
        peer_client.logout()
        t_rule = _best(lambda: notarized(raw))
        t_hash = _best(lambda: hashlib.sha256(raw).hexdigest())
        mb = len(raw) / 1e6
        print(f"the notarized-bytes rule on the {mb:.1f} MB LF copy (canonical CRLF + SHA-256)")
        print(f"  certmail notarized():          {mb / t_rule:7.1f} MB/s")
        print(f"  hashlib.sha256 alone (peer):   {mb / t_hash:7.1f} MB/s")
    finally:
        d.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

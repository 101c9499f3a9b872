"""`serve --workers 2`: two processes share one port and one SQLite log."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import httpx

from notary.checkpoint import open_checkpoint
from notary.note import Verifier
from notary.receipt import Receipt
from tests.fixtures.notary import NotaryProcess


def test_two_workers_share_the_log(notary_dir: Path) -> None:
    p = NotaryProcess(notary_dir)
    p.start(extra=["--workers", "2"])
    try:
        token = p.token_for("w@example.test")
        auth = {"Authorization": f"Bearer {token}"}
        verifier = Verifier.from_vkey(p.vkey)
        got: list[Receipt] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            with httpx.Client(base_url=p.url, timeout=30) as c:
                for i in range(30):
                    d = hashlib.sha256(f"{n}-{i}".encode()).hexdigest()
                    r = c.post("/v1/notarize", json={"sha256": d, "message_id": f"<{n}.{i}@w>"},
                               headers=auth)
                    assert r.status_code == 200, r.text
                    with lock:
                        got.append(Receipt.from_json(r.json()))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.index for r in got) == list(range(180))
        for r in got:
            r.verify(verifier)
        cp = open_checkpoint(httpx.get(p.url + "/v1/checkpoint").content, verifier)
        assert cp.size == 180
    finally:
        p.stop()
    assert p.proc is not None and p.proc.returncode == 0  # SIGTERM stopped every worker


def test_workers_refuse_the_relay(notary_dir: Path) -> None:
    import subprocess

    from tests.fixtures.notary import CERTMAIL

    r = subprocess.run([*CERTMAIL, "notary", "serve", "--dir", str(notary_dir), "--http",
                        "127.0.0.1:1", "--smtp", "127.0.0.1:2", "--workers", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "--workers needs the relay elsewhere" in r.stderr

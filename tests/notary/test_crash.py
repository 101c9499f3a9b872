"""Crash safety: SIGKILL the notary while clients submit; nothing acknowledged is lost."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from pathlib import Path

import httpx
import pytest

from notary.checkpoint import Checkpoint, open_checkpoint
from notary.merkle import verify_consistency
from notary.note import Verifier
from notary.receipt import Receipt
from tests.fixtures.notary import NotaryProcess

CLIENTS = 8


@pytest.mark.slow
def test_sigkill_while_submitting_loses_nothing_acknowledged(notary_server: NotaryProcess) -> None:
    token = notary_server.token_for("crash@example.test")
    auth = {"Authorization": f"Bearer {token}"}
    verifier = Verifier.from_vkey(notary_server.vkey)
    received: list[tuple[str, Receipt]] = []
    handed_out: list[bytes] = []  # checkpoints seen by anyone before the crash
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=notary_server.url, timeout=10.0) as c:
            i = 0
            while not stop.is_set():
                digest = hashlib.sha256(f"{n}-{i}".encode()).hexdigest()
                i += 1
                try:
                    r = c.post("/v1/notarize", json={"sha256": digest,
                                                     "message_id": f"<{n}.{i}@crash>"},
                               headers=auth)
                    if r.status_code == 200:
                        with lock:
                            received.append((digest, Receipt.from_json(r.json())))
                    cp = c.get("/v1/checkpoint")
                    if cp.status_code == 200:
                        with lock:
                            handed_out.append(cp.content)
                except httpx.HTTPError:
                    time.sleep(0.01)  # the server is gone; keep trying until told to stop

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(received) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    notary_server.kill()  # SIGKILL mid-flight
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert len(received) >= 300

    notary_server.start()  # a plain restart, no manual step
    with httpx.Client(base_url=notary_server.url, timeout=10.0) as c:
        new = open_checkpoint(c.get("/v1/checkpoint").content, verifier)

        def consistent(old: Checkpoint) -> None:
            r = c.get(f"/v1/proof/consistency?old={old.size}&new={new.size}")
            assert r.status_code == 200
            proof = [base64.b64decode(h) for h in r.json()["proof"]]
            verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)

        old_sizes: dict[int, Checkpoint] = {}
        for note in handed_out:
            cp = open_checkpoint(note, verifier)
            old_sizes[cp.size] = cp
        for digest, receipt in received:
            receipt.verify(verifier)
            cp = open_checkpoint(receipt.proof.checkpoint, verifier)
            assert cp.size <= new.size
            old_sizes[cp.size] = cp
            # and the same entry is proved under the new checkpoint
            r = c.get(f"/v1/messages/{digest}/receipts", headers=auth)
            assert r.status_code == 200, r.text
            (fresh,) = [Receipt.from_json(x) for x in r.json()["receipts"]]
            assert fresh.entry == receipt.entry and fresh.index == receipt.index
            assert open_checkpoint(fresh.proof.checkpoint, verifier) == new
            fresh.verify(verifier)
        for cp in old_sizes.values():
            if cp.size:
                consistent(cp)
        # the log still takes entries after the crash
        r = c.post("/v1/notarize", json={"sha256": "ab" * 32, "message_id": "<after@crash>"},
                   headers=auth)
        assert r.status_code == 200
        Receipt.from_json(r.json()).verify(verifier)


def test_restart_keeps_checkpoint(notary_dir: Path) -> None:
    p = NotaryProcess(notary_dir)
    p.start()
    token = p.token_for("r@example.test")
    r = httpx.post(p.url + "/v1/notarize", json={"sha256": "cd" * 32, "message_id": "<r@x>"},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    before = httpx.get(p.url + "/v1/checkpoint").content
    p.stop()
    p.start()
    try:
        assert httpx.get(p.url + "/v1/checkpoint").content == before
    finally:
        p.stop()

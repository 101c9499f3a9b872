"""`serve --workers 2` runs one sequencer per log: the worker holding `.sequencer.lock`
commits every batch, the other forwards its entries over `.sequencer.sock`, and when
the sequencing worker is SIGKILLed the other takes over (notary/sequencer_share.py)."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from notary.checkpoint import open_checkpoint
from notary.config import load_config
from notary.note import Verifier
from notary.receipt import Receipt
from notary.storage import open_storage
from tests.fixtures.notary import NotaryProcess, init_notary_dir
from tests.fixtures.workers import counter_of, metrics_dir, worker_pids
from tests.notary.storage_backends import BACKENDS, pg_url

ENTRIES = "certmail_log_entries_total"
FORWARDED = "certmail_sequencer_forwarded_total"
#: A client that opens a new connection for each request (so both workers answer).
NEW_CONNECTIONS = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture(params=BACKENDS)
def log_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A notary directory whose log is on SQLite or (with the DSN) PostgreSQL."""
    if request.param == "sqlite":
        yield init_notary_dir(tmp_path / "notary")
        return
    schema = "w_" + uuid.uuid4().hex[:16]
    yield init_notary_dir(tmp_path / "notary", database=pg_url(schema))
    from notary.storage.postgres import PostgresStorage
    from tests.notary.storage_backends import require_pg

    pg = PostgresStorage(require_pg(), schema=schema)
    pg.drop_schema()
    pg.close()


def leader_of(directory: Path, workers: list[int], timeout: float = 5.0) -> int:
    """The worker whose pid the lock file names, once it is one of ``workers``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = (
            (directory / ".sequencer.lock").read_text()
            if (directory / ".sequencer.lock").exists()
            else ""
        )
        if text.strip().isdigit() and int(text) in workers:
            return int(text)
        time.sleep(0.05)
    raise AssertionError(f"no worker of {workers} leads")


def notarize_spread(url: str, token: str, tag: str, clients: int, each: int) -> list[Receipt]:
    """clients x each notarizations, each on a new connection (so both workers answer)."""
    got: list[Receipt] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30, limits=NEW_CONNECTIONS) as c:
            for i in range(each):
                d = hashlib.sha256(f"{tag}-{n}-{i}".encode()).hexdigest()
                r = c.post(
                    "/v1/notarize",
                    headers={"Authorization": f"Bearer {token}"},
                    json={"sha256": d, "message_id": f"<{tag}.{n}.{i}@w>"},
                )
                assert r.status_code == 200, r.text
                with lock:
                    got.append(Receipt.from_json(r.json()))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def check_log(directory: Path, acked: list[Receipt], verifier: Verifier) -> int:
    """The log is 0..n-1 with no entry twice, and holds every acknowledged receipt's entry
    at its index, each receipt verifying; returns n."""
    storage = open_storage(load_config(directory).database)
    try:
        cp = storage.latest_checkpoint()
        assert cp is not None
        entries = list(storage.iter_entries())
    finally:
        storage.close()
    assert [e.index for e in entries] == list(range(cp.size))
    assert len({e.entry for e in entries}) == len(entries)  # nothing logged twice
    for r in acked:
        r.verify(verifier)
        assert entries[r.index].entry == r.entry
    assert len({r.index for r in acked}) == len(acked)
    return cp.size


def test_both_workers_feed_one_sequencer(log_dir: Path) -> None:
    p = NotaryProcess(log_dir)
    p.start(extra=["--workers", "2"])
    try:
        assert p.proc is not None
        workers = worker_pids(p.proc.pid)
        leader = leader_of(log_dir, workers)
        (follower,) = [w for w in workers if w != leader]
        mdir = metrics_dir(leader)
        token = p.token_for("one@example.test")
        got: list[Receipt] = []
        for round_ in range(5):  # until the follower answered some (accept() spreads them)
            got += notarize_spread(p.url, token, f"r{round_}", clients=4, each=10)
            if counter_of(mdir, follower, FORWARDED) > 0:
                break
        forwarded = counter_of(mdir, follower, FORWARDED)
        assert 0 < forwarded < len(got)
        # One sequencer committed every entry, whichever worker answered.
        assert counter_of(mdir, leader, ENTRIES) == len(got)
        assert counter_of(mdir, follower, ENTRIES) == 0
        assert sorted(r.index for r in got) == list(range(len(got)))
        verifier = Verifier.from_vkey(p.vkey)
        cp = open_checkpoint(httpx.get(p.url + "/v1/checkpoint").content, verifier)
        assert cp.size == len(got)
    finally:
        p.stop()
    assert p.proc is not None and p.proc.returncode == 0
    assert not (log_dir / ".sequencer.sock").exists()  # the leader removed its socket
    assert check_log(log_dir, got, verifier) == len(got)


def test_sigkill_of_the_sequencing_worker_mid_load(log_dir: Path) -> None:
    """Clients notarize through both workers, retrying what is not answered 200; the
    sequencing worker is SIGKILLed: the other takes over, a request caught in flight is
    answered 503 with Retry-After (or its connection dies), and every acknowledged
    entry is in the log once, at its receipt's index."""
    p = NotaryProcess(log_dir)
    p.start(extra=["--workers", "2"])
    acked: list[Receipt] = []
    unavailable: list[httpx.Response] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        assert p.proc is not None
        workers = worker_pids(p.proc.pid)
        leader = leader_of(log_dir, workers)
        token = p.token_for("kill@example.test")

        def client(n: int) -> None:
            with httpx.Client(base_url=p.url, timeout=10, limits=NEW_CONNECTIONS) as c:
                i = 0
                while not stop.is_set():
                    d = hashlib.sha256(f"k-{n}-{i}".encode()).hexdigest()
                    try:
                        r = c.post(
                            "/v1/notarize",
                            headers={"Authorization": f"Bearer {token}"},
                            json={"sha256": d, "message_id": f"<k.{n}.{i}@w>"},
                        )
                    except httpx.HTTPError:  # the killed worker's own connection
                        continue
                    with lock:
                        if r.status_code == 200:
                            acked.append(Receipt.from_json(r.json()))
                            i += 1
                        else:
                            unavailable.append(r)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        while len(acked) < 60:
            time.sleep(0.02)
        os.kill(leader, signal.SIGKILL)
        (survivor,) = [w for w in workers if w != leader]
        assert leader_of(log_dir, [survivor], timeout=8) == survivor
        seen = len(acked)
        while len(acked) < seen + 60:
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join()
        # The survivor sequences now: its own counter has the entries after the kill.
        assert counter_of(metrics_dir(survivor), survivor, ENTRIES) >= 1
        for r in unavailable:
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            assert r.json()["error"] == "unavailable"
        verifier = Verifier.from_vkey(p.vkey)
    finally:
        stop.set()
        p.stop()
    size = check_log(log_dir, acked, verifier)
    assert size >= len(acked) >= 120

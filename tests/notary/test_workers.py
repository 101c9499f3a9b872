"""`serve --workers 2`: two processes share one port and one SQLite log."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import httpx

from notary.checkpoint import open_checkpoint
from notary.note import Verifier
from tests.fixtures.notary import NotaryProcess, notarize_concurrently, serve_command
from tests.fixtures.workers import counter_of, metrics_dir, sample, worker_pids


def test_two_workers_share_the_log(notary_dir: Path) -> None:
    p = NotaryProcess(notary_dir)
    p.start(extra=["--workers", "2"])
    try:
        token = p.token_for("w@example.test")
        verifier = Verifier.from_vkey(p.vkey)
        got = notarize_concurrently([p.url], token, threads=6, each=30, tag="w")
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

    r = subprocess.run(
        serve_command(
            notary_dir, "--http", "127.0.0.1:1", "--smtp", "127.0.0.1:2", "--workers", "2"
        ),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "--workers needs the relay elsewhere" in r.stderr


def _fresh_connections() -> httpx.Client:
    """A client that opens a new connection per request (as ``httpx.get`` does) without
    building an SSL context per request as ``httpx.get`` does."""
    return httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


def _notarize_spread(url: str, auth: dict[str, str], tag: str, clients: int, each: int) -> None:
    """clients x each notarizations, each on a new connection (so both workers answer)."""

    def client(n: int) -> None:
        with _fresh_connections() as http:
            for i in range(each):
                d = hashlib.sha256(f"{tag}-{n}-{i}".encode()).hexdigest()
                r = http.post(
                    url + "/v1/notarize",
                    headers=auth,
                    json={"sha256": d, "message_id": f"<{tag}.{n}.{i}@w>"},
                )
                assert r.status_code == 200, r.text

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_metrics_add_up_across_workers(notary_dir: Path) -> None:
    p = NotaryProcess(notary_dir)
    p.start(extra=["--workers", "2"])
    try:
        assert p.proc is not None
        workers = worker_pids(p.proc.pid)
        assert len(workers) == 2
        directory = metrics_dir(workers[0])
        assert metrics_dir(workers[1]) == directory and directory.is_dir()
        token = p.token_for("m@example.test")
        auth = {"Authorization": f"Bearer {token}"}
        _notarize_spread(p.url, auth, "a", clients=4, each=10)
        # Both workers answered some of the 40, but one sequencer committed them all:
        # its file alone counts them, and any worker's /metrics answers the total.
        per_worker = [counter_of(directory, w, "certmail_log_entries_total") for w in workers]
        assert sorted(per_worker) == [0, 40]
        with _fresh_connections() as http:
            for _ in range(8):  # whichever worker answers /metrics, it answers the totals
                text = http.get(p.url + "/metrics").text
                assert sample(text, "certmail_log_entries_total") == 40
                assert sample(text, "certmail_sequencer_batch_size_sum") == 40
                assert sample(text, "certmail_log_tree_size") == 40
                assert sample(text, "certmail_log_failed_batches_total") == 0
    finally:
        p.stop()
    assert p.proc is not None and p.proc.returncode == 0
    assert not directory.exists()  # the serve's private metrics directory is removed


def test_a_killed_worker_is_replaced_and_its_counts_kept(notary_dir: Path) -> None:
    import os
    import signal
    import time

    p = NotaryProcess(notary_dir)
    p.start(extra=["--workers", "2"])
    try:
        assert p.proc is not None
        token = p.token_for("k@example.test")
        auth = {"Authorization": f"Bearer {token}"}
        _notarize_spread(p.url, auth, "before", clients=2, each=8)
        old = worker_pids(p.proc.pid)
        os.kill(old[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = worker_pids(p.proc.pid)
            if len(now) == 2 and old[0] not in now:
                break
            time.sleep(0.2)
        assert len(now) == 2 and old[0] not in now and old[1] in now
        _notarize_spread(p.url, auth, "after", clients=2, each=8)
        text = httpx.get(p.url + "/metrics", timeout=30).text
        assert sample(text, "certmail_log_entries_total") == 32
        assert sample(text, "certmail_log_tree_size") == 32
    finally:
        p.stop()
    assert p.proc is not None and p.proc.returncode == 0


def test_workers_port_in_use_is_one_error_line(notary_dir: Path) -> None:
    import socket
    import subprocess

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            serve_command(notary_dir, "--http", f"127.0.0.1:{port}", "--workers", "2"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1 and "could not serve on" in r.stderr
    assert "serving" not in r.stderr and "Traceback" not in r.stderr


def test_two_workers_run_one_cosigner(notary_dir: Path, tmp_path: Path) -> None:
    """`--workers 2` with a witness: one worker cosigns, so the (real, loopback)
    witness is asked once per checkpoint, never twice; both workers answer
    `GET /checkpoint` with the cosignature."""
    import asyncio
    import time
    from collections import Counter

    import uvicorn

    from notary.cosigning import add_witness
    from notary.witness import Witness, add_log, asgi_app, init_witness
    from tests.fixtures.notary import free_port

    wdir = tmp_path / "witness"
    cosigner = init_witness(wdir, "witness.test/w1")
    p = NotaryProcess(notary_dir)
    add_log(wdir, p.vkey)
    witness = Witness(wdir)
    inner = asgi_app(witness)
    asked: Counter[bytes] = Counter()

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await inner(scope, receive, send)
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        asked[body.split(b"\n\n", 1)[-1]] += 1  # per checkpoint note asked about
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await inner(scope, replay, send)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(counting, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    add_witness(notary_dir, f"http://127.0.0.1:{port}", cosigner.vkey(), None)
    p.start(extra=["--workers", "2"])
    try:
        token = p.token_for("w@example.test")
        http = _fresh_connections()
        for i in range(3):
            notarize_concurrently([p.url], token, threads=1, each=2, tag=f"c{i}")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                cosigned = http.get(p.url + "/checkpoint/cosigned")
                if cosigned.status_code == 200 and b"\n%d\n" % (2 * i + 2) in cosigned.content:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("the checkpoint was never cosigned")
        time.sleep(3)  # a second cosigner would have asked by now (1 s rounds)
        assert asked and set(asked.values()) == {1}, asked
        notes = {http.get(p.url + "/checkpoint").content for _ in range(20)}
        http.close()
        assert len(notes) == 1 and notes == {cosigned.content}  # both workers: cosigned
    finally:
        p.stop()
        server.should_exit = True
        thread.join(10)
        witness.close()

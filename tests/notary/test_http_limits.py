"""Attacks on the HTTP server of a real `notary serve` (loopback, bounded in count and time).

Issue 10 item 5: idle connections from one peer must not starve others, a
client that drips its headers (slowloris) is closed, the soft descriptor limit
is raised at start, and an oversized chunked body is a 413 JSON error.
"""

from __future__ import annotations

import hashlib
import re
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.notary import CERTMAIL, NotaryProcess

pytestmark = pytest.mark.timeout(120)


def set_limits(directory: Path, **values: float) -> None:
    path = directory / "notary.toml"
    text = path.read_text()
    for k, v in values.items():
        text, n = re.subn(rf"^{k} = .*$", f"{k} = {v!r}", text, flags=re.M)
        assert n == 1, k
    path.write_text(text)


@pytest.fixture
def limited(notary_dir: Path) -> Iterator[NotaryProcess]:
    set_limits(notary_dir, http_max_connections_per_peer=20, http_header_timeout=1.0)
    p = NotaryProcess(notary_dir)
    p.start()
    yield p
    p.stop()


def connect_from(source: str, port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return s


def read_until_closed(s: socket.socket, limit: float = 30.0) -> bytes:
    """What the server sends until it closes (bounded: b"<open>" if it never does)."""
    s.settimeout(0.5)
    got = b""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            chunk = s.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk
    return got + b"<open>"


def test_idle_connections_from_one_peer_do_not_starve_others(limited: NotaryProcess) -> None:
    p = limited
    idle = [connect_from("127.0.0.2", p.port) for _ in range(300)]
    try:
        # The first 20 are held (idle); the other 280 are refused with a 503 and closed.
        refused = [read_until_closed(s) for s in idle[20:40]]
        for r in refused:
            assert r.startswith(b"HTTP/1.1 503"), r[:200]
            assert b'"too_many_connections"' in r
        with httpx.Client(base_url=p.url, timeout=10) as c:  # another peer: 127.0.0.1
            for _ in range(5):
                assert c.get("/healthz").status_code == 200
    finally:
        for s in idle:
            s.close()


def test_idle_connection_closed_after_header_timeout(limited: NotaryProcess) -> None:
    s = connect_from("127.0.0.1", limited.port)
    try:
        got = read_until_closed(s)
    finally:
        s.close()
    assert got.startswith(b"HTTP/1.1 408"), got[:200]


def test_slowloris_client_is_closed(limited: NotaryProcess) -> None:
    s = connect_from("127.0.0.1", limited.port)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        s.settimeout(0.2)
        closed = False
        for i in range(150):  # one header line every 0.2 s, never the blank line
            try:
                s.sendall(f"X-Drip-{i}: a\r\n".encode())
                data = s.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if not data or data.startswith(b"HTTP/1.1 408"):
                closed = True
                break
        assert closed, "the server kept a slowloris connection open"
    finally:
        s.close()
    with httpx.Client(base_url=limited.url, timeout=10) as c:
        assert c.get("/healthz").status_code == 200


def test_serve_raises_the_soft_descriptor_limit(notary_dir: Path) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Start below the hard limit, whatever it is, so a raise is always observable.
    low = 256 if hard == resource.RLIM_INFINITY else min(256, hard // 2)
    p = NotaryProcess(notary_dir)
    cmd = [*CERTMAIL, "notary", "serve", "--dir", str(notary_dir), "--http", f"127.0.0.1:{p.port}"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)),
    )
    try:
        with httpx.Client(timeout=1) as http:  # one client: httpx.get builds an SSL context
            for _ in range(300):
                try:
                    if http.get(p.url + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
    finally:
        proc.terminate()
        proc.wait(10)
    (line,) = [x for x in limits.splitlines() if x.startswith("Max open files")]
    got_soft, got_hard = line.split()[3:5]
    assert got_soft == got_hard != str(low)


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    yield b'{"items": ['
    while sent < total:
        yield b" " * size
        sent += size
    yield b"]}"


@pytest.mark.parametrize("reference_only", ["0", "1"])
@pytest.mark.parametrize("path", ["/v1/notarize/batch", "/v1/notarize"])
def test_oversized_chunked_body_is_413(
    notary_dir: Path, monkeypatch: pytest.MonkeyPatch, reference_only: str, path: str
) -> None:
    monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", reference_only)
    p = NotaryProcess(notary_dir)
    p.start()
    try:
        token = p.token_for("big@example.test")
        with httpx.Client(base_url=p.url, timeout=30) as c:
            r = c.post(
                path,
                content=chunks(2 << 20),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            assert r.status_code == 413, r.text
            assert r.json()["error"] == "too_large"
            d = hashlib.sha256(b"after").hexdigest()
            ok = c.post(
                "/v1/notarize",
                json={"sha256": d, "message_id": "<a@b>"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert ok.status_code == 200, ok.text
    finally:
        p.stop()
    assert "Traceback" not in p.log_path.read_text()


def test_limits_hold_in_every_worker(notary_dir: Path) -> None:
    """`--workers 2`: the spawned workers serve with the same limits (the config is pickled),
    the per-peer cap shared between them (3 each of 6)."""
    set_limits(notary_dir, http_max_connections_per_peer=6, http_header_timeout=1.0)
    p = NotaryProcess(notary_dir)
    p.start(extra=["--workers", "2"])
    try:
        idle = [connect_from("127.0.0.2", p.port) for _ in range(40)]
        try:
            answers = [read_until_closed(s) for s in idle]
        finally:
            for s in idle:
                s.close()
        # each worker holds at most 3 from the peer (and closes them after the timeout):
        # together no more than the cap of 6
        assert sum(a.startswith(b"HTTP/1.1 503") for a in answers) >= 40 - 6
        assert all(a.startswith((b"HTTP/1.1 503", b"HTTP/1.1 408")) for a in answers)
        assert httpx.get(p.url + "/healthz", timeout=10).status_code == 200
    finally:
        p.stop()

"""``certmail notary monitor``: a real notary growing, then a split view, a rollback,
tampered tiles and a bad signature, each caught with both checkpoints named.

The forked log is a copy of the real notary's directory (same key, same origin)
served by a second real ``certmail notary serve``: what an operator who shows
different trees to different people would do. Tampered tiles and signatures come
from a small proxy in front of the real notary.
"""

from __future__ import annotations

import http.server
import json
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notary.note import Signer
from tests.fixtures.cli import cli, one_line_error
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.witness import grow_log

Tamper = Callable[[str, bytes], bytes]


def _monitor(url: str, vkey: str, state: Path) -> tuple[int, Any, str]:
    p = cli("notary", "monitor", url, "--vkey", vkey, "--state", str(state), "--json")
    assert p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout), p.stderr


@pytest.fixture
def proxy() -> Iterator[Callable[[str, Tamper], str]]:
    """Start a loopback proxy to a log URL that passes every answer through ``tamper``."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(upstream: str, tamper: Tamper) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                r = httpx.get(upstream + self.path, timeout=30)
                body = tamper(self.path, r.content) if r.status_code == 200 else r.content
                self.send_response(r.status_code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_monitor_follows_a_growing_log_and_catches_a_split_view(
    notary_dir: Path, tmp_path: Path
) -> None:
    state = tmp_path / "monitor"
    real = NotaryProcess(notary_dir)
    real.start()
    forked: NotaryProcess | None = None
    try:
        token = real.token_for("alice@example.test")
        vkey = real.vkey
        grow_log(real, token, "a", 300)
        code, out, _ = _monitor(real.url, vkey, state)
        assert code == 0 and out["status"] == "first" and out["new"]["size"] == 300
        state_file = Path(out["state"])
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert json.loads(state_file.read_text())["size"] == 300
        code, out, _ = _monitor(real.url, vkey, state)
        assert code == 0 and out["status"] == "unchanged"

        # the operator keeps a second copy of its log (same key, same origin) from here
        real.stop()
        shutil.copytree(notary_dir, tmp_path / "fork")
        real.start()
        grow_log(real, token, "b", 200)
        code, out, _ = _monitor(real.url, vkey, state)
        assert code == 0 and out["status"] == "grew"
        assert (out["old"]["size"], out["new"]["size"]) == (300, 500)
        seen = json.loads(state_file.read_text())

        forked = NotaryProcess(tmp_path / "fork", database=f"sqlite:///{tmp_path}/fork/notary.db")
        forked.start()
        # the copy still shows size 300: a rollback
        code, out, err = _monitor(forked.url, vkey, state)
        assert code == 3 and out["error"] == "rollback"
        assert (out["old"]["size"], out["new"]["size"]) == (500, 300)
        assert out["old"]["checkpoint"] == seen["checkpoint"]
        assert "rollback" in err and "size 300" in err
        evidence = json.loads(Path(out["evidence"]).read_text())
        assert evidence["old"] == out["old"] and evidence["new"] == out["new"]
        # the copy grows differently to the same size: a fork
        grow_log(forked, token, "c", 200)
        p = cli("notary", "monitor", forked.url, "--vkey", vkey, "--state", str(state))
        assert p.returncode == 3
        assert one_line_error(p).startswith(
            "certmail: error: fork: two checkpoints of size 500 with different roots"
        )
        assert "--- last verified checkpoint ---" in p.stderr and seen["checkpoint"] in p.stderr
        assert "--- now served checkpoint ---" in p.stderr
        # and beyond it: a larger tree that does not extend the one verified
        grow_log(forked, token, "d", 10)
        code, out, _ = _monitor(forked.url, vkey, state)
        assert code == 3 and out["error"] == "inconsistent"
        assert (out["old"]["size"], out["new"]["size"]) == (500, 510)
        # nothing the fork showed became the state; the real log still checks out
        assert json.loads(state_file.read_text()) == seen
        grow_log(real, token, "e", 1)
        code, out, _ = _monitor(real.url, vkey, state)
        assert code == 0 and out["status"] == "grew" and out["new"]["size"] == 501
    finally:
        real.stop()
        if forked is not None:
            forked.stop()


def test_monitor_refuses_a_bad_signature_and_tampered_tiles(
    notary_server: NotaryProcess, proxy: Callable[[str, Tamper], str], tmp_path: Path
) -> None:
    token = notary_server.token_for("alice@example.test")
    grow_log(notary_server, token, "a", 700)
    vkey = notary_server.vkey

    def bad_signature(path: str, body: bytes) -> bytes:
        if path != "/checkpoint":
            return body
        text, sig = body.rsplit(b"\n\xe2\x80\x94 ", 1)  # the last signature line
        name, b64 = sig.split(b" ", 1)
        flipped = b64[:10] + (b"A" if b64[10:11] != b"A" else b"B") + b64[11:]
        return text + b"\n\xe2\x80\x94 " + name + b" " + flipped

    code, out, err = _monitor(proxy(notary_server.url, bad_signature), vkey, tmp_path / "s1")
    assert code == 3 and out["error"] == "bad_signature", err
    assert "does not verify" in err
    assert not any((tmp_path / "s1").glob("*.json"))  # nothing kept

    def bad_tile(path: str, body: bytes) -> bytes:
        return bytes([body[0] ^ 1]) + body[1:] if path == "/tile/0/002.p/188" else body

    code, out, err = _monitor(proxy(notary_server.url, bad_tile), vkey, tmp_path / "s2")
    assert code == 3 and out["error"] == "inconsistent", err
    assert "do not reproduce the root" in out["message"]

    # another key with the log's name
    other = Signer.generate(vkey.split("+")[0]).verifier().vkey()
    code, out, _ = _monitor(notary_server.url, other, tmp_path / "s3")
    assert code == 3 and out["error"] == "bad_signature"


def test_monitor_errors_are_one_line(tmp_path: Path, notary_server: NotaryProcess) -> None:
    def run(url: str, vkey: str) -> subprocess.CompletedProcess[str]:
        return cli("notary", "monitor", url, "--vkey", vkey, "--state", str(tmp_path))

    vkey = notary_server.vkey
    p = run("http://127.0.0.1:9", vkey)
    assert p.returncode == 5
    assert one_line_error(p).startswith("certmail: error: cannot read http://127.0.0.1:9/")
    p = run(notary_server.url, "not a key")
    assert p.returncode == 1
    assert one_line_error(p).startswith("certmail: error: --vkey is not a verifier key")
    # a damaged state is never silently replaced
    assert run(notary_server.url, vkey).returncode == 0
    (state_file,) = tmp_path.glob("*.json")
    state_file.write_text("{")
    p = run(notary_server.url, vkey)
    assert p.returncode == 1 and "damaged" in one_line_error(p)

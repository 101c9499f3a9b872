"""Outside time-stamps over checkpoints end to end (issue 14 item 2): a real notary
anchoring with a second, independent TSA (``openssl ts -reply``, its own openssl CA:
tests/fixtures/openssl_tsa.py), ``proof export`` (format 4), ``proof verify
--anchor-root``, VERIFY.txt's ``openssl ts -verify`` commands, tampering, a TSA down."""

from __future__ import annotations

import json
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

from certmail.bundle import read_members, write_members
from certmail.bundle.layout import ANCHOR_TOKEN
from tests.fixtures.cli import cli, one_line_error, run
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.openssl_tsa import OpensslTsa
from tests.fixtures.proof import send_deal as _send
from tests.fixtures.proof import verify_pinned
from tests.fixtures.witness import grow_log


def _wait_anchored(url: str, size: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=10) as http:  # one client: httpx.get builds an SSL context
        while time.monotonic() < deadline:
            r = http.get(f"{url}/v1/anchors", params={"size": size})
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
            assert r.status_code == 404, r.text
            time.sleep(0.1)
    raise AssertionError(f"no checkpoint of size {size} or more was anchored")


def _size(url: str) -> int:
    return int(httpx.get(url + "/checkpoint", timeout=10).text.split("\n")[1])


def _verify(c: Any, bundle: Path, real: NotaryProcess, *extra: str) -> Any:
    return verify_pinned(c.bob, real, bundle, bundle.parent, "--allow-partial", *extra)


def test_anchors_export_verify_tamper_and_tsa_down(
    correspondents: Any, notary_dir: Path, tmp_path: Path
) -> None:
    c = correspondents
    tsa = OpensslTsa(tmp_path / "outside-tsa").start()
    other = OpensslTsa(tmp_path / "other-tsa", name="Another TSA")  # never anchors
    d = str(notary_dir)
    p = cli(
        "notary", "anchors", "add", tsa.url, "--root", str(tsa.root), "--every", "1", "--dir", d
    )
    assert p.returncode == 0, p.stderr
    p = cli("notary", "anchors", "add", tsa.url, "--root", str(tsa.root), "--dir", d)
    assert p.returncode != 0 and "configured already" in one_line_error(p)
    p = cli(
        "notary",
        "anchors",
        "add",
        tsa.url + "x",
        "--root",
        str(notary_dir / "notary.toml"),
        "--dir",
        d,
    )
    assert p.returncode != 0 and "no PEM certificate" in one_line_error(p)
    listed = json.loads(cli("--json", "notary", "anchors", "list", "--dir", d).stdout)["anchors"]
    assert [a["url"] for a in listed] == [tsa.url] and listed[0]["every"] == 1
    real = NotaryProcess(notary_dir)
    try:
        real.start()
        token = real.token_for(c.alice.email)
        c.settings(c.alice, notary_url=real.url, notary_token=token)
        sent = _send(c, tmp_path, "--no-encrypt")
        anchored = _wait_anchored(real.url, _size(real.url))
        assert [t["tsa"] for t in anchored["tokens"]] == [listed[0]["id"]]
        bundle = tmp_path / "anchored.zip"
        p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle))
        assert p.returncode == 0, p.stderr

        # a TSA down delays anchoring, never the log
        tsa.stop()
        before = tsa.queries
        grow_log(real, token, "down", 3)  # answered: the log does not wait for the TSA
        grown = _size(real.url)
        time.sleep(2)
        r = httpx.get(f"{real.url}/v1/anchors", params={"size": grown}, timeout=10)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        tsa.start()  # back on the same port: anchoring catches up
        assert _wait_anchored(real.url, grown)["size"] >= grown
        assert tsa.queries > before
    finally:
        real.stop()
        tsa.stop()

    files = read_members(bundle)
    assert json.loads(files["bundle.json"]) == {"format": 4}
    tokens = sorted(n for n in files if ANCHOR_TOKEN.fullmatch(n))
    assert tokens and "anchor-roots.pem" in files

    p = _verify(c, bundle, real, "--anchor-root", str(tsa.root), "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    checks = {ch["item"]: ch for ch in report["checks"]}
    assert checks["outside time-stamps"]["status"] == "ok"
    assert report["verdict"] == "valid"
    p = _verify(c, bundle, real, "--json")  # no --anchor-root: valid, the check does not apply
    assert p.returncode == 0, p.stderr
    checks = {ch["item"]: ch for ch in json.loads(p.stdout)["checks"]}
    assert checks["outside time-stamps"]["status"] == "skipped"
    p = _verify(c, bundle, real, "--anchor-root", str(other.root))  # not from a trusted TSA
    assert p.returncode == 3 and tokens[0] in one_line_error(p)

    # one flipped byte in a token, or in the checkpoint it covers: refused, naming the file
    size = ANCHOR_TOKEN.fullmatch(tokens[0])[1]  # type: ignore[index]
    for name in (tokens[0], f"evidence/anchor-{size}.checkpoint"):
        data = bytearray(files[name])
        data[len(data) // 2] ^= 0x01
        bad = tmp_path / "bad.zip"
        bad.write_bytes(write_members({**files, name: bytes(data)}))
        p = _verify(c, bad, real, "--anchor-root", str(tsa.root))
        assert p.returncode == 3 and name in one_line_error(p), p.stderr

    # VERIFY.txt's openssl commands succeed on the unzipped bundle (stock openssl)
    work = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(work)
    text = (work / "VERIFY.txt").read_text()
    assert "existed then" in text and "existed then" in (work / "certificate.html").read_text()
    cmds = [ln.strip() for ln in text.splitlines() if ln.startswith("    openssl ts -verify")]
    anchor_cmds = [cmd for cmd in cmds if "anchor-" in cmd]
    assert len(anchor_cmds) == len(tokens)
    for cmd in anchor_cmds:
        r = subprocess.run(cmd, shell=True, cwd=work, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "Verification: OK" in r.stdout, cmd + r.stdout + r.stderr

"""The format 4 golden bundles (tests/vectors/proof-bundle/v4, outside time-stamps over
checkpoints) verify forever with the outside TSA's root, their VERIFY.txt's
``openssl ts -verify`` commands succeed, and a flipped token byte fails naming the file
(test_bundle_golden.py runs the checks every golden version shares)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from certmail.bundle import read_members, write_members
from certmail.bundle.layout import ANCHOR_TOKEN
from tests.fixtures.cli import clean_env, cli, one_line_error

V4 = Path(__file__).resolve().parent.parent / "vectors" / "proof-bundle" / "v4"


def _verify(bundle: Path, tmp_path: Path, *extra: str) -> object:
    pinned = ["--vkey", str(V4 / "notary.vkey"), "--tsa-root", str(V4 / "tsa-root.pem")]
    args = ["proof", "verify", str(bundle), *pinned, "--anchor-root", str(V4 / "anchor-root.pem")]
    return cli(*args, "--allow-partial", *extra, env=clean_env(tmp_path))


@pytest.mark.parametrize("kind", ["signed-ack", "encrypted-ack"])
def test_golden_v4_verifies_with_its_outside_tsa(kind: str, tmp_path: Path) -> None:
    bundle = V4 / f"{kind}.certmail-proof.zip"
    p = _verify(bundle, tmp_path, "--json")
    assert p.returncode == 0, p.stderr  # type: ignore[attr-defined]
    report = json.loads(p.stdout)  # type: ignore[attr-defined]
    assert report["format"] == 4
    checks = {c["item"]: c for c in report["checks"]}
    assert checks["outside time-stamps"]["status"] == "ok"
    assert checks["documents"]["status"] == "ok"
    work = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(work)
    (work / "anchor-roots.pem").write_bytes((V4 / "anchor-root.pem").read_bytes())  # pinned
    cmds = [
        ln.strip()
        for ln in (work / "VERIFY.txt").read_text().splitlines()
        if ln.startswith("    openssl ts -verify") and "anchor-" in ln
    ]
    assert cmds
    for cmd in cmds:
        r = subprocess.run(cmd, shell=True, cwd=work, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "Verification: OK" in r.stdout, cmd + r.stdout + r.stderr
    files = read_members(bundle)
    name = sorted(n for n in files if ANCHOR_TOKEN.fullmatch(n))[0]
    data = bytearray(files[name])
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad.zip"
    bad.write_bytes(write_members({**files, name: bytes(data)}))
    p = _verify(bad, tmp_path)
    assert p.returncode == 3  # type: ignore[attr-defined]
    assert name in one_line_error(p)

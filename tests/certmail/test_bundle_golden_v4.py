"""The format 4 golden bundles (tests/vectors/proof-bundle/v4, outside time-stamps over
checkpoints) verify forever with the outside TSA's root, their VERIFY.txt's
``openssl ts -verify`` commands succeed, and a flipped token byte fails naming the file
(test_bundle_golden.py runs the checks every golden version shares)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from certmail.bundle import read_members
from certmail.bundle.layout import ANCHOR_TOKEN
from tests.fixtures.golden import GOLDEN, flipped_fails_naming, golden_checks

V4 = GOLDEN / "v4"
ANCHOR_ROOT = ["--anchor-root", str(V4 / "anchor-root.pem")]


@pytest.mark.parametrize("kind", ["signed-ack", "encrypted-ack"])
def test_golden_v4_verifies_with_its_outside_tsa(kind: str, tmp_path: Path) -> None:
    bundle = V4 / f"{kind}.certmail-proof.zip"
    report, checks = golden_checks("v4", bundle, tmp_path, *ANCHOR_ROOT)
    assert report["format"] == 4
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
    flipped_fails_naming("v4", bundle, tmp_path, name, len(files[name]) // 2, *ANCHOR_ROOT)

"""The format 3 golden bundles (tests/vectors/proof-bundle/v3, cosigned checkpoints) verify
forever with their witnesses' keys and a quorum, and a flipped cosignature byte fails
naming the file (test_bundle_golden.py runs the checks every golden version shares)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from certmail.bundle import read_members, write_members
from tests.fixtures.cli import clean_env, cli, one_line_error

V3 = Path(__file__).resolve().parent.parent / "vectors" / "proof-bundle" / "v3"


def _verify(bundle: Path, tmp_path: Path, *extra: str) -> object:
    pinned = ["--vkey", str(V3 / "notary.vkey"), "--tsa-root", str(V3 / "tsa-root.pem")]
    witnesses = ["--witness", str(V3 / "witness-1.vkey"), "--witness", str(V3 / "witness-2.vkey")]
    args = ["proof", "verify", str(bundle), *pinned, *witnesses, "--quorum", "2"]
    return cli(*args, "--allow-partial", *extra, env=clean_env(tmp_path))


@pytest.mark.parametrize("kind", ["signed-ack", "encrypted-ack"])
def test_golden_v3_verifies_with_its_witnesses(kind: str, tmp_path: Path) -> None:
    bundle = V3 / f"{kind}.certmail-proof.zip"
    p = _verify(bundle, tmp_path, "--json")
    assert p.returncode == 0, p.stderr  # type: ignore[attr-defined]
    report = json.loads(p.stdout)  # type: ignore[attr-defined]
    assert report["format"] == 3
    checks = {c["item"]: c for c in report["checks"]}
    assert checks["cosignatures"]["status"] == "ok"
    assert "witness.test/w1, witness.test/w2 (2 of 2, quorum 2)" in checks["cosignatures"]["detail"]
    files = read_members(bundle)
    (name,) = [n for n in files if n.endswith(".cosigned")]
    data = bytearray(files[name])
    data[-10] ^= 0x01  # inside the last cosignature's base64
    bad = tmp_path / "bad.zip"
    bad.write_bytes(write_members({**files, name: bytes(data)}))
    p = _verify(bad, tmp_path)
    assert p.returncode == 3  # type: ignore[attr-defined]
    assert name in one_line_error(p)

"""The format 3 golden bundles (tests/vectors/proof-bundle/v3, cosigned checkpoints) verify
forever with their witnesses' keys and a quorum, and a flipped cosignature byte fails
naming the file (test_bundle_golden.py runs the checks every golden version shares)."""

from __future__ import annotations

from pathlib import Path

import pytest

from certmail.bundle import read_members
from tests.fixtures.golden import GOLDEN, flipped_fails_naming, golden_checks

V3 = GOLDEN / "v3"
WITNESSES = ["--witness", str(V3 / "witness-1.vkey"), "--witness", str(V3 / "witness-2.vkey")]


@pytest.mark.parametrize("kind", ["signed-ack", "encrypted-ack"])
def test_golden_v3_verifies_with_its_witnesses(kind: str, tmp_path: Path) -> None:
    bundle = V3 / f"{kind}.certmail-proof.zip"
    report, checks = golden_checks("v3", bundle, tmp_path, *WITNESSES, "--quorum", "2")
    assert report["format"] == 3
    assert checks["cosignatures"]["status"] == "ok"
    assert "witness.test/w1, witness.test/w2 (2 of 2, quorum 2)" in checks["cosignatures"]["detail"]
    (name,) = [n for n in read_members(bundle) if n.endswith(".cosigned")]
    # -10: inside the last cosignature's base64
    flipped_fails_naming("v3", bundle, tmp_path, name, -10, *WITNESSES, "--quorum", "2")

"""The format 5 golden bundles (tests/vectors/proof-bundle/v5, read receipts) verify
forever: the signed MDN by the recipient's key the bundle carries, the unsigned one
reported weak; a flipped byte in the signed MDN fails naming it (test_bundle_golden.py
runs the checks every golden version shares)."""

from __future__ import annotations

from pathlib import Path

import pytest

from certmail.bundle import read_members
from tests.fixtures.golden import GOLDEN, flipped_fails_naming, golden_checks

V5 = GOLDEN / "v5"


@pytest.mark.parametrize("kind", ["signed-ack", "encrypted-ack"])
def test_golden_v5_read_receipts_verify(kind: str, tmp_path: Path) -> None:
    bundle = V5 / f"{kind}.certmail-proof.zip"
    report, checks = golden_checks("v5", bundle, tmp_path)
    assert report["format"] == 5
    signed, unsigned = checks["read receipt mdns/01.eml"], checks["read receipt mdns/02.eml"]
    assert signed["status"] == "ok" and "signed by recipient bob@" in signed["detail"]
    assert unsigned["status"] == "ok" and unsigned["detail"].startswith("unsigned, weak")
    assert checks["documents"]["status"] == "ok"
    files = read_members(bundle)
    body = files["mdns/01.eml"]
    pos = body.index(b"was displayed")  # inside the signed part
    flipped_fails_naming("v5", bundle, tmp_path, "mdns/01.eml", pos)

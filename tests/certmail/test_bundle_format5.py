"""Formats are cumulative: a bundle with outside time-stamps (format 4) and read receipts
is format 5, renderer 5 states both; read receipts in a bundle labelled 4 are refused,
and a bundle labelled 5 that holds nothing of format 5 is refused (one form per bundle).

Made from the v4 golden bundle (its anchors verify with tests/vectors/proof-bundle/v4's
outside TSA root) with an unsigned Thunderbird-style MDN about its message added and the
documents rendered again from the verified facts, as ``proof export`` renders them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from certmail.bundle import documents, read_members, write_members
from certmail.bundle.layout import FORMAT_FILE, format_text
from certmail.bundle.verify import check_evidence
from keys.errors import VerificationError
from tests.fixtures import golden
from tests.fixtures.cli import clean_env, cli, one_line_error
from tests.fixtures.mdn import thunderbird_mdn

V4 = golden.GOLDEN / "v4"
GOLDEN = V4 / "signed-ack.certmail-proof.zip"


def _rendered(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """``files`` with the three documents rendered again from what they verify to."""
    vkey = (V4 / "notary.vkey").read_text().strip()
    _, _, facts = check_evidence(files, vkey, None, None, documents=False, openpgp=False)
    return {**files, **documents.render(facts, reveal_subject=False)}


def _with_mdn(fmt: int) -> dict[str, bytes]:
    files = read_members(GOLDEN)
    vkey = (V4 / "notary.vkey").read_text().strip()
    _, _, facts = check_evidence(files, vkey, None, None, documents=False, openpgp=False)
    mdn = thunderbird_mdn(facts.recipients[0], facts.sender, facts.message_id)
    return {**files, "mdns/01.eml": mdn, FORMAT_FILE: format_text(fmt)}


def _cli(files: Mapping[str, bytes], tmp_path: Path, name: str, *extra: str) -> Any:
    bundle = tmp_path / name
    bundle.write_bytes(write_members(dict(files)))
    pinned = ["--vkey", str(V4 / "notary.vkey"), "--tsa-root", str(V4 / "tsa-root.pem")]
    args = ["proof", "verify", str(bundle), *pinned, "--anchor-root", str(V4 / "anchor-root.pem")]
    return cli(*args, "--allow-partial", *extra, env=clean_env(tmp_path))


def test_anchors_and_read_receipts_make_format_5(tmp_path: Path) -> None:
    files = _rendered(_with_mdn(5))
    p = _cli(files, tmp_path, "both.zip", "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["format"] == 5
    checks = {c["item"]: c for c in report["checks"]}
    assert checks["outside time-stamps"]["status"] == "ok"
    assert checks["read receipt mdns/01.eml"]["detail"].startswith("unsigned, weak")
    assert checks["documents"]["status"] == "ok"
    page = files["certificate.html"].decode()
    golden = read_members(GOLDEN)["certificate.html"].decode()
    assert "Read receipts (RFC 8098)" in page and "Read receipts" not in golden
    assert "existed then" in page and "existed then" in golden  # renderer 4's anchors kept
    assert "existed then" in files["VERIFY.txt"].decode()


@pytest.mark.parametrize(
    ("fmt", "mdn", "why"),
    [
        (4, True, "mdns/01.eml in a bundle of format 4 (read receipts: 5)"),
        (5, False, "says format 5, but the bundle holds nothing of format 5"),
    ],
)
def test_format_5_members_and_label_agree(fmt: int, mdn: bool, why: str, tmp_path: Path) -> None:
    files = _with_mdn(fmt)
    if not mdn:
        del files["mdns/01.eml"]  # the v4 golden relabelled 5: nothing of format 5 in it
    with pytest.raises(VerificationError, match=re.escape(why)):
        _rendered(files)  # the exporter's own check refuses it before any document
    p = _cli(files, tmp_path, "bad.zip")
    assert p.returncode == 3 and why in one_line_error(p), p.stderr

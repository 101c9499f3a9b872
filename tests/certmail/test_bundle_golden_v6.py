"""The format 6 golden bundles (tests/vectors/proof-bundle/v6, S/MIME messages) verify
forever: the signed one's S/MIME sender signature with the carried chain against the
pinned S/MIME CA (smime-ca.pem), VERIFY.txt's section 4 (openssl cms and gpg) succeeds
as printed, and a flipped byte of smime/signer-chain.pem fails naming it
(test_bundle_golden.py runs the checks every golden version shares)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from certmail.bundle import read_members
from certmail.bundle.layout import SIGNER_CHAIN
from tests.fixtures.golden import GOLDEN, flipped_fails_naming, golden_checks
from tests.fixtures.proof import openpgp_commands, run_commands

V6 = GOLDEN / "v6"
SMIME_CA = ["--smime-ca", str(V6 / "smime-ca.pem")]


def test_golden_v6_smime_signature_verifies(tmp_path: Path) -> None:
    bundle = V6 / "signed-ack.certmail-proof.zip"
    report, checks = golden_checks("v6", bundle, tmp_path, *SMIME_CA)
    assert report["format"] == 6
    sig = checks["sender signature"]
    assert sig["status"] == "ok" and "good S/MIME signature by alice@" in sig["detail"]
    assert checks["read receipt mdns/01.eml"]["status"] == "ok"
    work = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(work)
    shutil.copy(V6 / "smime-ca.pem", work / "your-ca.pem")
    cmds = openpgp_commands((work / "VERIFY.txt").read_text())
    assert any(c.startswith("openssl cms -verify") for c in cmds)
    assert any("mdn-01.asc" in c for c in cmds)
    results = run_commands(cmds, work)
    assert len(results) == len(cmds) and all(r.returncode == 0 for r in results), [
        (r.args, r.stderr) for r in results
    ]
    files = read_members(bundle)
    pos = len(files[SIGNER_CHAIN]) // 3  # inside the signer's certificate
    flipped_fails_naming("v6", bundle, tmp_path, SIGNER_CHAIN, pos, *SMIME_CA)


def test_golden_v6_encrypted_has_no_chain(tmp_path: Path) -> None:
    bundle = V6 / "encrypted-ack.certmail-proof.zip"
    report, checks = golden_checks("v6", bundle, tmp_path, *SMIME_CA)
    assert report["format"] == 6 and SIGNER_CHAIN not in read_members(bundle)
    assert checks["sender signature"]["detail"].startswith("S/MIME encrypted")
    assert report["unchecked"] == ["sender signature"]

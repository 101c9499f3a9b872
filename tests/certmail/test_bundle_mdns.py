"""Read receipts in the proof bundle (issue 11 item 5; bundle format 5, certmail/bundle/mdns.py).

The RFC 8098 MDNs kept in Alice's ledger (a signed one from Bob's certmail, an unsigned
one as Thunderbird writes it) travel as mdns/NN.eml; ``proof verify`` checks the signed
one with Bob's key the bundle carries and reports the unsigned one as weak without
failing; the certificate states what each proves. A changed MDN, one about another
message, or mdns/ in a bundle of an older format fail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from certmail.bundle.zipio import read_members, write_members
from tests.fixtures.cli import json_of, one_line_error, run
from tests.fixtures.mdn import export_with_mdns, thunderbird_mdn
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.proof import verify_pinned

pytestmark = pytest.mark.timeout(300)

PARTIAL_JSON = ("--allow-partial", "--json")


def test_read_receipts_travel_in_the_bundle_and_are_checked(
    sent_and_mdn: tuple[Any, dict[str, Any], bytes], notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c, sent, signed_mdn = sent_and_mdn
    bundle = export_with_mdns(c, sent, signed_mdn, tmp_path)
    files = read_members(bundle.read_bytes())
    assert files["mdns/01.eml"] == signed_mdn and b"Thunderbird" in files["mdns/02.eml"]
    assert json.loads(files["bundle.json"]) == {"format": 6}  # renderer 6: format 5 + commands

    report = json_of(verify_pinned(c.alice, notary_server, bundle, tmp_path, *PARTIAL_JSON))
    assert report["format"] == 6
    checks = {ch["item"]: ch for ch in report["checks"]}
    bob_fpr = c.bob.keyring.key_for(c.bob.email).fingerprint
    first, second = checks["read receipt mdns/01.eml"], checks["read receipt mdns/02.eml"]
    assert first["status"] == "ok" and bob_fpr in first["detail"]
    assert f"signed by recipient {c.bob.email}'s key" in first["detail"]
    assert second["status"] == "ok" and second["detail"].startswith("unsigned, weak")
    page = files["certificate.html"].decode()
    assert "Read receipts (RFC 8098)" in page
    assert "a read receipt (RFC 8098 MDN) signed with an OpenPGP key" in page
    assert "WEAK EVIDENCE: an unsigned read receipt (RFC 8098 MDN) reporting the message" in page

    def tampered(name: str, **members: bytes) -> str:
        out = tmp_path / name
        out.write_bytes(write_members({**files, **members}))
        p = verify_pinned(c.alice, notary_server, out, tmp_path, *PARTIAL_JSON)
        assert p.returncode == 3 and p.stdout == "", p.stderr
        return one_line_error(p)

    changed = signed_mdn.replace(b"displayed", b"deleted", 1)
    assert changed != signed_mdn
    assert "mdns/01.eml: read receipt signature" in tampered("t1.zip", **{"mdns/01.eml": changed})
    other = thunderbird_mdn(c.bob.email, c.alice.email, "<another@example.org>")
    assert "read receipt for another message" in tampered("t2.zip", **{"mdns/02.eml": other})
    gap = {n: b for n, b in files.items() if n != "mdns/01.eml"}
    out = tmp_path / "t3.zip"
    out.write_bytes(write_members(gap))
    p = verify_pinned(c.alice, notary_server, out, tmp_path, *PARTIAL_JSON)
    assert p.returncode == 3 and "not numbered 01, 02" in one_line_error(p)
    older = tampered("t4.zip", **{"bundle.json": b'{\n  "format": 2\n}\n'})
    assert "mdns/01.eml in a bundle of format 2 (read receipts: 5)" in older


def test_verify_txt_checks_the_signed_read_receipt_with_stock_gpg(
    sent_and_mdn: tuple[Any, dict[str, Any], bytes], tmp_path: Path
) -> None:
    """Renderer 6: VERIFY.txt's gpg commands for mdns/01.eml, run as printed in a
    temporary directory (keys imported as it says), find Bob's good signature."""
    import zipfile

    from tests.fixtures.proof import openpgp_commands, run_commands

    c, sent, signed_mdn = sent_and_mdn
    bundle = export_with_mdns(c, sent, signed_mdn, tmp_path)
    work = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(work)
    text = (work / "VERIFY.txt").read_text()
    cmds = [cmd for cmd in openpgp_commands(text) if "message.asc" not in cmd]
    mdn_cmds = [cmd for cmd in cmds if "mdn-01" in cmd]
    assert len(mdn_cmds) == 3 and "mdn-02" not in text  # the unsigned one has none
    results = run_commands(cmds, work)
    assert len(results) == len(cmds) and all(r.returncode == 0 for r in results), [
        (r.args, r.stderr) for r in results
    ]
    assert results[-1].args == mdn_cmds[-1]
    assert "Good signature from" in results[-1].stderr and c.bob.email in results[-1].stderr


def test_a_bundle_without_read_receipts_or_verdicts_stays_format_2(
    sent_and_mdn: tuple[Any, dict[str, Any], bytes], tmp_path: Path
) -> None:
    """Nothing that needs format 5: the bundle is exactly what older certmails verify."""
    c, sent, _ = sent_and_mdn  # the MDN came back but was never opened: not kept
    bundle = tmp_path / "plain.zip"
    assert run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle)).returncode == 0
    files = read_members(bundle.read_bytes())
    assert json.loads(files["bundle.json"]) == {"format": 2}
    assert not any(n.startswith("mdns/") for n in files)
    assert b"Read receipts" not in files["certificate.html"]

"""The proof bundle of an S/MIME signed message (bundle format 6): it carries the signer's
certificate chain (smime/signer-chain.pem), ``proof verify --smime-ca`` checks the
signature over message.eml's exact bytes and the chain, VERIFY.txt's ``openssl cms
-verify`` succeeds as printed, and tampering is refused naming what failed."""

from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from certmail.bundle import read_members, write_members
from certmail.bundle.layout import MESSAGE, SIGNER_CHAIN
from certmail.bundle.smimesig import check_smime_signature
from certmail.bundle.verify import check_evidence
from certmail.mime import parse_entity, part_spans
from keys.errors import VerificationError
from tests.fixtures.cli import json_of, one_line_error, run, send_args, use_notary
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.proof import verify_pinned
from tests.fixtures.smime import Smime, smime_homes

SmimeBundle = tuple[Any, Smime, Path, dict[str, Any]]  # correspondents, homes, bundle, sent


@pytest.fixture
def smime_bundle(correspondents: Any, notary_server: NotaryProcess, tmp_path: Path) -> SmimeBundle:
    """Alice sends S/MIME signed-only (--no-encrypt) through the notary and exports."""
    c = correspondents
    s = smime_homes(c, tmp_path)
    use_notary(c, c.alice, notary_server)
    args = send_args(c.bob.email, "Contract", "--smime", "--no-encrypt", "--via", "smtp")
    sent = json_of(run(c.alice, *args, stdin=b"Please sign.\n", **s.env))
    bundle = tmp_path / "deal.zip"
    p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle), **s.env)
    assert p.returncode == 0, p.stderr
    return c, s, bundle, sent


def _verify(c: Any, notary: NotaryProcess, bundle: Path, tmp_path: Path, *extra: str) -> Any:
    return verify_pinned(c.bob, notary, bundle, tmp_path, *extra)


def _verify_changed(
    bundle: SmimeBundle, notary: NotaryProcess, files: dict[str, bytes], out: Path
) -> Any:
    """``files`` (the bundle's members, changed) written to ``out`` and verified by Bob
    with the S/MIME CA: what a tampered bundle gets."""
    c, s, _, _ = bundle
    out.write_bytes(write_members(files))
    return _verify(c, notary, out, out.parent, "--smime-ca", str(s.pki.ca))


def test_smime_bundle_carries_the_chain_and_verifies(
    smime_bundle: SmimeBundle,
    notary_server: NotaryProcess,
    tmp_path: Path,
) -> None:
    c, s, bundle, _ = smime_bundle
    files = read_members(bundle)
    assert json.loads(files["bundle.json"]) == {"format": 6}
    from cryptography import x509

    chain = x509.load_pem_x509_certificates(files[SIGNER_CHAIN])
    assert chain == [s.alice.cert, s.pki.cert]  # the signer first, then its issuer
    report = json_of(
        _verify(c, notary_server, bundle, tmp_path, "--smime-ca", str(s.pki.ca), "--json")
    )
    checks = {ch["item"]: ch for ch in report["checks"]}
    sig = checks["sender signature"]
    assert report["format"] == 6 and sig["status"] == "ok", sig
    assert f"good S/MIME signature by {c.alice.email}" in sig["detail"]
    assert report["verdict"] == "valid"
    # Without --smime-ca: the signature is good, the chain unchecked (not a failure).
    p = _verify(c, notary_server, bundle, tmp_path, "--json", "--allow-partial")
    checks = {ch["item"]: ch for ch in json_of(p)["checks"]}
    assert checks["sender signature"]["status"] == "skipped"
    assert "give --smime-ca" in checks["sender signature"]["detail"]
    # Another CA: the chain does not verify.
    from tests.fixtures.smime import SmimePki

    other = SmimePki(tmp_path / "other-pki", name="Other Root")
    p = _verify(c, notary_server, bundle, tmp_path, "--smime-ca", str(other.ca))
    assert p.returncode == 3
    assert "does not chain to a trusted CA" in one_line_error(p)

    # VERIFY.txt's openssl cms -verify, run as printed with the CA as your-ca.pem
    work = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(work)
    shutil.copy(s.pki.ca, work / "your-ca.pem")
    from tests.fixtures.proof import openpgp_commands, run_commands

    cmds = openpgp_commands((work / "VERIFY.txt").read_text())
    assert any(cmd.startswith("openssl cms -verify") for cmd in cmds), cmds
    results = run_commands(cmds, work)
    assert len(results) == len(cmds) and all(r.returncode == 0 for r in results), [
        (r.args, r.stderr) for r in results
    ]
    assert "Verification successful" in results[-1].stderr
    assert b"Please sign." in (work / "content.eml").read_bytes()


def test_a_tampered_signed_part_fails_the_sender_signature(
    smime_bundle: SmimeBundle,
    notary_server: NotaryProcess,
    tmp_path: Path,
) -> None:
    """message.eml changed inside the signed part: the hash check refuses the bundle first
    (the CLI), and the sender-signature check itself refuses those bytes (the library)."""
    c, s, bundle, _ = smime_bundle
    files = read_members(bundle)
    v, _, _ = check_evidence(files, notary_server.vkey, None, None, documents=False, openpgp=False)
    ok = check_smime_signature(v, c.alice.email, s.pki.ca)
    assert ok is not None and ok.status == "ok"
    msg = files[MESSAGE]
    (start, end), _sig = part_spans(parse_entity(msg))
    at = msg.index(b"Please sign.", start, end)
    bad = msg[:at] + b"Please sigh." + msg[at + 12 :]
    tampered = dataclasses.replace(v, files={**files, MESSAGE: bad})
    with pytest.raises(VerificationError, match="the message was changed or the signature forged"):
        check_smime_signature(tampered, c.alice.email, s.pki.ca)
    p = _verify_changed(smime_bundle, notary_server, {**files, MESSAGE: bad}, tmp_path / "bad.zip")
    assert p.returncode == 3


def test_a_bundle_without_its_chain_says_what_is_missing(
    smime_bundle: SmimeBundle,
    notary_server: NotaryProcess,
    tmp_path: Path,
) -> None:
    c, s, bundle, _ = smime_bundle
    files = dict(read_members(bundle))
    del files[SIGNER_CHAIN]
    out = tmp_path / "nochain.zip"
    p = _verify_changed(smime_bundle, notary_server, files, out)
    assert p.returncode == 3
    err = one_line_error(p)
    assert f"lacks {SIGNER_CHAIN}" in err and "signer's certificate chain" in err
    # A certificate for the same address from the same CA, not the signer's: refused.
    mallory = s.pki.person(c.alice.email, stem="mallory")
    from cryptography.hazmat.primitives import serialization

    files[SIGNER_CHAIN] = mallory.cert.public_bytes(serialization.Encoding.PEM)
    p = _verify_changed(smime_bundle, notary_server, files, out)
    assert p.returncode == 3
    assert f"the sender's S/MIME signature (message.eml, {SIGNER_CHAIN})" in one_line_error(p)

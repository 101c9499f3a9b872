"""The notary's evidence key (keys/evidence_ca.py): what `notary init` creates, where the
root CA's key goes, what load_evidence refuses, and that serve refuses a readable key."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from keys.errors import ConflictError, KeyMaterialError, NotFoundError
from keys.evidence_ca import generate_evidence_pki, load_evidence
from tests.fixtures.notary import serve_once


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_init_creates_the_evidence_key_and_keeps_its_root_key_offline(notary_dir: Path) -> None:
    ev = notary_dir / "evidence"
    root_dir = notary_dir.with_name(notary_dir.name + "-root")
    assert _mode(ev / "evidence-key.pem") == 0o600
    assert not (ev / "evidence-ca-key.pem").exists()
    assert _mode(root_dir / "evidence-ca-key.pem") == 0o600
    creds = load_evidence(ev)
    creds.cert.verify_directly_issued_by(creds.root)
    assert creds.root.subject != creds.cert.subject
    ku = creds.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment and not ku.key_cert_sign
    bc = creds.root.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    with pytest.raises(x509.ExtensionNotFound):
        creds.cert.extensions.get_extension_for_oid(ExtendedKeyUsageOID.TIME_STAMPING)
    tsa_root = x509.load_pem_x509_certificate((notary_dir / "tsa" / "root-ca.pem").read_bytes())
    assert tsa_root != creds.root  # its own CA: the TSA root key stays untouched
    chain = x509.load_pem_x509_certificates((ev / "evidence-chain.pem").read_bytes())
    assert chain == [creds.cert, creds.root]


def test_refusals(tmp_path: Path) -> None:
    a = tmp_path / "a"
    generate_evidence_pki(a, "n.test Evidence", root_dir=tmp_path / "a-root")
    with pytest.raises(ConflictError):
        generate_evidence_pki(a, "n.test Evidence", root_dir=tmp_path / "a-root")
    with pytest.raises(NotFoundError):
        load_evidence(tmp_path / "none")
    b = tmp_path / "b"
    generate_evidence_pki(b, "n.test Evidence", root_dir=tmp_path / "b-root")
    os.chmod(a / "evidence-key.pem", 0o600)
    os.remove(a / "evidence-key.pem")
    shutil.copy(b / "evidence-key.pem", a / "evidence-key.pem")
    with pytest.raises(KeyMaterialError, match="does not match"):
        load_evidence(a)
    shutil.copy(b / "evidence-cert.pem", a / "evidence-cert.pem")
    with pytest.raises(KeyMaterialError, match="not issued by"):
        load_evidence(a)  # b's key and certificate, a's root


def test_serve_refuses_a_readable_evidence_key(notary_dir: Path) -> None:
    path = notary_dir / "evidence" / "evidence-key.pem"
    os.chmod(path, 0o644)
    r = serve_once(notary_dir)
    assert r.returncode == 1, r.stderr
    assert f"certmail: error: {path} is accessible by others" in r.stderr

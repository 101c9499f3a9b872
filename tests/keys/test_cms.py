"""keys/cms.py ``signer_certificates``: the certificate a CMS SignerInfo names, in
SignedData made by ``openssl cms -sign`` (issuerAndSerialNumber by default,
subjectKeyIdentifier with ``-keyid``), looked up among other certificates."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keys.cms import signer_certificates


def _cert(
    name: str, serial: int, ski: bool = True
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if ski:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    return b.sign(key, hashes.SHA256()), key


def _signed(
    tmp: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, *extra: str
) -> bytes:
    (tmp / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp / "m.txt").write_bytes(b"hello\n")
    subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-in", str(tmp / "m.txt"), "-signer",
         str(tmp / "c.pem"), "-inkey", str(tmp / "k.pem"), "-outform", "DER",
         "-out", str(tmp / "s.der"), *extra],
        check=True, capture_output=True,
    )  # fmt: skip
    return (tmp / "s.der").read_bytes()


def _sid(der: bytes) -> cms.SignerIdentifier:
    return cms.ContentInfo.load(der)["content"]["signer_infos"][0]["sid"]


@pytest.mark.parametrize(
    "extra,kind", [((), "issuer_and_serial_number"), (("-keyid",), "subject_key_identifier")]
)
def test_the_named_signer_is_found_among_others(
    tmp_path: Path, extra: tuple[str, ...], kind: str
) -> None:
    signer, key = _cert("Signer", 7)
    same_serial, _ = _cert("Other", 7)  # same serial number, another issuer
    other, _ = _cert("Signer", 8)  # same issuer name, another serial and key
    sid = _sid(_signed(tmp_path, signer, key, *extra))
    assert sid.name == kind
    assert signer_certificates(sid, [same_serial, other, signer]) == [signer]
    assert signer_certificates(sid, [same_serial, other]) == []


def test_a_certificate_without_a_key_identifier_is_not_named_by_one(tmp_path: Path) -> None:
    signer, key = _cert("Signer", 9)
    bare, _ = _cert("Signer", 9, ski=False)
    sid = _sid(_signed(tmp_path, signer, key, "-keyid"))
    assert signer_certificates(sid, [bare, signer]) == [signer]


def test_verify_detached_reads_attached_content_and_speaks_the_callers_words(
    tmp_path: Path,
) -> None:
    """The one ``openssl cms -verify`` with the S/MIME options: an opaque SignedData's
    content written to ``out``; a refusal in the words of ``explain``."""
    from keys.cms import CmsOptions, fingerprint, verify_detached
    from keys.errors import MalformedError, VerificationError

    cert, key = _cert("attached", 5)
    opaque = _signed(tmp_path, cert, key, "-nodetach")
    out = tmp_path / "content"
    options = CmsOptions(out=out, strict=False)
    signer = verify_detached(None, opaque, None, chain=False, options=options)
    assert out.read_bytes() == b"hello\n"
    assert signer.sha256 == fingerprint(cert) and signer.certificate == cert
    with pytest.raises(MalformedError):  # the acknowledgement's form: detached only
        verify_detached(None, opaque, None, chain=False)

    detached = _signed(tmp_path, cert, key)
    verify_detached(b"hello\n", detached, None, chain=False)
    said: list[bytes] = []

    def explain(stderr: bytes) -> VerificationError:
        said.append(stderr)
        return VerificationError("in the caller's words")

    with pytest.raises(VerificationError, match="in the caller's words"):
        verify_detached(
            b"hullo\n", detached, None, chain=False, options=CmsOptions(explain=explain)
        )
    assert said and said[0]

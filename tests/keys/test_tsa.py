"""The TSA PKI: generation, import validation (RFC 3161 §2.3) and loading."""

from __future__ import annotations

import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keys.errors import ConflictError, KeyMaterialError
from keys.tsa import (
    ROOT_CERT,
    ROOT_KEY,
    TSA_CERT,
    TSA_CHAIN,
    TSA_KEY,
    generate_tsa_pki,
    import_tsa,
    load_tsa,
    validate_tsa_certificate,
)
from tests.fixtures.x509 import certificate

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def openssl(*args: str | Path, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["openssl", *map(str, args)], check=True, capture_output=True, text=True, cwd=cwd
    ).stdout


# --- generation -------------------------------------------------------------


def test_generate_writes_the_layout_with_private_keys_0600(tmp_path: Path) -> None:
    d = tmp_path / "tsa"
    generate_tsa_pki(d, "Example TSA")
    for name in (TSA_KEY, ROOT_KEY):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600
    for name in (TSA_CERT, TSA_CHAIN, ROOT_CERT):
        assert (d / name).exists()
    chain = x509.load_pem_x509_certificates((d / TSA_CHAIN).read_bytes())
    assert chain[0] == x509.load_pem_x509_certificate((d / TSA_CERT).read_bytes())
    assert chain[-1] == x509.load_pem_x509_certificate((d / ROOT_CERT).read_bytes())


def test_generated_certificate_is_what_rfc3161_requires(tmp_path: Path) -> None:
    creds = generate_tsa_pki(tmp_path / "tsa", "Example TSA", now=NOW)
    cert = creds.cert
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment and not ku.key_cert_sign
    assert isinstance(creds.key.curve, ec.SECP256R1)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Example TSA"
    assert cert.not_valid_before_utc <= NOW <= cert.not_valid_after_utc
    root = creds.chain[-1]
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_openssl_accepts_the_generated_certificate_for_timestamp_signing(tmp_path: Path) -> None:
    d = tmp_path / "tsa"
    generate_tsa_pki(d, "Example TSA")
    out = openssl("verify", "-CAfile", d / ROOT_CERT, "-purpose", "timestampsign", d / TSA_CERT)
    assert out.strip().endswith(": OK")
    text = openssl("x509", "-in", d / TSA_CERT, "-noout", "-text")
    assert "X509v3 Extended Key Usage: critical" in text
    assert "Time Stamping" in text


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    d = tmp_path / "tsa"
    generate_tsa_pki(d, "Example TSA")
    before = (d / TSA_KEY).read_bytes()
    with pytest.raises(ConflictError) as err:
        generate_tsa_pki(d, "Other TSA")
    assert err.value.hint
    assert (d / TSA_KEY).read_bytes() == before


def test_load_round_trips(tmp_path: Path) -> None:
    d = tmp_path / "tsa"
    made = generate_tsa_pki(d, "Example TSA")
    loaded = load_tsa(d)
    assert loaded.cert == made.cert and loaded.chain == made.chain
    assert loaded.key.private_numbers() == made.key.private_numbers()


def test_load_refuses_a_chain_file_that_does_not_start_with_the_cert(tmp_path: Path) -> None:
    d = tmp_path / "tsa"
    generate_tsa_pki(d, "Example TSA")
    (d / TSA_CHAIN).write_bytes((d / ROOT_CERT).read_bytes())
    with pytest.raises(KeyMaterialError, match="does not start with"):
        load_tsa(d)


# --- import: certificates made by the openssl binary -----------------------------------


def make_openssl_pki(d: Path, tsa_ext: str, *, days: int = 365) -> tuple[Path, Path, Path]:
    """A root CA and a TSA certificate made with `openssl req`/`openssl x509`."""
    d.mkdir(parents=True)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key", cwd=d)
    openssl(
        "req", "-x509", "-new", "-key", "root.key", "-subj", "/CN=OpenSSL Root", "-days", "3650",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", "root.pem", cwd=d,
    )  # fmt: skip
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "tsa.key", cwd=d)
    openssl("req", "-new", "-key", "tsa.key", "-subj", "/CN=OpenSSL TSA", "-out", "tsa.csr", cwd=d)
    (d / "ext.cnf").write_text(tsa_ext)
    openssl(
        "x509", "-req", "-in", "tsa.csr", "-CA", "root.pem", "-CAkey", "root.key",
        "-CAcreateserial", "-days", str(days), "-extfile", "ext.cnf", "-out", "tsa.pem", cwd=d,
    )  # fmt: skip
    return d / "tsa.pem", d / "tsa.key", d / "root.pem"


GOOD_EXT = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,nonRepudiation\n"
    "extendedKeyUsage=critical,timeStamping\n"
)


def test_import_of_an_openssl_made_tsa(tmp_path: Path) -> None:
    cert, key, root = make_openssl_pki(tmp_path / "src", GOOD_EXT)
    creds = import_tsa(tmp_path / "tsa", cert, key, root)
    assert creds.cert == x509.load_pem_x509_certificate(cert.read_bytes())
    assert creds.chain == (x509.load_pem_x509_certificate(root.read_bytes()),)
    assert stat.S_IMODE((tmp_path / "tsa" / TSA_KEY).stat().st_mode) == 0o600
    assert not (tmp_path / "tsa" / ROOT_KEY).exists()
    assert load_tsa(tmp_path / "tsa").cert == creds.cert
    assert (tmp_path / "tsa" / ROOT_CERT).read_bytes() == root.read_bytes()


def test_import_accepts_a_chain_file_that_starts_with_the_tsa_cert(tmp_path: Path) -> None:
    cert, key, root = make_openssl_pki(tmp_path / "src", GOOD_EXT)
    full = tmp_path / "full.pem"
    full.write_bytes(cert.read_bytes() + root.read_bytes())
    creds = import_tsa(tmp_path / "tsa", cert, key, full)
    assert len(creds.chain) == 1


@pytest.mark.parametrize(
    ("ext", "complaint"),
    [
        (GOOD_EXT.replace("critical,timeStamping", "timeStamping"), "not critical"),
        (GOOD_EXT.replace("timeStamping", "timeStamping,codeSigning"), "exactly timeStamping"),
        ("basicConstraints=critical,CA:FALSE\n", "no extendedKeyUsage"),
        (GOOD_EXT.replace("CA:FALSE", "CA:TRUE"), "CA certificate"),
        (GOOD_EXT.replace("digitalSignature,nonRepudiation", "keyEncipherment"), "keyUsage"),
    ],
    ids=["non-critical-eku", "two-purposes", "no-eku", "ca", "key-usage"],
)
def test_import_refuses_a_certificate_rfc3161_forbids(
    tmp_path: Path, ext: str, complaint: str
) -> None:
    cert, key, root = make_openssl_pki(tmp_path / "src", ext)
    with pytest.raises(KeyMaterialError, match=complaint) as err:
        import_tsa(tmp_path / "tsa", cert, key, root)
    assert err.value.hint
    assert not (tmp_path / "tsa" / TSA_KEY).exists()


def test_import_refuses_an_expired_certificate(tmp_path: Path) -> None:
    cert, key, root = make_openssl_pki(tmp_path / "src", GOOD_EXT, days=1)
    later = datetime.now(UTC) + timedelta(days=3)
    with pytest.raises(KeyMaterialError, match="expired"):
        import_tsa(tmp_path / "tsa", cert, key, root, now=later)


def test_import_refuses_a_key_that_does_not_match(tmp_path: Path) -> None:
    cert, _key, root = make_openssl_pki(tmp_path / "src", GOOD_EXT)
    other = tmp_path / "other.key"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", other)
    with pytest.raises(KeyMaterialError, match="does not match"):
        import_tsa(tmp_path / "tsa", cert, other, root)


def test_import_refuses_a_chain_that_does_not_issue_the_cert(tmp_path: Path) -> None:
    cert, key, _root = make_openssl_pki(tmp_path / "src", GOOD_EXT)
    _c, _k, stranger = make_openssl_pki(tmp_path / "src2", GOOD_EXT)
    with pytest.raises(KeyMaterialError, match="not issued by"):
        import_tsa(tmp_path / "tsa", cert, key, stranger)


def test_import_without_a_chain_needs_a_self_signed_cert(tmp_path: Path) -> None:
    cert, key, _root = make_openssl_pki(tmp_path / "src", GOOD_EXT)
    with pytest.raises(KeyMaterialError, match="not a self-signed root"):
        import_tsa(tmp_path / "tsa", cert, key, None)


def test_import_refuses_an_rsa_key(tmp_path: Path) -> None:
    cert, _key, root = make_openssl_pki(tmp_path / "src", GOOD_EXT)
    rsa_key = tmp_path / "rsa.key"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa_key)
    with pytest.raises(KeyMaterialError, match="P-256") as err:
        import_tsa(tmp_path / "tsa", cert, rsa_key, root)
    assert err.value.hint and "openssl" in err.value.hint


def test_import_refuses_garbage_files(tmp_path: Path) -> None:
    cert, key, root = make_openssl_pki(tmp_path / "src", GOOD_EXT)
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(KeyMaterialError, match=r"no readable X\.509"):
        import_tsa(tmp_path / "tsa", junk, key, root)
    with pytest.raises(KeyMaterialError, match="no readable private key"):
        import_tsa(tmp_path / "tsa", cert, junk, root)


# --- validate_tsa_certificate directly -------------------------------------------------


def test_validate_checks_the_chain_at_the_given_time(tmp_path: Path) -> None:
    creds = generate_tsa_pki(tmp_path / "tsa", "Example TSA", now=NOW)
    validate_tsa_certificate(creds.cert, creds.chain, creds.key, NOW)
    with pytest.raises(KeyMaterialError, match="not yet valid"):
        validate_tsa_certificate(creds.cert, creds.chain, creds.key, NOW - timedelta(days=1))
    with pytest.raises(KeyMaterialError, match="expired"):
        validate_tsa_certificate(creds.cert, creds.chain, creds.key, NOW + timedelta(days=3660))


def test_validate_refuses_an_intermediate_that_is_not_a_ca(tmp_path: Path) -> None:
    creds = generate_tsa_pki(tmp_path / "tsa", "Example TSA", now=NOW)
    # A "chain" whose issuer is the TSA's own sibling: an end-entity certificate.
    key = ec.generate_private_key(ec.SECP256R1())
    not_ca = certificate("Not a CA", key, ca=False, now=NOW, days=1, serial=1)
    with pytest.raises(KeyMaterialError, match="not a CA"):
        validate_tsa_certificate(creds.cert, (not_ca,), creds.key, NOW)

"""A small X.509 certificate authority: the steps the notary's two PKIs share.

The TSA (:mod:`keys.tsa`, RFC 3161 §2.3) and the evidence signer
(:mod:`keys.evidence_ca`) each have an ECDSA P-256 root CA of their own that
issues one end-entity certificate (RFC 5280 profile: basicConstraints and
keyUsage critical, subject and authority key identifiers). This module builds
those certificates and writes key material to new files (secrets 0600).

No network I/O; nothing here prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keys.errors import ConflictError

#: Generated certificates start slightly in the past to tolerate clock skew.
BACKDATE = timedelta(minutes=5)
#: A generated root outlives the certificates it issues (verifiers check a
#: chain at the time of the signature, years later).
ROOT_LIFETIME = timedelta(days=20 * 365)


def key_usage(*, digital_signature: bool, content_commitment: bool, ca: bool) -> x509.KeyUsage:
    """A keyUsage with the given bits set: a CA's (keyCertSign, cRLSign) or a signer's."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def root_certificate(
    root_key: ec.EllipticCurvePrivateKey,
    name: str,
    now: datetime,
    lifetime: timedelta = ROOT_LIFETIME,
) -> x509.Certificate:
    """A self-signed root CA named ``name`` (pathLen 0: it issues end-entity certificates only)."""
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            key_usage(digital_signature=False, content_commitment=False, ca=True), critical=True
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )


def signer_certificate(
    public_key: ec.EllipticCurvePublicKey,
    common_name: str,
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    now: datetime,
    lifetime: timedelta,
    *,
    extended_key_usage: x509.ExtendedKeyUsage | None = None,
) -> x509.Certificate:
    """The end-entity certificate ``root`` issues: CA:FALSE, digitalSignature and
    nonRepudiation, and ``extended_key_usage`` (critical) when given."""
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage(digital_signature=True, content_commitment=True, ca=False), critical=True
        )
    )
    if extended_key_usage is not None:
        builder = builder.add_extension(extended_key_usage, critical=True)
    return (
        builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certs_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """``certs`` in PEM, in order."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def write_secret(path: Path, data: bytes) -> None:
    """Create ``path`` 0600 (never overwrite) holding ``data``, fsynced."""
    write_new(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    """Create ``path`` 0644 (never overwrite) holding ``data``, fsynced."""
    write_new(path, data, 0o644)


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` (never overwrite), write ``data`` and fsync it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise ConflictError(
            f"{path} already exists", hint="move it away before creating new key material"
        ) from exc
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)

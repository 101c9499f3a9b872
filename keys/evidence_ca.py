"""The notary's evidence-signing key: what signs its ETSI evidence and PDF certificates.

Built with the certificate steps the TSA uses too (:mod:`keys.x509ca`): an ECDSA
P-256 root CA of its own ("<origin> Evidence Root CA") issues one end-entity
certificate with digitalSignature and nonRepudiation (contentCommitment), no
extendedKeyUsage. Its root is a separate CA from the TSA's, so the TSA's
root key (kept offline) is not needed to create it.

File layout of an evidence directory (``DIR/evidence``)::

    evidence-key.pem     the signing key, PKCS#8, mode 0600
    evidence-cert.pem    its certificate
    evidence-chain.pem   the certificate, then the root (what GET /v1/evidence/chain serves)
    evidence-ca.pem      the root (the trust anchor verifiers use)

and, in the offline root directory (``DIR-root``), ``evidence-ca-key.pem``
with a copy of ``evidence-ca.pem``. No network I/O; nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keys.errors import ConflictError, KeyMaterialError, NotFoundError
from keys.x509ca import (
    certs_pem,
    key_pem,
    root_certificate,
    signer_certificate,
    write_public,
    write_secret,
)

EVIDENCE_KEY = "evidence-key.pem"
EVIDENCE_CERT = "evidence-cert.pem"
EVIDENCE_CHAIN = "evidence-chain.pem"
EVIDENCE_CA = "evidence-ca.pem"
EVIDENCE_CA_KEY = "evidence-ca-key.pem"

EVIDENCE_LIFETIME = timedelta(days=10 * 365)


@dataclass(frozen=True)
class EvidenceCredentials:
    """The evidence signing key, its certificate, and its root CA."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    root: x509.Certificate

    def chain_pem(self) -> bytes:
        """The certificate, then the root, in PEM."""
        return certs_pem([self.cert, self.root])


def generate_evidence_pki(
    directory: Path, common_name: str, *, root_dir: Path, now: datetime | None = None
) -> EvidenceCredentials:
    """Create the evidence root CA and signing certificate; the root's key goes to ``root_dir``.

    Refuses with :class:`ConflictError` when ``directory`` already holds an evidence key.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if (directory / EVIDENCE_KEY).exists() or (root_dir / EVIDENCE_CA_KEY).exists():
        raise ConflictError(
            f"{directory} already holds an evidence key",
            hint="keep it, or move the directory away before creating a new one",
        )
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = root_certificate(root_key, f"{common_name} Root CA", now)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = signer_certificate(key.public_key(), common_name, root, root_key, now, EVIDENCE_LIFETIME)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    root_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_secret(directory / EVIDENCE_KEY, key_pem(key))
    write_public(directory / EVIDENCE_CERT, certs_pem([cert]))
    write_public(directory / EVIDENCE_CHAIN, certs_pem([cert, root]))
    write_public(directory / EVIDENCE_CA, certs_pem([root]))
    write_secret(root_dir / EVIDENCE_CA_KEY, key_pem(root_key))
    write_public(root_dir / EVIDENCE_CA, certs_pem([root]))
    return EvidenceCredentials(key=key, cert=cert, root=root)


def load_evidence(directory: Path) -> EvidenceCredentials:
    """Load what :func:`generate_evidence_pki` wrote; check key, certificate and root match."""
    if not (directory / EVIDENCE_KEY).exists():
        raise NotFoundError(
            f"no evidence key in {directory}",
            hint="notaries created before ETSI evidence lack it: run `certmail notary init` anew",
        )
    try:
        key = serialization.load_pem_private_key((directory / EVIDENCE_KEY).read_bytes(), None)
        cert = x509.load_pem_x509_certificate((directory / EVIDENCE_CERT).read_bytes())
        root = x509.load_pem_x509_certificate((directory / EVIDENCE_CA).read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyMaterialError(f"unreadable evidence key material in {directory}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise KeyMaterialError(f"{directory / EVIDENCE_KEY} does not match {EVIDENCE_CERT}")
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise KeyMaterialError(f"{EVIDENCE_CERT} is not issued by {EVIDENCE_CA}: {exc!r}") from None
    return EvidenceCredentials(key=key, cert=cert, root=root)

"""What certmail reads from an X.509 certificate (RFC 5280) for S/MIME (RFC 8550 §3).

An S/MIME certificate names its owner's address in a SubjectAltName
``rfc822Name`` (RFC 8550 §3.1: the address in the subject DN is legacy and is
not read here). A certificate used to sign must allow ``digitalSignature`` or
``nonRepudiation`` when it has a KeyUsage extension; one used to encrypt,
``keyEncipherment`` (RSA) or ``keyAgreement`` (EC); when it has an
ExtendedKeyUsage extension it must list ``emailProtection`` (or
``anyExtendedKeyUsage``). :func:`check_certificate` raises
:class:`keys.errors.VerificationError` for each of these and for dates.
:func:`fingerprint` and :func:`emails` are :mod:`keys.cms`'s (``fingerprint``,
``cert_emails``), the one reading the CMS signers use too.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from keys.cms import cert_emails as emails
from keys.cms import fingerprint
from keys.errors import MalformedError, VerificationError

from ..mime import same_address

__all__ = [
    "CertInfo",
    "check_certificate",
    "emails",
    "fingerprint",
    "load_certificates",
    "to_pem",
]

Use = Literal["sign", "encrypt"]
MAX_CERT_FILE = 1 << 20  # bytes: a certificate file is small


@dataclass(frozen=True)
class CertInfo:
    """A certificate as ``keys smime list`` shows it."""

    fingerprint: str  # SHA-256 of the DER, lowercase hex
    subject: str
    issuer: str
    emails: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    own: bool = False

    @classmethod
    def of(cls, cert: x509.Certificate, *, own: bool = False) -> CertInfo:
        return cls(
            fingerprint(cert),
            cert.subject.rfc4514_string(),
            cert.issuer.rfc4514_string(),
            emails(cert),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            own,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "subject": self.subject,
            "issuer": self.issuer,
            "emails": list(self.emails),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "own": self.own,
        }


def to_pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def load_certificates(data: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate in ``data`` (PEM, one or more, or one DER); MalformedError if none."""
    if len(data) > MAX_CERT_FILE:
        raise MalformedError(f"{what} is too large for a certificate file")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise MalformedError(
            f"{what} is not an X.509 certificate (PEM or DER)",
            hint="ask for the certificate as a .pem or .cer file",
        ) from None


def check_certificate(
    cert: x509.Certificate,
    use: Use,
    *,
    address: str | None = None,
    now: datetime.datetime | None = None,
) -> None:
    """Raise VerificationError unless ``cert`` may ``use`` for ``address`` at ``now``."""
    who = ", ".join(emails(cert)) or cert.subject.rfc4514_string()
    now = now or datetime.datetime.now(datetime.UTC)
    if now > cert.not_valid_after_utc:
        raise VerificationError(
            f"the S/MIME certificate of {who} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            hint="ask its owner for a current certificate",
        )
    if now < cert.not_valid_before_utc:
        raise VerificationError(
            f"the S/MIME certificate of {who} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d}"
        )
    if address is not None and not any(same_address(address, e) for e in emails(cert)):
        raise VerificationError(
            f"the S/MIME certificate is for {who or 'no address'}, not for {address}",
            hint="the certificate must name the address exactly (SubjectAltName rfc822Name)",
        )
    _check_usage(cert, use, who)


def _check_usage(cert: x509.Certificate, use: Use, who: str) -> None:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None:
        if use == "sign":
            ok = ku.digital_signature or ku.content_commitment
        elif isinstance(cert.public_key(), rsa.RSAPublicKey):
            ok = ku.key_encipherment
        else:
            ok = ku.key_agreement
        if not ok:
            raise VerificationError(
                f"the S/MIME certificate of {who} does not allow its key to {use} (key usage)"
            )
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not {ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(
        eku
    ):
        raise VerificationError(
            f"the certificate of {who} is not for email (no emailProtection extended key usage)"
        )


def key_matches(cert: x509.Certificate, key: Any) -> bool:
    """Does the private ``key`` belong to ``cert``?"""
    pub = key.public_key()
    if not isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return False
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(pub.public_bytes(der, spki) == cert.public_key().public_bytes(der, spki))

"""The TSA certificate checks of RFC 3161 §2.3 and the path to a trusted root (RFC 5280 §6).

Used by both ways of verifying a token: :func:`check_chain` searches a path
from the signer to one of the trusted roots through every certificate at hand,
each valid at genTime (the reference verifier); :func:`given_path` checks the
one path a TSA certificate chain file spells out (the template path), and so
accepts a subset of what :func:`check_chain` accepts.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from notary.errors import VerificationError
from notary.rfc3161.info import token_error

__all__ = ["MAX_CHAIN", "check_chain", "check_eku", "given_path", "is_ca", "valid_at"]

#: Most certificates above the TSA certificate on a path to a root.
MAX_CHAIN = 8


def check_eku(cert: x509.Certificate) -> None:
    """Require exactly one, critical, extendedKeyUsage: timeStamping (RFC 3161 §2.3)."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise token_error("the TSA certificate has no extendedKeyUsage") from None
    if not eku.critical:
        raise token_error("the TSA certificate's extendedKeyUsage is not critical (RFC 3161 §2.3)")
    if list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise token_error("the TSA certificate's extendedKeyUsage is not exactly timeStamping")


def valid_at(cert: x509.Certificate, when: datetime) -> bool:
    """Whether ``when`` lies within the certificate's validity period."""
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints cA, and keyCertSign if the certificate has a keyUsage."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not bc.ca:
        return False
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool(ku.key_cert_sign)


def _issued_by(cert: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_chain(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    when: datetime,
) -> None:
    """Find a path from ``leaf`` to one of ``roots``, every certificate valid at ``when``."""
    if not valid_at(leaf, when):
        raise token_error(f"the TSA certificate was not valid at genTime {when:%Y-%m-%dT%H:%M:%SZ}")
    candidates = [*roots, *pool]

    def walk(cert: x509.Certificate, depth: int) -> bool:
        if cert in roots:
            return True
        if depth >= MAX_CHAIN:
            return False
        for parent in candidates:
            if parent == cert or parent.subject != cert.issuer:
                continue
            if not (is_ca(parent) and valid_at(parent, when)):
                continue
            if _issued_by(cert, parent) and walk(parent, depth + 1):
                return True
        return False

    if not walk(leaf, 0):
        raise token_error(
            "the TSA certificate does not chain to a trusted root with every "
            "certificate valid at genTime"
        )


def given_path(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> list[x509.Certificate] | None:
    """The path ``chain`` spells out (each certificate issued by the next, then a root
    if the last is not one), if it is one :func:`check_chain` would accept at any time
    within all its certificates' validity: the TSA certificate has the timeStamping
    EKU, every issuer is a CA, the path is at most ``MAX_CHAIN`` long. Else None."""
    if not chain:
        return None
    try:
        check_eku(chain[0])
    except VerificationError:
        return None
    path = list(chain)
    for cert, parent in itertools.pairwise(path):
        if cert == parent or parent.subject != cert.issuer or not _issued_by(cert, parent):
            return None
    if path[-1] not in roots:
        issuers = [r for r in roots if r.subject == path[-1].issuer and _issued_by(path[-1], r)]
        if not issuers:
            return None
        path.append(issuers[0])
    if len(path) - 1 > MAX_CHAIN or not all(is_ca(p) for p in path[1:]):
        return None
    return path

"""Verify an RFC 3161 TimeStampToken: the template first, the reference verifier otherwise.

:func:`verify_token` is the one public verifier. When it is given the TSA's
certificate chain (``certificates``, TSA certificate first, as tsa-chain.pem
holds it) and the fast paths are on (:func:`notary.fastpath.enabled`), it
first tries the chain's :class:`~notary.rfc3161.template.TokenTemplate`, the
same one the TSA issues with: the token must be byte for byte the template's
layout, and then only the ECDSA signature over the signed attributes (which
hold SHA-256 of the TSTInfo and the ESSCertIDv2 hash of the TSA certificate),
the TSTInfo's imprint, tsa name and policy, and genTime within the validity of
the whole path need checking; the path itself (signatures, CA flags, the
timeStamping EKU) is checked once per chain. Any token the template cannot
place, or that fails there, goes through the reference verifier
(:mod:`notary.rfc3161.reference`), which accepts every layout and words the
error. So the template path only ever accepts what the reference accepts.
``CERTMAIL_REFERENCE_ONLY=1`` sends every token to the reference verifier.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from notary import fastpath
from notary.errors import VerificationError
from notary.rfc3161 import der
from notary.rfc3161.chain import given_path
from notary.rfc3161.info import TokenInfo
from notary.rfc3161.template import TokenTemplate

__all__ = ["verify_token"]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def verify_token(
    token: bytes,
    *,
    roots: Sequence[x509.Certificate],
    data: bytes | None = None,
    digest: bytes | None = None,
    certificates: Sequence[x509.Certificate] = (),
    policy: str | None = None,
) -> TokenInfo:
    """Verify a DER TimeStampToken over ``data`` (or its ``digest``) against ``roots``.

    Checks the CMS signature over the signed attributes, the content-type and
    message-digest attributes, the ESS signing-certificate attribute, that the
    signer certificate carries exactly one, critical, timeStamping
    extendedKeyUsage (RFC 3161 §2.3), that it chains to one of ``roots`` with
    every certificate valid at genTime, the message imprint and, if given, the
    policy. ``certificates`` adds certificates (e.g. tsa-chain.pem, the TSA
    certificate first) to those in the token. Returns the token's
    :class:`TokenInfo` or raises :class:`VerificationError`.
    """
    if (data is None) == (digest is None):
        raise ValueError("pass exactly one of data= or digest=")
    if not roots:
        raise ValueError("pass at least one trusted root certificate")
    if certificates and fastpath.enabled():
        sha256 = hashlib.sha256(data).digest() if data is not None else digest
        if sha256 is not None and len(sha256) == 32:
            if type(token) is not bytes:
                token = bytes(token)
            info = _verify_by_template(token, tuple(certificates), tuple(roots), sha256)
            if info is not None and (policy is None or info.policy == policy):
                return info
    from notary.rfc3161.reference import verify_reference  # asn1crypto: imported when needed

    try:
        return verify_reference(token, roots, data, digest, certificates, policy)
    except VerificationError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise VerificationError(
            f"the time-stamp token is malformed ({exc}); it may have been modified maliciously"
        ) from exc


@dataclass(frozen=True)
class _TrustedTemplate:
    """A chain's token template with what the template path needs to check a token."""

    template: TokenTemplate
    signer: x509.Certificate
    key: ec.EllipticCurvePublicKey
    not_before: datetime  # the latest notBefore on the path to the root
    not_after: datetime  # the earliest notAfter on it


@functools.lru_cache(maxsize=64)
def _trusted_template(
    certificates: tuple[x509.Certificate, ...], roots: tuple[x509.Certificate, ...]
) -> _TrustedTemplate | None:
    """The template of ``certificates`` if they spell out a path to ``roots`` that the
    reference verifier accepts, else None (then every token takes the reference path).
    A pure function of the certificates, so cached per process."""
    path = given_path(certificates, roots)
    if path is None:
        return None
    key = certificates[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return None
    try:
        template = TokenTemplate.for_chain(certificates)
    except (der.DerError, ValueError, IndexError):
        return None
    return _TrustedTemplate(
        template=template,
        signer=certificates[0],
        key=key,
        not_before=max(c.not_valid_before_utc for c in path),
        not_after=min(c.not_valid_after_utc for c in path),
    )


def _verify_by_template(
    token: bytes,
    certificates: tuple[x509.Certificate, ...],
    roots: tuple[x509.Certificate, ...],
    sha256: bytes,
) -> TokenInfo | None:
    """The token's info if it is in the template's exact layout and verifies over the
    message whose SHA-256 is ``sha256``; None otherwise."""
    trusted = _trusted_template(certificates, roots)
    if trusted is None:
        return None
    tpl = trusted.template
    try:
        parts = tpl.match(token)
        if parts is None:
            return None
        tst, attrs, signature = parts
        fields = tpl.read_tst_info(tst, sha256)
    except (der.DerError, ValueError, IndexError, OverflowError):
        return None
    if fields is None or not trusted.not_before <= fields.gen_time <= trusted.not_after:
        return None
    try:
        trusted.key.verify(signature, tpl.signed_bytes(attrs), _ECDSA_SHA256)
    except InvalidSignature:
        return None
    return TokenInfo(
        gen_time=fields.gen_time,
        serial=fields.serial,
        policy=fields.policy,
        hash_name="sha256",
        digest=sha256,
        nonce=fields.nonce,
        tsa_cert=trusted.signer,
        from_template=True,
    )

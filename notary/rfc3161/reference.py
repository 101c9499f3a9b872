"""The reference verifier of RFC 3161 tokens: any TSA's layout, read with asn1crypto.

Checks, in order, each in its own step: the CMS structure (RFC 5652 §5: a
SignedData over a TSTInfo, one SignerInfo, versions that match the sid), the
signer's certificate among those at hand, the signed attributes (content-type
TSTInfo, message digest of the TSTInfo, the ESS signing-certificate attribute
of RFC 2634 / RFC 5816), the signature over them, the TSA certificate's
extendedKeyUsage (RFC 3161 §2.3) and its path to a trusted root at genTime,
the tsa name, the message imprint and the policy. Raises VerificationError (or,
for bytes asn1crypto cannot read, the error it raises; :func:`verify_token`
turns those into VerificationError).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from asn1crypto import cms as a_cms
from asn1crypto import core as a_core
from asn1crypto import tsp as _a_tsp  # noqa: F401  (registers TSTInfo with cms)
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from keys.cms import signer_certificates
from notary.rfc3161 import der, oids
from notary.rfc3161.chain import check_chain, check_eku
from notary.rfc3161.info import TokenInfo
from notary.rfc3161.info import token_error as _fail

__all__ = ["verify_reference"]

_SIGNER_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
_IMPRINT_HASHES = ("sha256", "sha384", "sha512", "sha224", "sha1")


def verify_reference(
    token: bytes,
    roots: Sequence[x509.Certificate],
    data: bytes | None,
    digest: bytes | None,
    certificates: Sequence[x509.Certificate],
    policy: str | None,
) -> TokenInfo:
    """Verify ``token`` in full (see the module docstring); return what it says."""
    sd, tst_der, tst = _signed_tst_info(token)
    si = _single_signer(sd)
    pool = _certificate_pool(sd, certificates)
    signer = _find_signer(si["sid"], pool + list(roots))
    to_verify, attrs = _signed_attributes(si)
    sig_hash_name = _check_content_attributes(si, attrs, tst_der)
    _check_signing_certificate(attrs, signer)
    _check_signature(si, signer, to_verify, sig_hash_name)
    check_eku(signer)
    gen_time: datetime = tst["gen_time"].native.astimezone(UTC)
    check_chain(signer, pool, roots, gen_time)
    _check_tsa_name(tst, signer)
    hash_name, hashed = _check_imprint(tst, data, digest)
    tst_policy = tst["policy"].dotted
    if policy is not None and tst_policy != policy:
        raise _fail(f"policy {tst_policy} is not the expected {policy}")
    return TokenInfo(
        gen_time=gen_time,
        serial=tst["serial_number"].native,
        policy=tst_policy,
        hash_name=hash_name,
        digest=hashed,
        nonce=tst["nonce"].native,
        tsa_cert=signer,
    )


def _signed_tst_info(token: bytes) -> tuple[Any, bytes, Any]:
    """(SignedData, TSTInfo DER, parsed TSTInfo) of a ContentInfo (RFC 3161 §2.4.2)."""
    ci = a_cms.ContentInfo.load(bytes(token), strict=True)
    if ci["content_type"].dotted != oids.SIGNED_DATA:
        raise _fail("not a CMS SignedData")
    sd = ci["content"]
    encap = sd["encap_content_info"]
    if encap["content_type"].dotted != oids.TST_INFO:
        raise _fail("the signed content is not a TSTInfo")
    tst_der = encap["content"].contents  # the OCTET STRING's content: TSTInfo DER
    tst = encap["content"].parsed
    tst.native  # noqa: B018  (parse everything now: malformed content fails here)
    if tst["version"].contents != b"\x01":
        raise _fail("unsupported TSTInfo version")
    return sd, tst_der, tst


def _single_signer(sd: Any) -> Any:
    """The one SignerInfo, with versions and digest algorithm as RFC 5652 §5.1, §5.3 require."""
    signer_infos = sd["signer_infos"]
    if len(signer_infos) != 1:
        raise _fail(f"expected one SignerInfo, found {len(signer_infos)}")
    si = signer_infos[0]
    if sd["version"].native != "v3":
        raise _fail("SignedData version must be 3 for TSTInfo content (RFC 5652 §5.1)")
    sid_version = "v1" if si["sid"].name == "issuer_and_serial_number" else "v3"
    if si["version"].native != sid_version:
        raise _fail("SignerInfo version does not match its sid (RFC 5652 §5.3)")
    if si["digest_algorithm"]["algorithm"].dotted not in {
        a["algorithm"].dotted for a in sd["digest_algorithms"]
    }:
        raise _fail("the signer's digest algorithm is not among SignedData's digestAlgorithms")
    return si


def _certificate_pool(sd: Any, certificates: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The given certificates, then those embedded in the token."""
    pool: list[x509.Certificate] = list(certificates)
    certs = sd["certificates"]
    # isinstance, not .native: .native decodes every certificate (milliseconds).
    for choice in [] if isinstance(certs, a_core.Void) else certs:
        if choice.name == "certificate":
            pool.append(x509.load_der_x509_certificate(choice.chosen.dump()))
    return pool


def _find_signer(sid: a_cms.SignerIdentifier, pool: Sequence[x509.Certificate]) -> x509.Certificate:
    found = signer_certificates(sid, pool)
    if not found:
        raise _fail(
            "the signer's certificate is neither in the token nor among the given certificates"
        )
    return found[0]


def _a_cert(cert: x509.Certificate) -> Any:
    """The asn1crypto view of a certificate's TBSCertificate (names as encoded)."""
    der_bytes = cert.public_bytes(serialization.Encoding.DER)
    return a_x509.Certificate.load(der_bytes)["tbs_certificate"]


def _signed_attributes(si: Any) -> tuple[bytes, dict[str, Any]]:
    """(the bytes the signature covers, each signed attribute's one value by OID)."""
    signed_attrs = si["signed_attrs"]
    if isinstance(signed_attrs, a_core.Void) or len(signed_attrs) == 0:
        raise _fail("the SignerInfo has no signed attributes")
    # The signed bytes, taken before anything reads a DEFAULT field (reading one
    # marks the tree mutated and makes asn1crypto re-encode it: milliseconds).
    to_verify = b"\x31" + der.length(len(signed_attrs.contents)) + signed_attrs.contents
    attrs: dict[str, Any] = {}
    for attr in signed_attrs:
        name = attr["type"].dotted
        if name in attrs:
            raise _fail(f"signed attribute {name} appears twice")
        values = attr["values"]
        if len(values) != 1:
            raise _fail(f"signed attribute {name} must have exactly one value")
        attrs[name] = values[0]
    return to_verify, attrs


def _check_content_attributes(si: Any, attrs: dict[str, Any], tst_der: bytes) -> str:
    """Content-type TSTInfo and the TSTInfo's message digest (RFC 5652 §11.1, §11.2);
    returns the signer's digest algorithm."""
    if oids.CONTENT_TYPE not in attrs or attrs[oids.CONTENT_TYPE].dotted != oids.TST_INFO:
        raise _fail("the content-type attribute is missing or not TSTInfo")
    sig_hash_name: str = si["digest_algorithm"]["algorithm"].native
    if sig_hash_name not in _SIGNER_HASHES:
        raise _fail(f"unsupported signer digest algorithm {sig_hash_name}")
    md = attrs.get(oids.MESSAGE_DIGEST)
    if md is None or md.native != hashlib.new(sig_hash_name, tst_der).digest():
        raise _fail("the message-digest attribute does not match the TSTInfo")
    return sig_hash_name


def _check_signing_certificate(attrs: dict[str, Any], signer: x509.Certificate) -> None:
    """The ESS signing-certificate attribute names ``signer`` (RFC 5816, RFC 2634 §5.4)."""
    cert_der = signer.public_bytes(serialization.Encoding.DER)
    v2 = attrs.get(oids.SIGNING_CERT_V2)
    v1 = attrs.get(oids.SIGNING_CERT)
    if v2 is not None:
        first = v2["certs"][0]
        hash_name = first["hash_algorithm"]["algorithm"].native
        if hash_name not in _SIGNER_HASHES:
            raise _fail(f"unsupported ESSCertIDv2 hash {hash_name}")
        cert_hash = hashlib.new(hash_name, cert_der).digest()
    elif v1 is not None:
        first = v1["certs"][0]
        cert_hash = hashlib.sha1(cert_der, usedforsecurity=False).digest()
    else:
        raise _fail("no ESS signing-certificate attribute (RFC 3161 §2.4.2, RFC 5816)")
    if first["cert_hash"].native != cert_hash:
        raise _fail("the ESS signing-certificate attribute names another certificate")
    issuer_serial = first["issuer_serial"]
    if issuer_serial.native is not None and (
        issuer_serial["serial_number"].native != signer.serial_number
    ):
        raise _fail("the ESS signing-certificate serial number is not the signer's")


def _check_signature(
    si: Any, signer: x509.Certificate, to_verify: bytes, sig_hash_name: str
) -> None:
    """The signature over the DER of the signed attributes (RFC 5652 §5.4): ECDSA or
    RSA PKCS #1 v1.5 with the signer's digest algorithm."""
    signature = si["signature"].native
    h = _SIGNER_HASHES[sig_hash_name]
    algo = si["signature_algorithm"]
    try:
        if algo.hash_algo != sig_hash_name:
            raise _fail("signature and digest algorithms disagree")
    except ValueError:
        pass  # a bare "ecdsa"/"rsassa_pkcs1v15": the digest algorithm applies
    pub = signer.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey) and algo.signature_algo == "ecdsa":
            pub.verify(signature, to_verify, ec.ECDSA(h))
        elif isinstance(pub, rsa.RSAPublicKey) and algo.signature_algo == "rsassa_pkcs1v15":
            pub.verify(signature, to_verify, padding.PKCS1v15(), h)
        else:
            raise _fail(f"unsupported signature algorithm {algo['algorithm'].dotted}")
    except InvalidSignature:
        raise _fail("the signature does not verify") from None


def _check_tsa_name(tst: Any, signer: x509.Certificate) -> None:
    """The optional tsa field, if present, names the signer (RFC 3161 §2.4.2)."""
    tsa = tst["tsa"]
    if tsa.native is None:
        return
    subject = _a_cert(signer)["subject"]
    if tsa.name != "directory_name" or (
        tsa.chosen.dump() != subject.dump() and tsa.chosen != subject
    ):
        raise _fail("the tsa name does not match the signer certificate")


def _check_imprint(tst: Any, data: bytes | None, digest: bytes | None) -> tuple[str, bytes]:
    """The message imprint is over ``data`` (or is ``digest``): (hash name, digest)."""
    imprint = tst["message_imprint"]
    hash_name: str = imprint["hash_algorithm"]["algorithm"].native
    if hash_name not in _IMPRINT_HASHES:
        raise _fail(f"unsupported message imprint algorithm {hash_name}")
    hashed: bytes = imprint["hashed_message"].native
    expected = hashlib.new(hash_name, data).digest() if data is not None else digest
    if hashed != expected:
        raise _fail("the message imprint does not match the data")
    return hash_name, hashed

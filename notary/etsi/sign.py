"""XAdES-B-T over ETSI evidence: signxml signs (B-B), the notary's TSA stamps (-T).

The signature is enveloped in the ``erds:Evidence`` element, ECDSA P-256 with
SHA-256, references canonicalized with inclusive C14N 1.0 (what a reference
without transforms means to every XML-DSig verifier, xmlsec1 included).
signxml writes the XAdES SignedProperties (SigningTime, SigningCertificateV2,
DataObjectFormat); this module then adds the B-T level's unsigned
``xades:SignatureTimeStamp``: an RFC 3161 token over the exclusive C14N of
``ds:SignatureValue`` (ETSI EN 319 132-1 §5.3), from the notary's own TSA.

Pure format code: the time-stamp comes from a callable, so nothing here
imports the service.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree  # type: ignore[import-untyped]
from signxml import methods
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, SignXMLException
from signxml.util import X509CertChainVerifier
from signxml.xades.xades import XAdESDataObjectFormat, XAdESSigner, XAdESVerifier

from keys.evidence_ca import EvidenceCredentials
from notary.errors import MalformedError, VerificationError
from notary.etsi.xml import EvidenceFacts, read_evidence
from notary.rfc3161 import TokenInfo, verify_token

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_NS = {"ds": DS, "xades": XADES}

#: A callable answering a DER RFC 3161 token over a SHA-256 digest.
Stamp = Callable[[bytes], bytes]

_FORMAT = XAdESDataObjectFormat(
    Description="ETSI EN 319 522-3 evidence (certmail, non-qualified)", MimeType="text/xml"
)


def _signature_value_c14n(signature: Any) -> bytes:
    sv = signature.find("ds:SignatureValue", _NS)
    if sv is None:
        raise MalformedError("the signature has no ds:SignatureValue")
    out: bytes = etree.tostring(sv, method="c14n", exclusive=True)
    return out


def _add_signature_timestamp(signature: Any, stamp: Stamp) -> None:
    qp = signature.find("ds:Object/xades:QualifyingProperties", _NS)
    token = stamp(hashlib.sha256(_signature_value_c14n(signature)).digest())
    usp = etree.SubElement(
        etree.SubElement(qp, f"{{{XADES}}}UnsignedProperties"),
        f"{{{XADES}}}UnsignedSignatureProperties",
    )
    sts = etree.SubElement(usp, f"{{{XADES}}}SignatureTimeStamp", Id=signature.get("Id") + "-TS")
    etree.SubElement(sts, f"{{{DS}}}CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(sts, f"{{{XADES}}}EncapsulatedTimeStamp").text = base64.b64encode(
        token
    ).decode()


def sign_evidence(evidence: Any, creds: EvidenceCredentials, stamp: Stamp) -> bytes:
    """Sign an ``erds:Evidence`` element XAdES-B-T; answers the XML document's bytes."""
    signer = XAdESSigner(
        data_object_format=_FORMAT,
        method=methods.enveloped,
        signature_algorithm=SignatureMethod.ECDSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_0,
    )
    key = creds.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    certs = [creds.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")]
    signed = signer.sign(evidence, key=key, cert=certs)
    signature = signed.find("ds:Signature", _NS)
    _add_signature_timestamp(signature, stamp)
    out: bytes = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    return out


class _StoreVerifier(X509CertChainVerifier):  # type: ignore[misc]
    """signxml's chain verifier, trusting roots given as PEM bytes (not a file)."""

    def __init__(self, roots: Sequence[x509.Certificate], **kwargs: Any) -> None:
        super().__init__(ca_pem_file="(in memory)", **kwargs)  # type: ignore[no-untyped-call]
        self._roots = list(roots)

    @property
    def store(self) -> x509.verification.Store:
        return x509.verification.Store(self._roots)


class _Verifier(XAdESVerifier):  # type: ignore[misc]
    def __init__(self, roots: Sequence[x509.Certificate]) -> None:
        super().__init__()
        self._roots = roots

    def get_cert_chain_verifier(self, ca_pem_file: Any, ee_policy: Any, ca_policy: Any) -> Any:
        return _StoreVerifier(
            self._roots,
            verification_time=self._get_cert_verification_time(),  # type: ignore[no-untyped-call]
            ee_policy=ee_policy,
            ca_policy=ca_policy,
        )


@dataclass(frozen=True)
class VerifiedEvidence:
    """A verified evidence: what it states, and when the TSA saw its signature."""

    facts: EvidenceFacts
    signer: x509.Certificate
    timestamp: TokenInfo


def _timestamp(signature: Any) -> bytes:
    found = signature.findall(
        "ds:Object/xades:QualifyingProperties/xades:UnsignedProperties/"
        "xades:UnsignedSignatureProperties/xades:SignatureTimeStamp",
        _NS,
    )
    if len(found) != 1:
        raise VerificationError("the evidence has no XAdES SignatureTimeStamp (not XAdES-B-T)")
    c14n = found[0].find("ds:CanonicalizationMethod", _NS)
    if c14n is None or c14n.get("Algorithm") != EXC_C14N:
        raise VerificationError("the SignatureTimeStamp must use exclusive C14N")
    enc = found[0].find("xades:EncapsulatedTimeStamp", _NS)
    try:
        return base64.b64decode(enc.text or "", validate=True)
    except (AttributeError, ValueError):
        raise VerificationError("the SignatureTimeStamp holds no base64 token") from None


def verify_evidence(
    xml: bytes,
    *,
    evidence_ca: bytes,
    tsa_roots: Sequence[x509.Certificate],
    tsa_certificates: Sequence[x509.Certificate] = (),
) -> VerifiedEvidence:
    """Verify an evidence XML's XAdES-B-T signature; answer the facts it signs.

    ``evidence_ca`` holds the evidence root CA(s), PEM; ``tsa_roots`` the TSA's
    trust anchors. The facts are read from what the signature covers, never
    from the raw document. Raises VerificationError.
    """
    try:
        roots = x509.load_pem_x509_certificates(evidence_ca)
        results = _Verifier(roots).verify(xml)
    except (SignXMLException, InvalidInput, etree.XMLSyntaxError, ValueError) as exc:
        raise VerificationError(f"the XAdES signature does not verify: {exc}") from None
    main = results[0]
    if main.signed_xml is None or main.signed_xml.tag != f"{{{NS_ERDS}}}Evidence":
        raise VerificationError("the signature does not cover the erds:Evidence element")
    try:
        facts = read_evidence(main.signed_xml)
    except MalformedError as exc:
        raise VerificationError(str(exc)) from None
    token = _timestamp(main.signature_xml)
    info = verify_token(
        token,
        roots=tsa_roots,
        data=_signature_value_c14n(main.signature_xml),
        certificates=tsa_certificates,
    )
    signer = x509.load_pem_x509_certificate(_signer_pem(main.signature_xml))
    return VerifiedEvidence(facts=facts, signer=signer, timestamp=info)


NS_ERDS = "http://uri.etsi.org/19522/v1#"


def _signer_pem(signature: Any) -> bytes:
    el = signature.find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS)
    der = base64.b64decode("".join((el.text or "").split()))
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)

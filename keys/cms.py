"""Which certificate a CMS SignerInfo names (RFC 5652 §5.3, SignerIdentifier).

A SignerInfo names its signer by issuerAndSerialNumber or by
subjectKeyIdentifier; the certificate itself travels in the SignedData or
comes from the verifier. Both the RFC 3161 reference verifier
(:mod:`notary.rfc3161.reference`) and the S/MIME signer chain of a proof bundle
(:mod:`certmail.bundle.smimesig`) look it up here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["signer_certificates"]


def signer_certificates(sid: Any, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates of ``pool`` that the asn1crypto ``SignerIdentifier`` ``sid``
    names, in ``pool`` order.

    issuerAndSerialNumber: the serial number equal and the issuer Name equal as
    encoded or, failing that, as asn1crypto compares Names (RFC 5280 §7.1: no
    stringprep when the bytes are equal). subjectKeyIdentifier: the
    certificate's SubjectKeyIdentifier extension equal to it.
    """
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = sid.chosen["serial_number"].native
        return [c for c in pool if c.serial_number == serial and _same_issuer(c, issuer)]
    ski = sid.chosen.native
    found = []
    for c in pool:
        try:
            ext = c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            continue
        if ext.value.digest == ski:
            found.append(c)
    return found


def _same_issuer(cert: x509.Certificate, issuer: Any) -> bool:
    if cert.issuer.public_bytes() == issuer.dump():  # as encoded: no stringprep
        return True
    der = cert.public_bytes(serialization.Encoding.DER)
    return bool(a_x509.Certificate.load(der)["tbs_certificate"]["issuer"] == issuer)

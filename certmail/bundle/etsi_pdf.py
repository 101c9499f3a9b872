"""``notary-certificate.pdf`` in a proof bundle: the notary's signed PDF certificate
(``proof export --etsi``), checked with pyHanko's validator.

The signature must be intact and valid, chain to the evidence root at the end of
``evidence-chain.pem``, cover the entire file, carry a signature time-stamp that
verifies against the bundle's TSA roots (PAdES-B-T), and the document's XMP
metadata must name the bundle's message (its subject, notary/etsi/certificate.py).
"""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING, Any

from certmail.bundle.layout import NOTARY_PDF, fail
from certmail.bundle.report import Check

if TYPE_CHECKING:
    from cryptography import x509

    from certmail.bundle.checks import Verified


def _context(roots: Any) -> Any:
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from pyhanko_certvalidator import ValidationContext

    return ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(r.public_bytes(Encoding.DER)) for r in roots]
    )


def check_signed_pdf(v: Verified, pdf: bytes, evidence_root: x509.Certificate) -> Check:
    """Verify ``notary-certificate.pdf`` (see the module docstring); fail naming it."""
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    from notary.etsi.certificate import subject_of

    try:
        reader = PdfFileReader(BytesIO(pdf))
        sigs = reader.embedded_signatures
        if len(sigs) != 1:
            raise fail(f"{NOTARY_PDF} must hold exactly one signature, found {len(sigs)}")
        status = validate_pdf_signature(
            sigs[0], _context([evidence_root]), ts_validation_context=_context(v.roots)
        )
        xmp = reader.root["/Metadata"].get_object().data  # PDF/A: the metadata is XMP
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        raise fail(f"{NOTARY_PDF} is not a readable signed PDF ({exc})") from None
    if not (status.intact and status.valid):
        raise fail(f"{NOTARY_PDF}: its signature does not verify")
    if not status.trusted:
        raise fail(f"{NOTARY_PDF}: its signer does not chain to the evidence root")
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        raise fail(f"{NOTARY_PDF}: the signature does not cover the whole file")
    ts = status.timestamp_validity
    if ts is None or not (ts.intact and ts.valid and ts.trusted):
        raise fail(f"{NOTARY_PDF}: no valid signature time-stamp from the TSA (not PAdES-B-T)")
    if subject_of(v.sha256).encode("ascii") not in xmp:
        raise fail(f"{NOTARY_PDF} certifies another message")
    return Check("notary certificate.pdf", "ok", f"{NOTARY_PDF}: PAdES-B-T signature verifies")

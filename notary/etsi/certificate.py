"""``certificate.pdf``: a plain-language certificate the notary issues and signs (issue 14 item 5).

Written with fpdf2 as PDF/A-2B (its compliance mode: XMP metadata, sRGB
output intent), A4 or US Letter, in DejaVu Sans embedded as a subset (Latin,
Greek, Cyrillic), with Noto Sans CJK (fonts-noto-cjk) as fpdf2's fallback font
for what DejaVu lacks (CJK, Hangul), embedded only when the text needs it
(parsing the CJK collection costs about a quarter of a second, so it is parsed once a
process: :func:`_cjk_font`). Signed PAdES-B-T
with pyHanko by the notary's evidence certificate, the signature time-stamped
by the notary's own TSA (the token comes from a callable, so nothing here
imports the service).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
from collections.abc import Callable, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

from keys.evidence_ca import EvidenceCredentials

# fontTools logs a dozen INFO lines per embedded font subset, every certificate: not news
# to the notary's operator (its warnings still show).
logging.getLogger("fontTools.subset").setLevel(logging.WARNING)

#: The font embedded (fonts-dejavu-core).
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FONT_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
#: The fallback for the scripts DejaVu lacks (fonts-noto-cjk): CJK and Hangul.
FONT_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
_CJK_KEY = "notosanscjk"  # fpdf2's key for the family NotoSansCJK, regular
#: The paper sizes a certificate is laid out for (fpdf2's names).
PAPERS = ("A4", "Letter")

#: A callable answering a DER TimeStampResp for a DER TimeStampReq (the TSA's ``respond``).
Respond = Callable[[bytes], bytes]

_PROVES = {
    "SubmissionAcceptance": (
        "The notary accepted the message for registered delivery at this time.",
        "It does not show that anyone received or read it.",
    ),
    "SubmissionRejection": ("The notary refused the message.", ""),
    "VirusDetected": ("The notary's virus scan refused the message.", ""),
    "RelayToNonERDS": (
        "The notary handed the message to the recipient's mail server, which accepted it.",
        "It does not show that the recipient opened or read it.",
    ),
    "RelayToNonERDSFailure": ("Delivery to this recipient failed for good.", ""),
    "ContentHandover": (
        "The recipient acknowledged the message with a signature made by their OpenPGP key.",
        "It shows the key's holder signed; that the key is the recipient's rests on the key.",
    ),
    "ContentAccessTracking": (
        "WEAK: something fetched the recipient's tracking link.",
        "It does not show that the recipient read the message: mail scanners fetch links too.",
    ),
}


def _channel(stmts: Sequence[dict[str, Any]]) -> str:
    chans = {s.get("channel") for s in stmts if s["event"] == "SubmissionAcceptance"}
    if "smtp" in chans:
        return (
            "Relay mode: the sender sent the message through the notary, which saw the "
            "message and handed it over to each recipient's mail server itself."
        )
    return (
        "Direct mode: the notary saw only the message's SHA-256 hash, never its content, "
        "sender or recipients beyond what the sender's account states."
    )


def _event_lines(s: dict[str, Any]) -> list[str]:
    lines = [f"{s['time']}  {s['event']}"]
    who = s.get("recipient") or ", ".join(map(str, s.get("recipients") or []))
    if who:
        lines.append(f"    recipient(s): {who}")
    if s["event"] == "ContentHandover" and s.get("fingerprint"):
        lines.append(f"    acknowledging key: {s['fingerprint']}")
    proves, not_proved = _PROVES.get(s["event"], ("", ""))
    lines.append(f"    proves: {proves}")
    if not_proved:
        lines.append(f"    does not prove: {not_proved}")
    return lines


def subject_of(sha256: str) -> str:
    """The PDF's /Subject: the message it certifies (what proof verify matches)."""
    return f"certmail message sha256={sha256}"


def _needs_fallback(pdf: Any, lines: Sequence[str]) -> bool:
    """Whether ``lines`` hold a character DejaVu Sans (the font set on ``pdf``) lacks."""
    have = pdf.current_font.cmap
    return any(ord(c) not in have for line in lines for c in line if not c.isspace())


#: What :func:`_add_cjk_font` knows of fpdf2's font object (``fpdf.fonts.TTFFont``,
#: fpdf2 2.8.9): all its fields, and those a document changes (its index among the
#: document's fonts, its font file, subset in place, and what it writes). Any other
#: field set (a newer fpdf2) and the font is parsed per document by ``add_font``;
#: tests/notary/test_certificate_font_pin.py fails to say so.
FPDF2_FONT_FIELDS = frozenset(
    "i type name desc glyph_ids _hbfont sp ss up ut cw ttffile fontkey emphasis scale"
    " subset cmap ttfont missing_glyphs biggest_size_pt color_font unicode_range"
    " palette_index is_compressed is_cff is_cid_keyed is_symbol cff_ros"
    " collection_font_number".split()
)
_PER_DOCUMENT = ("i", "ttfont", "biggest_size_pt", "missing_glyphs", "subset", "_hbfont")


def _fpdf2_font_fields() -> frozenset[str]:
    """The fields of the installed fpdf2's font object."""
    from fpdf.fonts import TTFFont

    return frozenset(TTFFont.__slots__)


@functools.cache
def _cjk_font() -> Any:
    """fpdf2's parsed Noto Sans CJK (its metrics, cmap and glyph ids), once a process:
    parsed by fpdf2's own ``add_font`` into a document of its own."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("NotoSansCJK", "", str(FONT_CJK), collection_font_number=0)
    return pdf.fonts[_CJK_KEY]


def _add_cjk_font(pdf: Any) -> None:
    """What ``pdf.add_font("NotoSansCJK", "", FONT_CJK)`` does, from the parsed font of
    :func:`_cjk_font`: a copy whose :data:`_PER_DOCUMENT` fields are this document's
    own, as fpdf2 sets them for a new font (the font file opened lazily again, since
    the output subsets it in place). With an fpdf2 whose font object is not the one
    :data:`FPDF2_FONT_FIELDS` describes, ``add_font`` itself."""
    if _fpdf2_font_fields() != FPDF2_FONT_FIELDS:
        pdf.add_font("NotoSansCJK", "", str(FONT_CJK), collection_font_number=0)
        return
    from fontTools import ttLib  # type: ignore[import-untyped]
    from fpdf.fonts import SubsetMap

    font = copy.copy(_cjk_font())
    font.i = len(pdf.fonts) + 1
    font.ttfont = ttLib.TTFont(FONT_CJK, recalcTimestamp=False, fontNumber=0, lazy=True)
    font.biggest_size_pt = 0
    font.missing_glyphs = []
    font.subset = SubsetMap(font)
    font._hbfont = None
    pdf.fonts[_CJK_KEY] = font
    if font.is_cff and font.is_cid_keyed:  # as add_font: CID-keyed CFF needs PDF 1.6
        pdf.pdf_version = max(pdf.pdf_version, "1.6")


def render_certificate(
    stmts: Sequence[dict[str, Any]],
    *,
    origin: str,
    sha256: str,
    message_id: str,
    paper: str = "A4",
) -> bytes:
    """The unsigned PDF/A-2B certificate for a message's statements, in log order, on
    ``paper`` (one of :data:`PAPERS`); every line wraps within the page's margins."""
    from fpdf import FPDF

    if paper not in PAPERS:
        raise ValueError(f"paper must be one of {', '.join(PAPERS)}")
    pdf = FPDF(format=paper, enforce_compliance="PDFA_2B")
    pdf.set_title(f"Certificate of registered delivery {message_id}")
    pdf.set_author(origin)
    pdf.set_subject(subject_of(sha256))
    pdf.set_lang("en")
    pdf.add_font("DejaVu", "", str(FONT))
    pdf.add_font("DejaVu", "B", str(FONT_BOLD))
    pdf.set_auto_page_break(True, margin=18)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 15)
    pdf.multi_cell(0, 8, "Certificate of registered delivery", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 9.5)
    sender = next((s["submitter"] for s in stmts if isinstance(s.get("submitter"), str)), None)
    head = [
        f"Issued by the notary {origin}, signed with its evidence certificate.",
        f"Message-ID: {message_id}",
        f"SHA-256 of the exact message: {sha256}",
        f"Sender (as the notary's account states): {sender or 'not stated'}",
        _channel(stmts),
        "",
        "Events, in the order the notary's append-only log holds them:",
    ]
    body = [line for s in stmts for line in [*_event_lines(s), ""]]
    tail = [
        "How to verify: this PDF's signature (PAdES-B-T) verifies against the notary's "
        "evidence root CA (GET /v1/evidence/chain); each event is in the notary's log, "
        "provable with `certmail proof verify` on the proof bundle. This is not a "
        "qualified trust service's evidence (eIDAS Art. 43(1): admissible, no presumption).",
    ]
    if _needs_fallback(pdf, head + body):
        _add_cjk_font(pdf)
        pdf.set_fallback_fonts(["NotoSansCJK"], exact_match=False)
    for line in head + body + tail:
        pdf.multi_cell(0, 5, line or " ", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


class _LocalTimeStamper:
    """A pyHanko TimeStamper asking the notary's own TSA in-process.

    pyHanko copies the TSA's certificates into the signature's certificate set by
    registering the very objects of the token it embeds, so one asn1crypto object
    then sits in two trees; about half the signatures (it depends on object
    identities) then took 9 s of CPU to encode, 18 s when the size estimate hit it
    too. The certificates are registered first from a copy of the token of their
    own, which pyHanko's registration then finds there (same issuer and serial).
    """

    @staticmethod
    def make(respond: Respond, store: Any) -> Any:
        from asn1crypto import tsp
        from pyhanko.sign.timestamps.api import TimeStamper

        class Local(TimeStamper):  # type: ignore[misc]
            async def async_request_tsa_response(self, req: Any) -> Any:
                raw = respond(req.dump())
                copy = tsp.TimeStampResp.load(raw)
                if copy["status"]["status"].native == "granted":
                    for c in copy["time_stamp_token"]["content"]["certificates"] or ():
                        store.register(c.chosen)
                return tsp.TimeStampResp.load(raw)

        return Local()  # type: ignore[no-untyped-call]


def sign_certificate(pdf: bytes, creds: EvidenceCredentials, respond: Respond) -> bytes:
    """Sign ``pdf`` PAdES-B-T with the evidence key, time-stamped through ``respond``."""
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import serialization
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    der = serialization.Encoding.DER
    pkcs8 = serialization.PrivateFormat.PKCS8
    key = asn1_keys.PrivateKeyInfo.load(
        creds.key.private_bytes(der, pkcs8, serialization.NoEncryption())
    )
    cert = asn1_x509.Certificate.load(creds.cert.public_bytes(der))
    root = asn1_x509.Certificate.load(creds.root.public_bytes(der))
    store = SimpleCertificateStore.from_certs([cert, root])  # type: ignore[no-untyped-call]
    signer = signers.SimpleSigner(signing_cert=cert, signing_key=key, cert_registry=store)
    meta = PdfSignatureMetadata(
        field_name="NotarySignature",
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason="Certificate of registered delivery",
    )
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    out = BytesIO()

    async def run() -> None:
        pdf_signer = signers.PdfSigner(
            meta, signer=signer, timestamper=_LocalTimeStamper.make(respond, store)
        )
        await pdf_signer.async_sign_pdf(writer, output=out)

    asyncio.run(run())
    return out.getvalue()

"""The CJK font cache's assumption about fpdf2 (notary/etsi/certificate.py
``_add_cjk_font``), pinned: fpdf2's font object has exactly the fields the cache
knows, and those it gives each document are the ones fpdf2 sets anew for a font.
If fpdf2 changes, these fail first and say what to review; the certificate then
parses the font per document (correct, slower) until the cache is reviewed."""

from __future__ import annotations

from typing import Any

from notary.etsi import certificate


def _added(pdf: Any) -> Any:
    pdf.add_font("NotoSansCJK", "", str(certificate.FONT_CJK), collection_font_number=0)
    return pdf.fonts["notosanscjk"]


def test_fpdf2_font_object_is_the_one_the_cache_copies() -> None:
    fields = certificate._fpdf2_font_fields()
    assert fields == certificate.FPDF2_FONT_FIELDS, (
        "fpdf2's TTFFont fields changed (new: "
        f"{sorted(fields - certificate.FPDF2_FONT_FIELDS)}, gone: "
        f"{sorted(certificate.FPDF2_FONT_FIELDS - fields)}): review "
        "notary/etsi/certificate.py _add_cjk_font and FPDF2_FONT_FIELDS"
    )
    assert set(certificate._PER_DOCUMENT) <= fields


def test_only_the_per_document_fields_differ_between_two_documents() -> None:
    """Two documents' fonts from fpdf2's own ``add_font`` (the second with one font more
    before it) differ only in fields the cache sets per document; every other field
    is equal, so sharing it between documents is what fpdf2 itself would give."""
    from fpdf import FPDF

    one = _added(FPDF())
    other_pdf = FPDF()
    other_pdf.add_font("DejaVu", "", str(certificate.FONT))
    two = _added(other_pdf)
    assert (one.i, two.i) == (1, 2)
    for name in sorted(certificate.FPDF2_FONT_FIELDS - set(certificate._PER_DOCUMENT)):
        a, b = getattr(one, name, None), getattr(two, name, None)
        same = a == b if name != "desc" else vars(a) == vars(b)
        assert same, f"fpdf2's font field {name!r} differs per document: copy it per document"


def test_a_changed_fpdf2_falls_back_to_add_font(monkeypatch: Any) -> None:
    from fpdf import FPDF

    monkeypatch.setattr(certificate, "FPDF2_FONT_FIELDS", frozenset({"i"}))
    pdf: Any = FPDF()
    certificate._add_cjk_font(pdf)
    font = pdf.fonts["notosanscjk"]
    assert font is not certificate._cjk_font()
    assert font.cmap == certificate._cjk_font().cmap

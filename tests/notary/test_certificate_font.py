"""The certificate's Noto Sans CJK fallback is parsed once a process
(notary/etsi/certificate.py ``_cjk_font``) and each document gets its own copy: the
PDF it writes is the one fpdf2's own ``add_font`` writes, twice in a row."""

from __future__ import annotations

import re
from typing import Any

from notary.etsi import certificate

TEXT = "Zoë 王小明 山田太郎 やまだ 김민준"


def _pdf(cached: bool) -> bytes:
    from fpdf import FPDF

    pdf: Any = FPDF(enforce_compliance="PDFA_2B")
    pdf.add_font("DejaVu", "", str(certificate.FONT))
    if cached:
        certificate._add_cjk_font(pdf)
    else:
        pdf.add_font("NotoSansCJK", "", str(certificate.FONT_CJK), collection_font_number=0)
    pdf.set_fallback_fonts(["NotoSansCJK"], exact_match=False)
    pdf.add_page()
    pdf.set_font("DejaVu", "", 10)
    pdf.multi_cell(0, 5, TEXT)
    out = bytes(pdf.output())
    # the clock's dates and the random document ids aside
    return re.sub(
        rb'"\d{4}-\d\d-\d\dT[\d:]+\+00:00"|uuid:[0-9a-f-]+|<[0-9A-F]{32}>|D:\d{14}Z?', b"X", out
    )


def test_cached_cjk_font_writes_what_add_font_writes() -> None:
    plain = _pdf(cached=False)
    first, second = _pdf(cached=True), _pdf(cached=True)
    assert b"NotoSansCJK" in plain
    assert first == plain
    assert second == plain  # the second document is not the first's subset
    assert certificate._cjk_font.cache_info().currsize == 1

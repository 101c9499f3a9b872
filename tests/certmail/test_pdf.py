"""certmail.bundle.documents.pdf: the text-only PDF writer of the certificate (byte-exact)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from certmail.bundle.documents.pdf import _ESCAPES, _LINES_PER_PAGE, _escaped, text_pdf


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_escaping_fast_path_equals_the_table(text: str) -> None:
    assert _escaped(text) == text.translate(_ESCAPES)


def test_escapes_and_control_characters() -> None:
    pdf = text_pdf(["a (b) c\\d", "tab\there"], title="t(1)")
    assert b"(a \\(b\\) c\\\\d) Tj T*" in pdf
    assert b"(tab?here) Tj T*" in pdf
    assert b"/Title (t\\(1\\))" in pdf


def test_cross_reference_table_points_at_every_object() -> None:
    lines = [f"line {i} (with parens)" for i in range(2 * _LINES_PER_PAGE + 3)]
    pdf = text_pdf(["# Heading", *lines], title="x")
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.endswith(b"%%EOF\n")
    assert b"/Count 3 >>" in pdf  # three pages
    start = int(re.search(rb"startxref\n(\d+)\n", pdf).group(1))  # type: ignore[union-attr]
    assert pdf[start:].startswith(b"xref\n0 ")
    count = int(re.match(rb"xref\n0 (\d+)\n", pdf[start:]).group(1))  # type: ignore[union-attr]
    offsets = re.findall(rb"(\d{10}) 00000 n \n", pdf[start:])
    assert len(offsets) == count - 1
    for num, off in enumerate(offsets, start=1):
        assert pdf[int(off) :].startswith(b"%d 0 obj\n" % num)
    # Stream lengths are exact.
    for m in re.finditer(rb"<< /Length (\d+) >>\nstream\n", pdf):
        end = m.end() + int(m.group(1))
        assert pdf[end:].startswith(b"endstream")
    assert text_pdf(["# Heading", *lines], title="x") == pdf  # a pure function

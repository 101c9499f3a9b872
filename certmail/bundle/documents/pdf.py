"""A minimal text-only PDF writer (ISO 32000-1 / PDF 1.4 subset), no dependencies.

Writes pages of monospaced-looking lines in the standard Type 1 font
Helvetica (one of the 14 fonts every PDF reader has, so nothing is embedded),
WinAnsiEncoding, with a correct cross-reference table. The output is a pure
function of its input: no creation date, no random ID, so a verifier can
regenerate the file and compare bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["text_pdf"]

_PAGE_W, _PAGE_H = 595, 842  # A4 in points
_MARGIN = 50
_LEADING = 13
_LINES_PER_PAGE = (_PAGE_H - 2 * _MARGIN) // _LEADING


#: Control characters to ``?`` and ``\\ ( )`` escaped, before the WinAnsi encoding: the
#: same bytes as encoding first (cp1252 maps exactly these characters to those bytes,
#: and what it cannot encode becomes ``?``, which needs no escape).
_ESCAPES = {**{c: "?" for c in range(32)}, ord("\\"): "\\\\", ord("("): "\\(", ord(")"): "\\)"}


def _escaped(text: str) -> str:
    """``text`` with :data:`_ESCAPES` applied. ``str.translate`` with a mapping costs a
    dictionary lookup per character (2.7 µs a line here); text without control
    characters, nearly all of it, takes three ``replace`` calls instead (the same
    result: backslashes are doubled before the parentheses add theirs)."""
    if not text.isprintable():
        return text.translate(_ESCAPES)
    return _quoted(text)


def _quoted(text: str) -> str:
    """``\\ ( )`` escaped (backslashes first, then the parentheses add theirs)."""
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _escaped_lines(texts: Sequence[str]) -> list[str]:
    """:func:`_escaped` of each of ``texts``: when all are printable (nearly always), the
    three ``replace`` calls once over the lines joined by LF (no printable line holds
    one), then split again."""
    if not texts:
        return []
    if "".join(texts).isprintable():
        return _quoted("\n".join(texts)).split("\n")
    return [_escaped(t) for t in texts]


def _escape(line: str) -> bytes:
    """A PDF literal string body: WinAnsi (Latin-1 subset) bytes, ``\\ ( )`` escaped."""
    return _winansi(_escaped(line))


def _page_stream(lines: Sequence[tuple[str, bool]]) -> bytes:
    parts = ["BT", f"{_LEADING} TL", f"{_MARGIN} {_PAGE_H - _MARGIN} Td"]
    font = None
    for (_, bold), text in zip(lines, _escaped_lines([t for t, _ in lines]), strict=True):
        want = "/F2 10 Tf" if bold else "/F1 9 Tf"
        if want != font:
            parts.append(want)
            font = want
        parts.append("(" + text + ") Tj T*")
    parts.append("ET\n")
    return _winansi("\n".join(parts))


def _winansi(text: str) -> bytes:
    """``text`` in WinAnsi (cp1252, what it cannot encode ``?``); ASCII text (nearly all)
    by the ASCII codec, a copy: cp1252 maps ASCII to itself, and its charmap encoder
    costs a table lookup per character."""
    return text.encode("ascii") if text.isascii() else text.encode("cp1252", "replace")


def text_pdf(lines: Sequence[str], *, title: str = "") -> bytes:
    """A PDF of ``lines`` (a line starting with ``# `` is a bold heading), paged as needed."""
    styled = [(ln[2:], True) if ln.startswith("# ") else (ln, False) for ln in lines]
    pages = [styled[i : i + _LINES_PER_PAGE] for i in range(0, len(styled), _LINES_PER_PAGE)]
    if not pages:
        pages = [[]]
    # Objects: 1 catalog, 2 pages, 3 F1, 4 F2, 5 info, then (page, content) pairs.
    n_pages = len(pages)
    page_ids = [6 + 2 * i for i in range(n_pages)]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(f"{p} 0 R".encode() for p in page_ids)
        + f"] /Count {n_pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Title (" + _escape(title) + b") /Producer (certmail) >>",
    ]
    for i, page in enumerate(pages):
        stream = _page_stream(page)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {_PAGE_W} {_PAGE_H}]"
            f" /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >>"
            f" /Contents {page_ids[i] + 1} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"endstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{num} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode()
    out += b"0000000000 65535 f \n"
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 5 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)

"""The notary's signed PDF certificate renders any script and fits A4 and US Letter.

Names in Latin, Greek, Cyrillic, CJK and Hangul go through the real API
(``GET /v1/messages/{sha256}/certificate.pdf?paper=...``); poppler's pdftotext
must read each back, pdffonts must show the fonts embedded (DejaVu Sans and the
Noto Sans CJK fallback), pdfsig must still call the signature valid, and every
word's box (pdftotext -bbox) must lie inside the page's margins on both papers.
"""

from __future__ import annotations

import hashlib
import html
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from notary.api import create_app
from notary.sequencer import Submission
from notary.service import NotaryService
from tests.fixtures.notary import init_notary_dir

MESSAGE = b"From: zoe@example.test\r\nTo: many@rcpt.test\r\nSubject: x\r\n\r\nhello\r\n"
SHA = hashlib.sha256(MESSAGE).hexdigest()
MID = "<scripts-1@example.test>"
NAMES = {
    "Latin": "Zoë Ångström-Øresund",
    "Greek": "Αλέξανδρος Παπαδόπουλος",
    "Cyrillic": "Дмитрий Шостакович",
    "Chinese": "王小明",
    "Japanese": "山田太郎 やまだ",
    "Hangul": "김민준",
}
#: One unbroken word longer than a line: it must be wrapped, not cut at the edge.
LONG = "x" * 180 + "@rcpt.test"
#: fpdf2's default margin is 1 cm; the page sizes in points.
PAPERS = {"a4": (595.28, 841.89), "letter": (612.0, 792.0)}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    svc = NotaryService.open(init_notary_dir(tmp_path_factory.mktemp("scripts") / "notary"))
    with TestClient(create_app(svc), raise_server_exceptions=False) as c:
        acct, token = svc.add_account(["zoe@example.test"])
        auth = {"Authorization": f"Bearer {token}"}
        r = c.post("/v1/notarize", json={"sha256": SHA, "message_id": MID}, headers=auth)
        assert r.status_code == 200, r.text
        later = [
            Submission("RelayToNonERDS", SHA, MID, acct.id, {"recipient": rcpt}, False)
            for rcpt in [f"{name} <{script.lower()}@rcpt.test>" for script, name in NAMES.items()]
            + [LONG]
        ]
        c.portal.call(svc.sequencer.submit, later)  # type: ignore[union-attr]
        yield c, auth
    svc.close()


def _run(*argv: str) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_every_script_renders_and_fits_the_page(
    client: tuple[TestClient, dict[str, str]], paper: str, tmp_path: Path
) -> None:
    c, auth = client
    r = c.get(f"/v1/messages/{SHA}/certificate.pdf?paper={paper}", headers=auth)
    assert r.status_code == 200, r.text
    pdf = tmp_path / "certificate.pdf"
    pdf.write_bytes(r.content)
    text = _run("pdftotext", str(pdf), "-")
    for script, name in NAMES.items():
        assert name in text, f"{script} name {name!r} not in the PDF's text"
    assert "Signature is Valid." in _run("pdfsig", str(pdf))
    fonts = _run("pdffonts", str(pdf))
    assert "DejaVuSans" in fonts and "NotoSansCJK" in fonts, fonts
    assert all(" yes " in line for line in fonts.splitlines()[2:]), fonts  # all embedded
    width, height = PAPERS[paper]
    info = _run("pdfinfo", str(pdf))
    m = re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", info)
    assert m is not None and (float(m[1]), float(m[2])) == pytest.approx((width, height), abs=1)
    words = re.findall(
        r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>',
        _run("pdftotext", "-bbox", str(pdf), "-"),
    )
    assert len(words) > 50
    margin = 28.3  # 1 cm: fpdf2's margins
    for x0, y0, x1, y1, word in words:
        assert margin - 1 <= float(x0) and float(x1) <= width - margin + 1, html.unescape(word)
        assert 0 <= float(y0) and float(y1) <= height, html.unescape(word)
    joined = "".join(html.unescape(w[4]) for w in words)
    assert LONG in joined  # wrapped over lines, every character there


def test_latin_only_certificate_embeds_no_cjk_font(tmp_path: Path) -> None:
    from notary.etsi.certificate import render_certificate

    stmt = {"event": "RelayToNonERDS", "time": "2026-12-01T00:00:00.000000Z"}
    pdf = tmp_path / "c.pdf"
    pdf.write_bytes(
        render_certificate(
            [{**stmt, "recipient": "Дмитрий <d@rcpt.test>"}], origin="o", sha256=SHA, message_id=MID
        )
    )
    fonts = _run("pdffonts", str(pdf))
    assert "DejaVuSans" in fonts and "NotoSansCJK" not in fonts
    assert "Дмитрий" in _run("pdftotext", str(pdf), "-")


def test_unknown_paper_is_a_400(client: tuple[TestClient, dict[str, str]]) -> None:
    c, auth = client
    r = c.get(f"/v1/messages/{SHA}/certificate.pdf?paper=a3", headers=auth)
    assert r.status_code == 400
    assert r.json()["error"] and "a4, letter" in r.json()["message"]

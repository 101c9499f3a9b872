"""The in-browser verifier gates the bundle format as ``certmail proof verify`` does, by
one table (notary/web/src/layout.js FEATURES, certmail/bundle/layout.py FEATURES): a
bundle that says format 3 or 4 without that format's members, or format 5 (6) without
read receipts or a version 2 acknowledgement (or the S/MIME signer's chain), is refused
by both in the same words; the golden bundles of each format stay valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certmail.bundle import read_members, verify_bundle, write_members
from certmail.bundle.layout import ANCHOR_CHECKPOINT, ANCHOR_ROOTS, ANCHOR_TOKEN, format_text
from keys.errors import VerificationError
from tests.web.browser import verify_in_page

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "proof-bundle"


def _golden(version: str) -> dict[str, bytes]:
    return read_members((VECTORS / version / "signed-ack.certmail-proof.zip").read_bytes())


def _labelled(files: dict[str, bytes], fmt: int) -> bytes:
    return write_members({**files, "bundle.json": format_text(fmt)})


def _cases() -> list[tuple[str, str, bytes, str | None]]:
    """(name, vectors directory, bundle, the refusal it names or None when valid)."""
    v2, v3, v4 = _golden("v2"), _golden("v3"), _golden("v4")
    unanchored = {
        n: d
        for n, d in v4.items()
        if not (ANCHOR_TOKEN.fullmatch(n) or ANCHOR_CHECKPOINT.fullmatch(n) or n == ANCHOR_ROOTS)
    }
    return [
        ("v4 as made", "v4", write_members(v4), None),
        ("v3 as made", "v3", write_members(v3), None),
        ("v4 without its anchors", "v4", write_members(unanchored), "says format 4"),
        ("v2 labelled 4", "v2", _labelled(v2, 4), "says format 4"),
        ("v3 labelled 4", "v3", _labelled(v3, 4), "says format 4"),
        ("v2 labelled 3", "v2", _labelled(v2, 3), "says format 3"),
        ("v4 labelled 5", "v4", _labelled(v4, 5), "says format 5"),
        ("v4 labelled 6", "v4", _labelled(v4, 6), "says format 6"),
        ("v4 labelled 3", "v4", _labelled(v4, 3), "(outside time-stamps: 4)"),
    ]


def _python(version: str, bundle: bytes) -> str | None:
    d = VECTORS / version
    roots = x509.load_pem_x509_certificates((d / "tsa-root.pem").read_bytes())
    try:
        verify_bundle(bundle, vkey=(d / "notary.vkey").read_text().strip(), tsa_roots=roots)
    except VerificationError as e:
        return e.message
    return None


@pytest.mark.parametrize("version", ["v2", "v3", "v4"])
def test_format_gates_match_the_cli(
    version: str,
    browser: Any,
    page: Path,
) -> None:
    cases = [c for c in _cases() if c[1] == version]
    d = VECTORS / version
    browser.get(page.as_uri())
    got = verify_in_page(
        browser,
        [(bundle, True) for _, _, bundle, _ in cases],
        (d / "notary.vkey").read_text().strip(),
        (d / "tsa-root.pem").read_text(),
    )
    for (name, _, bundle, why), js in zip(cases, got, strict=True):
        py = _python(version, bundle)
        if why is None:
            assert py is None and js["valid"], (name, py, js["error"])
            continue
        assert py is not None and why in py, (name, py)
        assert not js["valid"] and js["error"] == py, (name, py, js["error"])

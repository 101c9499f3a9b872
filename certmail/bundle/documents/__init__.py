"""The human-readable files of a proof bundle: certificate.html, certificate.pdf, VERIFY.txt.

All three are pure functions of :class:`Facts`, which :mod:`certmail.bundle.verify`
derives from the bundle's verified evidence alone. ``certmail proof verify``
derives the facts again, re-renders the three files and requires them to be
byte-identical to those in the bundle: a human-readable file cannot say
anything the evidence does not (see docs/proof-bundle.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from certmail.bundle.documents.facts import (
    CheckpointFact,
    EventFact,
    Facts,
    MimeLayout,
    TsaFact,
    proves,
)
from certmail.bundle.documents.html import render_html
from certmail.bundle.documents.text import render_pdf
from certmail.bundle.documents.verify_txt import render_verify_txt
from certmail.bundle.layout import HTML, PDF, VERIFY_TXT

__all__ = [
    "CheckpointFact",
    "EventFact",
    "Facts",
    "MimeLayout",
    "TsaFact",
    "matches",
    "proves",
    "render",
    "render_html",
    "render_pdf",
    "render_verify_txt",
]


def render(facts: Facts, reveal_subject: bool) -> dict[str, bytes]:
    """The three documents of ``facts``; the Subject: shown only with ``reveal_subject``
    (VERIFY.txt never shows it)."""
    shown = facts if reveal_subject else replace(facts, subject=None)
    return {
        HTML: render_html(shown),
        PDF: render_pdf(shown),
        VERIFY_TXT: render_verify_txt(facts),
    }


def matches(files: Mapping[str, bytes], facts: Facts) -> bool:
    """True when the three documents in ``files`` are those :func:`render` makes of
    ``facts``, the Subject: hidden or shown, rendering only as far as needed."""
    if files[VERIFY_TXT] != render_verify_txt(facts):
        return False
    hidden = facts if facts.subject is None else replace(facts, subject=None)
    shown = [hidden] if hidden is facts else [hidden, facts]
    return any(files[HTML] == render_html(f) and files[PDF] == render_pdf(f) for f in shown)

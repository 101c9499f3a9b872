"""The human-readable files of a proof bundle: certificate.html, certificate.pdf, VERIFY.txt.

All three are pure functions of :class:`Facts`, which :mod:`certmail.bundle.verify`
derives from the bundle's verified evidence alone. ``certmail proof verify``
derives the facts again, re-renders the three files and requires them to be
byte-identical to those in the bundle: a human-readable file cannot say
anything the evidence does not (see docs/proof-bundle.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from certmail.bundle.documents.facts import (
    RENDERER,
    RENDERER_ANCHORED,
    RENDERERS,
    CheckpointFact,
    EventFact,
    Facts,
    TsaFact,
    proves,
)
from certmail.bundle.documents.html import render_html, stated_subject
from certmail.bundle.documents.text import render_pdf
from certmail.bundle.documents.verify_txt import render_verify_txt
from certmail.bundle.layout import HTML, PDF, VERIFY_TXT

if TYPE_CHECKING:
    from certmail.bundle.documents.feature_facts import MimeLayout

__all__ = [
    "RENDERER",
    "RENDERERS",
    "RENDERER_ANCHORED",
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
    "renderers_of",
]


def __getattr__(name: str) -> Any:
    """:class:`MimeLayout` (an OpenPGP message's, :mod:`.feature_facts`), on first use."""
    if name == "MimeLayout":
        from certmail.bundle.documents.feature_facts import MimeLayout

        return MimeLayout
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: The renderers whose documents a bundle of each format may hold, newest first. A
#: format's renderers never change once released (docs/proof-bundle.md, version table).
FORMAT_RENDERERS = {1: (2, 1), 2: (3,), 3: (3,), 4: (4,), 5: (5,), 6: (6,)}


def renderers_of(fmt: int) -> tuple[int, ...]:
    """The released renderers of bundle format ``fmt``."""
    return FORMAT_RENDERERS[fmt]


def render(
    facts: Facts, reveal_subject: bool, protected_subject: str | None = None
) -> dict[str, bytes]:
    """The three documents of ``facts`` by the current renderer; the Subject: shown only
    with ``reveal_subject`` (VERIFY.txt never shows it), and then ``protected_subject``
    (the Subject the exporter read inside the encryption) instead of the outer one,
    marked as such, when given."""
    if not reveal_subject:
        shown = facts.evolve(subject=None)
    elif protected_subject is not None:
        shown = facts.evolve(subject=protected_subject, protected_subject=True)
    else:
        shown = facts
    return {
        HTML: render_html(shown),
        PDF: render_pdf(shown),
        VERIFY_TXT: render_verify_txt(facts),
    }


def _shown(files: Mapping[str, bytes], facts: Facts) -> list[Facts]:
    """The forms of ``facts`` the certificate may show: the Subject hidden, the outer one,
    and (renderer 2, encrypted message) the protected one the page states. The stated
    one is only a candidate: the page must be byte-identical to the one rendered with it."""
    out = [facts.evolve(subject=None)]
    if facts.subject is not None:
        out.append(facts)
    if facts.renderer >= 2 and facts.mime is not None and facts.mime.kind == "encrypted":
        stated = stated_subject(files[HTML])
        if stated is not None:
            out.append(facts.evolve(subject=stated, protected_subject=True))
    return out


def matches(
    files: Mapping[str, bytes], facts: Facts, renderers: tuple[int, ...] = RENDERERS
) -> bool:
    """True when the three documents in ``files`` are those :func:`render` makes of
    ``facts`` by one of ``renderers`` (released ones, :data:`RENDERERS`; a bundle's are
    those of its format, :func:`renderers_of`), the Subject: hidden or shown, rendering
    only as far as needed."""
    for renderer in renderers:
        f = facts if facts.renderer == renderer else facts.evolve(renderer=renderer)
        if files[VERIFY_TXT] != render_verify_txt(f):
            continue
        if any(
            files[HTML] == render_html(g) and files[PDF] == render_pdf(g) for g in _shown(files, f)
        ):
            return True
    return False

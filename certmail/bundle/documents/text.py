"""certificate.pdf of a proof bundle: the certificate as text lines (docs/proof-bundle.md).

A pure function of :class:`Facts`; :mod:`certmail.bundle.documents.pdf` writes the PDF.
"""

from __future__ import annotations

from functools import lru_cache

from certmail.bundle.documents.anchored import anchors_text
from certmail.bundle.documents.facts import PROTECTED_NOTE, Facts, proves
from certmail.bundle.documents.pdf import text_pdf

__all__ = ["render_pdf"]


def _text_lines(f: Facts) -> list[str]:
    lines = [
        "# Certificate of registered email",
        "",
        "This certificate summarises the evidence in this proof bundle; the evidence",
        "files prove it and anyone can check them offline (see VERIFY.txt).",
        "",
        "# Message",
        f"From:        {f.sender}",
        f"To:          {', '.join(f.recipients) or '(none named)'}",
        *(
            [f"Bcc:         {', '.join(f.blind)} (blind copy: this bundle is made for it)"]
            if f.blind
            else []
        ),
        f"Subject:     {f.subject if f.subject is not None else '(not revealed)'}",
        *_protected(f),
        f"Message-ID:  {f.message_id}",
        f"SHA-256:     {f.sha256}",
        f"Size:        {f.size} bytes",
        "",
        "# Events",
    ]
    for e in f.events:
        who = f"  {e.recipient}" if e.recipient else ""
        lines.append(f"{e.number:02d} {e.time}  {e.event}{who}  (log index {e.index})")
        what = proves(e.event, e.tsa is not None, e.channel, f.renderer, e.mode)
        for chunk in _wrap("proves: " + what, 90):
            lines.append("     " + chunk)
        for d in e.details:
            for chunk in _wrap(d, 90):
                lines.append("     " + chunk)
    lines += ["", "# Transparency log", f"Verifier key: {f.vkey}"]
    for c in f.checkpoints:
        lines.append(f"checkpoint {c.origin} size {c.size}")
        lines.append(f"     root {c.root_hex}")
    lines += ["", "# Time-stamps (RFC 3161)"]
    for e in f.events:
        if e.tsa is not None:
            lines.append(f"{e.number:02d} {e.tsa.gen_time} serial {e.tsa.serial}")
            lines.append(f"     policy {e.tsa.policy}; TSA {e.tsa.signer}")
    for subject, fp in f.tsa_chain:
        lines.append(f"chain: {subject}")
        lines.append(f"     sha256 {fp}")
    lines += anchors_text(f)  # renderer 4: outside time-stamps over checkpoints
    lines += [
        "",
        "# How to verify",
        "certmail proof verify BUNDLE.zip --vkey notary.vkey --tsa-root root.pem",
        *(
            ()
            if f.renderer == 1
            else (
                "(without both it exits non-zero: the bundle's own key and root prove nothing;",
                "--trust-bundle-key and --trust-bundle-root accept them)",
            )
        ),
        "or with stock tools: see VERIFY.txt in the bundle.",
    ]
    return lines


def _protected(f: Facts) -> tuple[str, ...]:
    """The note under a Subject the exporter read inside the encryption."""
    if f.subject is None or not f.protected_subject:
        return ()
    return tuple("             " + c for c in _wrap(PROTECTED_NOTE, 78))


@lru_cache(maxsize=512)
def _wrap(text: str, width: int) -> tuple[str, ...]:
    """``text`` in lines of at most ``width`` characters (a longer word alone on its line);
    remembered (what an event proves repeats in every bundle)."""
    out: list[str] = []
    cur = ""
    for word in text.split(" "):
        if cur and len(cur) + 1 + len(word) > width:
            out.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    if cur or not out:
        out.append(cur)
    return tuple(out)


def render_pdf(f: Facts) -> bytes:
    """certificate.pdf: the same content as text, PDF 1.4, Helvetica."""
    return text_pdf(_text_lines(f), title=f"Certificate of registered email {f.sha256[:16]}")

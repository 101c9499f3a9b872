"""What renderer 5 adds to the certificate (bundle format 5, certmail/bundle/mdns.py):
each v2 acknowledgement's virus-scan verdicts, labelled with who asserted them, and the
read receipts (RFC 8098 MDNs) the bundle carries, with what each proves (beside what
renderer 4 shows of outside time-stamps: certmail/bundle/documents/anchored.py). Pure."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from certmail.bundle.documents.facts import RENDERER_MDNS, EventFact, Facts

if TYPE_CHECKING:
    from certmail.bundle.documents.feature_facts import MdnFact

__all__ = ["mdn_lines", "mdns_html", "shown_scans"]

_SIGNED = (
    "a read receipt (RFC 8098 MDN) signed with an OpenPGP key: the recipient's mail program "
    "reported the message {disposition}; it is the recipient's word only when the signature "
    "is by the recipient's key (certmail proof verify checks it with the keys in keys/)"
)
_SIGNED_SMIME = (
    "a read receipt (RFC 8098 MDN) signed with S/MIME: the recipient's mail program "
    "reported the message {disposition}; it is the recipient's word only when the "
    "certificate is the recipient's (certmail proof verify --smime-ca checks it)"
)
_WEAK_ROW = ' class="weak"'
_UNSIGNED = (
    "WEAK EVIDENCE: an unsigned read receipt (RFC 8098 MDN) reporting the message "
    "{disposition}; anyone could have written it"
)


def shown_scans(f: Facts, e: EventFact) -> tuple[str, ...]:
    """The scan verdict lines of an event, from renderer 5 on."""
    return e.scans if f.renderer >= RENDERER_MDNS else ()


def proves_mdn(m: MdnFact) -> str:
    """One sentence: what a read receipt proves."""
    text = (_SIGNED_SMIME if m.smime else _SIGNED) if m.signed else _UNSIGNED
    return text.format(disposition=m.disposition)


def mdn_lines(f: Facts) -> list[str]:
    """The text certificate's section on read receipts (none: no section)."""
    if f.renderer < RENDERER_MDNS or not f.mdns:
        return []
    out = ["", "# Read receipts (RFC 8098)"]
    for m in f.mdns:
        out.append(f"{m.file}  from {m.final_recipient}: {proves_mdn(m)}")
    return out


def mdns_html(f: Facts) -> str:
    """The HTML certificate's section on read receipts (none: empty)."""
    if f.renderer < RENDERER_MDNS or not f.mdns:
        return ""
    rows = "".join(
        f"<tr{'' if m.signed else _WEAK_ROW}><td>{escape(m.file)}</td>"
        f"<td>{escape(m.final_recipient)}</td><td>{escape(proves_mdn(m))}</td></tr>"
        for m in f.mdns
    )
    return (
        "<h2>Read receipts (RFC 8098)</h2>\n<table>\n"
        "<tr><th>File</th><th>From</th><th>What it proves</th></tr>\n"
        f"{rows}\n</table>\n"
    )

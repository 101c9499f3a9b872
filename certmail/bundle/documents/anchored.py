"""Renderer 4's parts about outside time-stamps over checkpoints (bundle format 4):
a section of VERIFY.txt (the ``openssl ts -verify`` command of each token), of
certificate.html and of certificate.pdf, each saying what the anchor proves.

Pure functions of :class:`Facts`; empty below renderer 4 or without anchors, so the
documents of every earlier renderer stay byte for byte what they were.
"""

from __future__ import annotations

from html import escape

from certmail.bundle.documents.facts import ANCHOR_PROVES, Facts

__all__ = ["anchors_html", "anchors_text", "anchors_verify_txt"]


def _applies(f: Facts) -> bool:
    return f.renderer >= 4 and bool(f.anchors)


def anchors_verify_txt(f: Facts) -> list[str]:
    """VERIFY.txt's section 2b."""
    if not _applies(f):
        return []
    out = [
        "2b. Outside time-stamps over checkpoints (openssl)",
        "--------------------------------------------------",
        "evidence/anchor-N.checkpoint is the notary's signed checkpoint of tree",
        "size N (the C2SP signed note exactly as the notary signed it: the",
        "checkpoint text, a blank line, the notary's signature line);",
        "evidence/anchor-N-ID.tsr is an outside TSA's RFC 3161 token whose",
        "messageImprint is the SHA-256 of that file. What it proves: " + ANCHOR_PROVES + ".",
        "anchor-roots.pem holds the outside TSAs' roots as the notary was",
        "configured with them; use the root you trust (proof verify --anchor-root):",
        "",
    ]
    for a in f.anchors:
        out.append(
            f"    openssl ts -verify -in {a.file} -token_in "
            f"-data {a.checkpoint_file} -CAfile anchor-roots.pem"
        )
    out += ["", 'Each must print "Verification: OK".', ""]
    for a in f.anchors:
        out.append(f"  {a.file}: tree size {a.size}, genTime {a.gen_time}")
        out.append(f"    serial {a.serial}; TSA {a.signer}")
    return [*out, ""]


def anchors_html(f: Facts) -> str:
    """certificate.html's section on outside time-stamps."""
    if not _applies(f):
        return ""
    rows = "".join(
        f'<tr><td>{a.size}</td><td class="t">{escape(a.gen_time)}</td>'
        f"<td>{escape(a.serial)}</td><td>{escape(a.signer)}</td></tr>"
        for a in f.anchors
    )
    return f"""<h2>Outside time-stamps over the log (RFC 3161)</h2>
<p>{escape(ANCHOR_PROVES[0].upper() + ANCHOR_PROVES[1:])}.</p>
<table>
<tr><th>Tree size</th><th>Time</th><th>Serial</th><th>Outside TSA</th></tr>
{rows}
</table>
"""


def anchors_text(f: Facts) -> list[str]:
    """certificate.pdf's lines on outside time-stamps (unwrapped: the caller wraps)."""
    if not _applies(f):
        return []
    import textwrap  # only for a bundle with anchors (format 4)

    out = ["", "# Outside time-stamps over the log (RFC 3161)"]
    out += textwrap.wrap(ANCHOR_PROVES[0].upper() + ANCHOR_PROVES[1:] + ".", 90)
    for a in f.anchors:
        out.append(f"tree size {a.size}: {a.gen_time} serial {a.serial}")
        out.append(f"     TSA {a.signer}")
    return out

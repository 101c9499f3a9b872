"""certificate.html of a proof bundle (docs/proof-bundle.md): a pure function of :class:`Facts`.

The page is self-contained: inline CSS, no script, no external resource of any
kind. Every string from the evidence or the message is HTML-escaped.
"""

from __future__ import annotations

from html import escape

from certmail.bundle.documents.anchored import anchors_html
from certmail.bundle.documents.facts import PROTECTED_NOTE, WEAK, Facts, proves

__all__ = ["render_html", "stated_subject"]

_SUBJECT_AT = "<dt>Subject</dt><dd>"


def _pre(text: str) -> str:
    return f"<code>{escape(text)}</code>"


_CSS = """
body{font-family:Georgia,'DejaVu Serif',serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#1b1b1b;background:#fff}
h1{font-size:1.7rem;border-bottom:3px double #333;padding-bottom:.4rem}
h2{font-size:1.2rem;margin-top:1.8rem;color:#333}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{border:1px solid #bbb;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#eee}
code{font-family:'DejaVu Sans Mono',monospace;font-size:.85rem;word-break:break-all}
.weak{background:#fff3cd}
.weak strong{color:#8a5a00}
.note{font-size:.9rem;color:#444}
.t{white-space:nowrap}
dl{display:grid;grid-template-columns:12rem 1fr;gap:.3rem 1rem}
dt{font-weight:bold}
dd{margin:0}
""".strip()


def _head(f: Facts) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Certificate of registered email {escape(f.sha256[:16])}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Certificate of registered email</h1>
<p class="note">This certificate summarises the evidence in this proof bundle. It proves
nothing by itself: the evidence files do, and anyone can check them offline with
<code>certmail proof verify</code> or with stock tools (VERIFY.txt).</p>
"""


def _blind(f: Facts) -> str:
    """The blind copy a bundle was made for (docs/relay.md, "Blind copies"); else nothing."""
    if not f.blind:
        return ""
    who = escape(", ".join(f.blind))
    return f"\n<dt>Bcc</dt><dd>{who} (blind copy: this bundle is made for it)</dd>"


def _message(f: Facts) -> str:
    subject = escape(f.subject) if f.subject is not None else "<em>not revealed</em>"
    if f.subject is not None and f.protected_subject:
        subject += f" <em>{PROTECTED_NOTE}</em>"
    recipients = escape(", ".join(f.recipients)) or "<em>none named</em>"
    return f"""<h2>Message</h2>
<dl>
<dt>From</dt><dd>{escape(f.sender)}</dd>
<dt>To</dt><dd>{recipients}</dd>{_blind(f)}
<dt>Subject</dt><dd>{subject}</dd>
<dt>Message-ID</dt><dd>{_pre(f.message_id)}</dd>
<dt>SHA-256</dt><dd>{_pre(f.sha256)}</dd>
<dt>Size</dt><dd>{f.size} bytes (message.eml)</dd>
</dl>
"""


def _events(f: Facts) -> str:
    rows = []
    for e in f.events:
        cls = ' class="weak"' if e.event == WEAK else ""
        what = escape(proves(e.event, e.tsa is not None, e.channel, f.renderer, e.mode))
        if e.event == WEAK:
            what = "<strong>weak evidence</strong>: " + what
        extra = "".join(f"<br>{escape(d)}" for d in e.details)
        rows.append(
            f"<tr{cls}><td>{e.number:02d}</td><td>{escape(e.event)}</td>"
            f'<td class="t">{escape(e.time)}</td><td>{escape(e.recipient or "")}</td>'
            f"<td>{what}{extra}</td><td>{e.index}</td></tr>"
        )
    return f"""<h2>Events</h2>
<table>
<tr><th>No</th><th>Event</th><th>Time (UTC)</th><th>Recipient</th><th>What it proves</th>
<th>Log index</th></tr>
{"".join(rows)}
</table>
"""


def _log(f: Facts) -> str:
    cps = "".join(
        f"<tr><td>{escape(c.origin)}</td><td>{c.size}</td><td>{_pre(c.root_hex)}</td></tr>"
        for c in f.checkpoints
    )
    cons = ", ".join(f"{m} → {n}" for m, n in f.consistency) or "one checkpoint: none needed"
    return f"""<h2>Transparency log</h2>
<p>Notary verifier key: {_pre(f.vkey)}</p>
<table>
<tr><th>Log</th><th>Tree size</th><th>Root hash (SHA-256)</th></tr>
{cps}
</table>
<p>Consistency proofs between checkpoints: {escape(cons)}</p>
"""


def _timestamps(f: Facts) -> str:
    tsas = (
        "".join(
            f'<tr><td>{e.number:02d}</td><td class="t">{escape(e.tsa.gen_time)}</td>'
            f"<td>{_pre(e.tsa.serial)}</td><td>{escape(e.tsa.policy)}</td>"
            f"<td>{escape(e.tsa.signer)}</td></tr>"
            for e in f.events
            if e.tsa is not None
        )
        or '<tr><td colspan="5">no RFC 3161 token in this bundle</td></tr>'
    )
    chain = "".join(f"<tr><td>{escape(s)}</td><td>{_pre(fp)}</td></tr>" for s, fp in f.tsa_chain)
    return f"""<h2>Time-stamps (RFC 3161)</h2>
<table>
<tr><th>Event</th><th>Time</th><th>Serial</th><th>Policy</th><th>TSA</th></tr>
{tsas}
</table>
<p>TSA certificate chain (tsa-chain.pem):</p>
<table>
<tr><th>Subject</th><th>SHA-256 fingerprint</th></tr>
{chain}
</table>
"""


def stated_subject(page: bytes) -> str | None:
    """The protected Subject a certificate.html states (renderer 2), unescaped; else None.
    Only a candidate: the page must still be byte-identical to the one rendered with it."""
    from html import unescape

    text = page.decode("utf-8", "replace")
    at = text.find(_SUBJECT_AT)
    end = text.find(f" <em>{PROTECTED_NOTE}</em></dd>", at)
    if at < 0 or end < 0:
        return None
    return unescape(text[at + len(_SUBJECT_AT) : end])


_HOW_TO_VERIFY_2 = """<h2>How to verify</h2>
<ol>
<li>Get the notary's verifier key and the TSA root from a source you trust
(not from this bundle).</li>
<li>Run <code>certmail proof verify BUNDLE.zip --vkey notary.vkey --tsa-root root.pem</code>.
Without them it exits non-zero: a bundle checked only against its own key and root proves
nothing (<code>--trust-bundle-key</code>, <code>--trust-bundle-root</code> accept them).</li>
<li>Or check each item with stock tools (openssl, gpg, sha256sum): see VERIFY.txt.</li>
</ol>
</body>
</html>
"""

_HOW_TO_VERIFY = """<h2>How to verify</h2>
<ol>
<li>Get the notary's verifier key and the TSA root from a source you trust
(not from this bundle).</li>
<li>Run <code>certmail proof verify BUNDLE.zip --vkey notary.vkey --tsa-root root.pem</code>.</li>
<li>Or check each item with stock tools (openssl, gpg, sha256sum): see VERIFY.txt.</li>
</ol>
</body>
</html>
"""


def render_html(f: Facts) -> bytes:
    """certificate.html: self-contained, no scripts, no external resources."""
    how = _HOW_TO_VERIFY if f.renderer == 1 else _HOW_TO_VERIFY_2
    page = _head(f) + _message(f) + _events(f) + _log(f) + _timestamps(f) + anchors_html(f) + how
    return page.encode("utf-8")

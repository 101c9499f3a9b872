"""The human-readable files of a proof bundle: certificate.html, certificate.pdf, VERIFY.txt.

All three are pure functions of :class:`Facts`, which :mod:`certmail.bundle`
derives from the bundle's verified evidence alone. ``certmail proof verify``
derives the facts again, re-renders the three files and requires them to be
byte-identical to those in the bundle: a human-readable file cannot say
anything the evidence does not (see docs/proof-bundle.md).

certificate.html is self-contained: inline CSS, no script, no external
resource of any kind. Every string from the evidence or the message is
HTML-escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from certmail.pdf import text_pdf

__all__ = [
    "CheckpointFact",
    "EventFact",
    "Facts",
    "MimeLayout",
    "TsaFact",
    "proves",
    "render_html",
    "render_pdf",
    "render_verify_txt",
]

WEAK = "ContentAccessTracking"


@dataclass(frozen=True)
class TsaFact:
    """A verified RFC 3161 token."""

    file: str
    gen_time: str
    serial: str
    policy: str
    signer: str


@dataclass(frozen=True)
class CheckpointFact:
    """A verified checkpoint."""

    origin: str
    size: int
    root_hex: str


@dataclass(frozen=True)
class EventFact:
    """One verified evidence statement and where it sits in the log."""

    number: int
    event: str
    time: str
    index: int
    recipient: str | None
    details: tuple[str, ...]
    checkpoint_size: int
    leaf_hash: str
    proof_hashes: tuple[str, ...]
    stem: str
    tsa: TsaFact | None


@dataclass(frozen=True)
class MimeLayout:
    """Byte ranges of message.eml's OpenPGP parts, for the ``tail | head`` commands."""

    kind: str  # "signed" or "encrypted"
    first: tuple[int, int]  # signed part (signed) or ciphertext (encrypted): offset, length
    signature: tuple[int, int] | None = None


@dataclass(frozen=True)
class Facts:
    """Everything the human-readable files say, each item verified."""

    sha256: str
    message_id: str
    size: int
    sender: str
    recipients: tuple[str, ...]
    subject: str | None
    vkey: str
    events: tuple[EventFact, ...]
    checkpoints: tuple[CheckpointFact, ...]
    consistency: tuple[tuple[int, int], ...]
    tsa_chain: tuple[tuple[str, str], ...]  # (subject, SHA-256 fingerprint), TSA first
    mime: MimeLayout | None


_PROVES = {
    "SubmissionAcceptance": "the notary accepted this exact message (its SHA-256) "
                            "for registered delivery at this time",
    "SubmissionRejection": "the notary refused the message",
    "RelayToNonERDS": "the notary handed the message to the recipient's mail server, "
                      "which accepted it",
    "RelayToNonERDSFailure": "delivery to the recipient failed for good",
    "ContentHandover": "the recipient signed an acknowledgement of receipt with an "
                       "OpenPGP key, and the notary logged it",
    "ContentAccessTracking": "WEAK EVIDENCE: something fetched the recipient's tracking "
                             "link. Mail proxies and scanners prefetch links, so this "
                             "does not show that a person opened the message",
    "VirusDetected": "a virus scan refused the content",
}


def proves(event: str, with_token: bool) -> str:
    """One sentence: what an event proves."""
    text = _PROVES.get(event, event)
    if with_token:
        text += "; an independent RFC 3161 time-stamp covers the message's SHA-256"
    return text


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


def render_html(f: Facts) -> bytes:
    """certificate.html: self-contained, no scripts, no external resources."""
    rows = []
    for e in f.events:
        cls = ' class="weak"' if e.event == WEAK else ""
        what = escape(proves(e.event, e.tsa is not None))
        if e.event == WEAK:
            what = "<strong>weak evidence</strong>: " + what
        extra = "".join(f"<br>{escape(d)}" for d in e.details)
        rows.append(
            f"<tr{cls}><td>{e.number:02d}</td><td>{escape(e.event)}</td>"
            f"<td class=\"t\">{escape(e.time)}</td><td>{escape(e.recipient or '')}</td>"
            f"<td>{what}{extra}</td><td>{e.index}</td></tr>"
        )
    cps = "".join(
        f"<tr><td>{escape(c.origin)}</td><td>{c.size}</td><td>{_pre(c.root_hex)}</td></tr>"
        for c in f.checkpoints
    )
    cons = ", ".join(f"{m} → {n}" for m, n in f.consistency) or "one checkpoint: none needed"
    tsas = "".join(
        f"<tr><td>{e.number:02d}</td><td class=\"t\">{escape(e.tsa.gen_time)}</td>"
        f"<td>{_pre(e.tsa.serial)}</td><td>{escape(e.tsa.policy)}</td>"
        f"<td>{escape(e.tsa.signer)}</td></tr>"
        for e in f.events if e.tsa is not None
    ) or '<tr><td colspan="5">no RFC 3161 token in this bundle</td></tr>'
    chain = "".join(
        f"<tr><td>{escape(s)}</td><td>{_pre(fp)}</td></tr>" for s, fp in f.tsa_chain
    )
    subject = escape(f.subject) if f.subject is not None else "<em>not revealed</em>"
    recipients = escape(", ".join(f.recipients)) or "<em>none named</em>"
    html = f"""<!DOCTYPE html>
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
<h2>Message</h2>
<dl>
<dt>From</dt><dd>{escape(f.sender)}</dd>
<dt>To</dt><dd>{recipients}</dd>
<dt>Subject</dt><dd>{subject}</dd>
<dt>Message-ID</dt><dd>{_pre(f.message_id)}</dd>
<dt>SHA-256</dt><dd>{_pre(f.sha256)}</dd>
<dt>Size</dt><dd>{f.size} bytes (message.eml)</dd>
</dl>
<h2>Events</h2>
<table>
<tr><th>No</th><th>Event</th><th>Time (UTC)</th><th>Recipient</th><th>What it proves</th>
<th>Log index</th></tr>
{"".join(rows)}
</table>
<h2>Transparency log</h2>
<p>Notary verifier key: {_pre(f.vkey)}</p>
<table>
<tr><th>Log</th><th>Tree size</th><th>Root hash (SHA-256)</th></tr>
{cps}
</table>
<p>Consistency proofs between checkpoints: {escape(cons)}</p>
<h2>Time-stamps (RFC 3161)</h2>
<table>
<tr><th>Event</th><th>Time</th><th>Serial</th><th>Policy</th><th>TSA</th></tr>
{tsas}
</table>
<p>TSA certificate chain (tsa-chain.pem):</p>
<table>
<tr><th>Subject</th><th>SHA-256 fingerprint</th></tr>
{chain}
</table>
<h2>How to verify</h2>
<ol>
<li>Get the notary's verifier key and the TSA root from a source you trust
(not from this bundle).</li>
<li>Run <code>certmail proof verify BUNDLE.zip --vkey notary.vkey --tsa-root root.pem</code>.</li>
<li>Or check each item with stock tools (openssl, gpg, sha256sum): see VERIFY.txt.</li>
</ol>
</body>
</html>
"""
    return html.encode("utf-8")


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
        f"Subject:     {f.subject if f.subject is not None else '(not revealed)'}",
        f"Message-ID:  {f.message_id}",
        f"SHA-256:     {f.sha256}",
        f"Size:        {f.size} bytes",
        "",
        "# Events",
    ]
    for e in f.events:
        who = f"  {e.recipient}" if e.recipient else ""
        lines.append(f"{e.number:02d} {e.time}  {e.event}{who}  (log index {e.index})")
        for chunk in _wrap("proves: " + proves(e.event, e.tsa is not None), 90):
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
    lines += ["", "# How to verify",
              "certmail proof verify BUNDLE.zip --vkey notary.vkey --tsa-root root.pem",
              "or with stock tools: see VERIFY.txt in the bundle."]
    return lines


_WRAPPED: dict[tuple[str, int], list[str]] = {}


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters (a longer word alone on its line);
    remembered for short texts (what an event proves repeats in every bundle)."""
    got = _WRAPPED.get((text, width))
    if got is None:
        got = _wrap_words(text, width)
        if len(text) <= 400:
            if len(_WRAPPED) >= 512:
                _WRAPPED.clear()
            _WRAPPED[(text, width)] = got
    return list(got)


def _wrap_words(text: str, width: int) -> list[str]:
    out, cur = [], ""
    for word in text.split(" "):
        if cur and len(cur) + 1 + len(word) > width:
            out.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    if cur or not out:
        out.append(cur)
    return out


def render_pdf(f: Facts) -> bytes:
    """certificate.pdf: the same content as text, PDF 1.4, Helvetica."""
    return text_pdf(_text_lines(f), title=f"Certificate of registered email {f.sha256[:16]}")


def render_verify_txt(f: Facts) -> bytes:
    """VERIFY.txt: how to check every item of the bundle with stock tools."""
    n_certs = len(f.tsa_chain)
    out = [
        "How to verify this proof bundle",
        "================================",
        "",
        "Unzip the bundle and run these commands in its directory. Everything is",
        "checked offline. Trust comes from two things you must get from a source",
        "you trust, NOT from this bundle: the notary's verifier key and the TSA's",
        "root certificate. All in one step:",
        "",
        "    certmail proof verify BUNDLE.zip --vkey TRUSTED.vkey --tsa-root TRUSTED-ROOT.pem",
        "",
        "1. The message",
        "--------------",
        "message.eml holds the exact bytes the notary hashed. Its SHA-256 must be",
        f"    {f.sha256}",
        "",
        "    sha256sum message.eml",
        "",
        "Every evidence statement names this hash (member message.sha256).",
        "",
        "2. The RFC 3161 time-stamps (openssl)",
        "-------------------------------------",
        "tsa-chain.pem holds the TSA certificate, then its issuers; the last one is",
        "the root. Take the root you trust, or split the bundle's copy off and",
        "compare its fingerprint with the one the TSA operator publishes:",
        "",
        f"    awk '/-----BEGIN CERTIFICATE-----/{{n++}} n=={n_certs}' tsa-chain.pem > tsa-root.pem",
        "    openssl x509 -in tsa-root.pem -noout -fingerprint -sha256",
        "",
        "(this bundle's root says "
        f"{f.tsa_chain[-1][1] if f.tsa_chain else 'nothing'}: as trustworthy as the bundle)",
        "",
    ]
    tokens = [e for e in f.events if e.tsa is not None]
    if tokens:
        for e in tokens:
            out.append(f"    openssl ts -verify -in evidence/{e.stem}.tsr -token_in "
                       "-data message.eml -CAfile tsa-root.pem -untrusted tsa-chain.pem")
        out += ["", "Each must print \"Verification: OK\". To read a token:",
                f"    openssl ts -reply -in evidence/{tokens[0].stem}.tsr -token_in -text", ""]
    else:
        out += ["    (this bundle holds no RFC 3161 token)", ""]
    out += [
        "3. The transparency log (RFC 9162, c2sp.org/tlog-proof)",
        "-------------------------------------------------------",
        "Each evidence/NN-<event>.json is a receipt: entry (base64 of the exact",
        "log entry, an RFC 8785 JSON statement), proof (the same text as",
        "evidence/NN-<event>.tlog-proof) and, for submissions, tst (the .tsr).",
        "Read a statement:",
        "",
        "    jq -j .entry evidence/01-*.json | base64 -d; echo",
        "",
        "The checkpoint at the end of each .tlog-proof is a C2SP signed note; check",
        "its Ed25519 signature with the notary's verifier key, e.g. with Go's",
        "golang.org/x/mod/sumdb/note (note.Open with note.NewVerifier(vkey)).",
        "The bundle's notary.vkey is the key the exporter used; compare it with",
        "the key you trust:",
        f"    {f.vkey}",
        "",
        "Then check inclusion with any RFC 9162 verifier (section 2.1.3.2):",
        "leaf hash = SHA-256(0x00 || entry bytes):",
        "",
        "    jq -j .entry evidence/01-*.json | base64 -d > entry.bin",
        "    (printf '\\000'; cat entry.bin) | sha256sum",
        "",
    ]
    for e in f.events:
        out.append(f"  evidence/{e.stem}: index {e.index}, tree size {e.checkpoint_size}")
        out.append(f"    leaf hash {e.leaf_hash}")
        for i, h in enumerate(e.proof_hashes):
            out.append(f"    proof[{i}]  {h}")
    for c in f.checkpoints:
        out.append(f"  checkpoint size {c.size} root {c.root_hex}")
    out.append("")
    if f.consistency:
        out += [
            "evidence/consistency-M-N.json holds the RFC 9162 consistency proof (section",
            "2.1.4.2) between the checkpoints of sizes M and N, as answered by the",
            "notary's GET /v1/proof/consistency?old=M&new=N: every later checkpoint",
            "extends every earlier one.",
            "",
        ]
    out += ["4. OpenPGP signatures (gpg)", "---------------------------"]
    if f.mime is not None and f.mime.kind == "signed" and f.mime.signature is not None:
        (o1, n1), (o2, n2) = f.mime.first, f.mime.signature
        out += [
            "message.eml is multipart/signed (RFC 3156). Cut out the signed part and",
            "the signature by byte range, then check with the sender's public key:",
            "",
            f"    tail -c +{o1 + 1} message.eml | head -c {n1} > signed-part.eml",
            f"    tail -c +{o2 + 1} message.eml | head -c {n2} > signature.asc",
            "    gpg --verify signature.asc signed-part.eml",
            "",
        ]
    elif f.mime is not None and f.mime.kind == "encrypted":
        o1, n1 = f.mime.first
        out += [
            "message.eml is encrypted (RFC 3156 multipart/encrypted): the sender's",
            "signature is inside; a recipient can check it while decrypting:",
            "",
            f"    tail -c +{o1 + 1} message.eml | head -c {n1} > message.asc",
            "    gpg --decrypt message.asc > /dev/null",
            "",
        ]
    else:
        out += ["message.eml carries no OpenPGP/MIME signature.", ""]
    acks = [e for e in f.events if e.event == "ContentHandover"]
    for e in acks:
        out += [
            f"Acknowledgement evidence/{e.stem}.json: the recipient's signature",
            "over the acknowledgement text, both inside the statement:",
            "",
            f"    jq -j .entry evidence/{e.stem}.json | base64 -d | jq -j .signed"
            f" > ack-{e.number:02d}.txt",
            f"    jq -j .entry evidence/{e.stem}.json | base64 -d | jq -j .signature"
            f" > ack-{e.number:02d}.asc",
            f"    gpg --verify ack-{e.number:02d}.asc ack-{e.number:02d}.txt",
            "",
        ]
    out += [
        "5. The human-readable files",
        "---------------------------",
        "certificate.html, certificate.pdf and this file are derived from the",
        "evidence: certmail proof verify regenerates them and requires them to be",
        "identical, so they cannot claim more than the evidence proves.",
        "",
    ]
    return "\n".join(out).encode("utf-8")

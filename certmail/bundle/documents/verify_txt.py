"""VERIFY.txt of a proof bundle: how to check every item with stock tools (DESIGN §4.5).

A pure function of :class:`Facts`. The commands are the exact ones that work on
the unzipped bundle: ``sha256sum``, ``openssl ts -verify ... -token_in`` (RFC 3161),
the RFC 9162 leaf hashes and proofs, and ``gpg --verify`` on byte ranges (RFC 3156).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from certmail.bundle.documents.anchored import anchors_verify_txt
from certmail.bundle.documents.facts import EventFact, Facts

if TYPE_CHECKING:
    from certmail.bundle.documents.feature_facts import MdnFact

__all__ = ["render_verify_txt"]


def _message(f: Facts) -> list[str]:
    return [
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
        *(
            ()
            if f.renderer == 1
            else (
                "Without --vkey or --tsa-root it runs every check and exits non-zero",
                "(3): a bundle checked only against its own notary.vkey and the root in",
                "its own tsa-chain.pem is merely consistent with itself, since whoever",
                "forges a bundle makes those too. --trust-bundle-key and",
                "--trust-bundle-root say that you accept the bundle's own.",
                "",
            )
        ),
        "1. The message",
        "--------------",
        "message.eml holds the exact bytes the notary hashed. Its SHA-256 must be",
        f"    {f.sha256}",
        "",
        "    sha256sum message.eml",
        "",
        "Every evidence statement names this hash (member message.sha256).",
        "",
    ]


def _timestamps(f: Facts) -> list[str]:
    out = [
        "2. The RFC 3161 time-stamps (openssl)",
        "-------------------------------------",
        "tsa-chain.pem holds the TSA certificate, then its issuers; the last one is",
        "the root. Take the root you trust, or split the bundle's copy off and",
        "compare its fingerprint with the one the TSA operator publishes:",
        "",
        f"    awk '/-----BEGIN CERTIFICATE-----/{{n++}} n=={len(f.tsa_chain)}' tsa-chain.pem"
        " > tsa-root.pem",
        "    openssl x509 -in tsa-root.pem -noout -fingerprint -sha256",
        "",
        "(this bundle's root says "
        f"{f.tsa_chain[-1][1] if f.tsa_chain else 'nothing'}: as trustworthy as the bundle)",
        "",
    ]
    tokens = [e for e in f.events if e.tsa is not None]
    if not tokens:
        return [*out, "    (this bundle holds no RFC 3161 token)", ""]
    for e in tokens:
        out.append(
            f"    openssl ts -verify -in evidence/{e.stem}.tsr -token_in "
            "-data message.eml -CAfile tsa-root.pem -untrusted tsa-chain.pem"
        )
    return [
        *out,
        "",
        'Each must print "Verification: OK". To read a token:',
        f"    openssl ts -reply -in evidence/{tokens[0].stem}.tsr -token_in -text",
        "",
    ]


def _log(f: Facts) -> list[str]:
    out = [
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
    return out


def _message_signature(f: Facts) -> list[str]:
    if f.mime is not None and f.mime.kind == "signed" and f.mime.signature is not None:
        (o1, n1), (o2, n2) = f.mime.first, f.mime.signature
        return [
            "message.eml is multipart/signed (RFC 3156). Cut out the signed part and",
            "the signature by byte range, then check with the sender's public key:",
            "",
            f"    tail -c +{o1 + 1} message.eml | head -c {n1} > signed-part.eml",
            f"    tail -c +{o2 + 1} message.eml | head -c {n2} > signature.asc",
            "    gpg --verify signature.asc signed-part.eml",
            "",
        ]
    if f.mime is not None and f.mime.kind == "encrypted":
        o1, n1 = f.mime.first
        return [
            "message.eml is encrypted (RFC 3156 multipart/encrypted): the sender's",
            "signature is inside; a recipient can check it while decrypting:",
            "",
            f"    tail -c +{o1 + 1} message.eml | head -c {n1} > message.asc",
            "    gpg --decrypt message.asc > /dev/null",
            "",
        ]
    return ["message.eml carries no OpenPGP/MIME signature.", ""]


def _acknowledgements(f: Facts) -> list[str]:
    out: list[str] = []
    for e in f.events:
        if e.event != "ContentHandover":
            continue
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
    return out


#: stock gpg on the bundle's own keys, in a GnuPG home of their own, no agent started.
_GPG = "gpg --homedir gnupg --batch --no-autostart"


def _shown(text: str) -> str:
    """Text from a key for this file: printable, cut to 200 characters."""
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def _sender_key(f: Facts) -> str | None:
    from email.utils import parseaddr

    addr = parseaddr(f.sender)[1].lower()
    found = [fpr for fpr, a in f.keys if addr and a == addr]
    return found[0] if len(found) == 1 else None


def _keys_v3(f: Facts) -> list[str]:
    """Renderer 3: importing the keys the bundle carries."""
    if not f.keys:
        return [
            "This bundle carries no OpenPGP keys: check the signatures below with",
            "gpg and keys from a source you trust (leave out --homedir gnupg).",
            "",
        ]
    return [
        "keys/ holds the public keys of the sender and of each acknowledging",
        "recipient, as the sender's keyring held them: each with the one user ID",
        "of its address, a recipient's key with the sender's certification (the",
        "sender trusted that key for that address). Import them into a new GnuPG",
        "home of their own:",
        "",
        "    mkdir -m 700 gnupg",
        f"    {_GPG} --import --import-options import-local-sigs keys/*.asc",
        "",
        *(f"  keys/{fpr}.asc  {_shown(addr)}" for fpr, addr in f.keys),
        "",
        "They are only the sender's copies: compare a fingerprint with one you",
        "trust (or use your own keyring) before relying on it.",
        "",
    ]


def _smime_signature(f: Facts) -> list[str]:
    """Renderer 6: the S/MIME sender signature with the certificates the bundle carries."""
    sm = f.smime
    assert sm is not None
    if sm.signed is not None and sm.signature is not None:
        (o1, n1), (o2, n2) = sm.signed, sm.signature
        cut = [
            "message.eml is S/MIME multipart/signed (RFC 8551). Cut out the signed part",
            "and the signature (base64 DER) by byte range:",
            "",
            f"    tail -c +{o1 + 1} message.eml | head -c {n1} > smime-signed.eml",
            f"    tail -c +{o2 + 1} message.eml | head -c {n2} | tr -d '\\r' \\",
            "      | base64 -d > smime.p7s",
            "",
        ]
        src = "-inform DER -in smime.p7s -content smime-signed.eml"
    else:
        cut = ["message.eml is S/MIME opaque signed data (RFC 8551).", ""]
        src = "-inform SMIME -in message.eml"
    return [
        *cut,
        "smime/signer-chain.pem holds the signer's certificate, then its issuers.",
        "Check the signature over those exact bytes with that certificate only, and",
        "its chain to the CA you trust for the sender (your-ca.pem) as of the",
        "submission's time:",
        "",
        f"    openssl cms -verify -binary {src} \\",
        "      -certfile smime/signer-chain.pem -nointern -CAfile your-ca.pem \\",
        f"      -purpose smimesign -attime {sm.attime} -out content.eml",
        "",
        'It must say "Verification successful". The certificate must name',
        f"{_shown(sm.address)} (the From: address) in its SubjectAltName; its SHA-256",
        f"is {sm.fingerprint}",
        "(openssl x509 -in smime/signer-chain.pem -noout -fingerprint -sha256).",
        "",
    ]


def _signed_mdns(f: Facts) -> list[str]:
    """Renderer 6: each signed read receipt's signature, by the keys the bundle carries."""
    out: list[str] = []
    for m in f.mdns:
        if m.layout is None or m.layout.signature is None:
            continue
        n = m.file.removeprefix("mdns/").removesuffix(".eml")
        (o1, n1), (o2, n2) = m.layout.first, m.layout.signature
        if m.smime:
            out += _smime_mdn(m, n)
            continue
        out += [
            f"Read receipt {m.file} is signed (RFC 3156): cut out the signed part and",
            "the signature by byte range, then check them with the recipient's key:",
            "",
            f"    tail -c +{o1 + 1} {m.file} | head -c {n1} > mdn-{n}.eml",
            f"    tail -c +{o2 + 1} {m.file} | head -c {n2} > mdn-{n}.asc",
            f"    {_GPG} --verify mdn-{n}.asc mdn-{n}.eml",
            "",
            f'It must say "Good signature" from {_shown(m.final_recipient)}.',
            "",
        ]
    return out


def _smime_mdn(m: MdnFact, n: str) -> list[str]:
    """An S/MIME signed read receipt's check with openssl (certmail/bundle/smimemdn.py)."""
    assert m.layout is not None and m.layout.signature is not None
    (o1, n1), (o2, n2) = m.layout.first, m.layout.signature
    return [
        f"Read receipt {m.file} is signed with S/MIME (RFC 8551): cut out the signed",
        "part and the signature (base64 DER) by byte range, then check them:",
        "",
        f"    tail -c +{o1 + 1} {m.file} | head -c {n1} > mdn-{n}.eml",
        f"    tail -c +{o2 + 1} {m.file} | head -c {n2} | tr -d '\\r' \\",
        f"      | base64 -d > mdn-{n}.p7s",
        f"    openssl cms -verify -binary -inform DER -in mdn-{n}.p7s -content mdn-{n}.eml \\",
        "      -CAfile your-ca.pem -purpose smimesign -out /dev/null",
        "",
        'It must say "Verification successful", by a certificate naming',
        f"{_shown(m.final_recipient)}.",
        "",
    ]


def _message_signature_v3(f: Facts) -> list[str]:
    if f.renderer >= 6 and f.smime is not None:
        return _smime_signature(f)
    if f.mime is None or f.mime.kind != "signed" or f.mime.signature is None:
        return _message_signature(f)
    (o1, n1), (o2, n2) = f.mime.first, f.mime.signature
    sender = _sender_key(f)
    return [
        "message.eml is multipart/signed (RFC 3156). Cut out the signed part and",
        "the signature by byte range, then check them with the sender's key:",
        "",
        f"    tail -c +{o1 + 1} message.eml | head -c {n1} > signed-part.eml",
        f"    tail -c +{o2 + 1} message.eml | head -c {n2} > signature.asc",
        f"    {_GPG} --verify signature.asc signed-part.eml",
        "",
        f'It must say "Good signature" from {_shown(f.sender)}'
        + (f",\nkey {sender}." if sender else "."),
        "",
    ]


def _smime_acknowledgement(e: EventFact) -> list[str]:
    """The stock-tool check of an S/MIME acknowledgement (certmail/bundle/smimeack.py)."""
    from datetime import datetime

    n = f"{e.number:02d}"
    attime = int(datetime.fromisoformat(e.time.replace("Z", "+00:00")).timestamp())
    jq = f"jq -j .entry evidence/{e.stem}.json | base64 -d"
    return [
        f"Acknowledgement evidence/{e.stem}.json: the recipient's S/MIME (CMS)",
        "signature over the acknowledgement text, both inside the statement; the",
        "signature carries the signer's certificate and its issuers:",
        "",
        f"    {jq} | jq -j .signed > ack-{n}.txt",
        f"    {jq} | jq -j .cms | base64 -d > ack-{n}.p7s",
        f"    openssl cms -verify -binary -inform DER -in ack-{n}.p7s \\",
        f"      -content ack-{n}.txt -CAfile your-ca.pem -purpose smimesign \\",
        f"      -attime {attime} -signer ack-{n}-signer.pem -out /dev/null",
        "",
        'It must say "Verification successful" (your-ca.pem: the CAs you trust for',
        "S/MIME; -attime: the time the notary logged it), and the certificate",
        f"(openssl x509 -in ack-{n}-signer.pem -noout -ext subjectAltName) must name",
        f"{_shown(e.recipient or 'the recipient')}.",
        "",
    ]


def _acknowledgements_v3(f: Facts) -> list[str]:
    sender = _sender_key(f)
    trusted = f" --trusted-key {sender}" if sender else ""
    out: list[str] = []
    for e in f.events:
        if e.event != "ContentHandover":
            continue
        if e.mode == "smime":
            out += _smime_acknowledgement(e)
            continue
        n = f"{e.number:02d}"
        out += [
            f"Acknowledgement evidence/{e.stem}.json: the recipient's signature",
            "over the acknowledgement text, both inside the statement:",
            "",
            f"    jq -j .entry evidence/{e.stem}.json | base64 -d | jq -j .signed > ack-{n}.txt",
            f"    jq -j .entry evidence/{e.stem}.json | base64 -d | jq -j .signature > ack-{n}.asc",
            f"    {_GPG}{trusted} --verify ack-{n}.asc ack-{n}.txt",
            "",
            f'It must say "Good signature" from {_shown(e.recipient or "the recipient")}'
            + (
                ', marked\n"[full]": with the sender\'s key as the one trusted key, "full" means\n'
                "that the sender certified this key for that address."
                if sender
                else "."
            ),
            "",
        ]
    return out


def _openpgp(f: Facts) -> list[str]:
    """Section 4 by the renderer: up to 2 with the reader's keyring, from 3 with the
    keys the bundle carries."""
    if f.renderer < 3:
        return [*_message_signature(f), *_acknowledgements(f)]
    mdns = _signed_mdns(f) if f.renderer >= 6 else []
    return [*_keys_v3(f), *_message_signature_v3(f), *_acknowledgements_v3(f), *mdns]


_DOCUMENTS = [
    "5. The human-readable files",
    "---------------------------",
    "certificate.html, certificate.pdf and this file are derived from the",
    "evidence: certmail proof verify regenerates them and requires them to be",
    "identical, so they cannot claim more than the evidence proves.",
    "",
]


def render_verify_txt(f: Facts) -> bytes:
    """VERIFY.txt: how to check every item of the bundle with stock tools."""
    out = [
        *_message(f),
        *_timestamps(f),
        *anchors_verify_txt(f),  # renderer 4: outside time-stamps over checkpoints
        *_log(f),
        *(
            ("4. Signatures (gpg, openssl cms)", "--------------------------------")
            if f.renderer >= 6
            else ("4. OpenPGP signatures (gpg)", "---------------------------")
        ),
        *_openpgp(f),
        *_DOCUMENTS,
    ]
    return "\n".join(out).encode("utf-8")

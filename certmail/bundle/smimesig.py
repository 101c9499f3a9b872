"""The S/MIME sender signature in a proof bundle (bundle format 6; docs/proof-bundle.md).

A bundle of an S/MIME signed message (``multipart/signed``, RFC 8551 §3.5.3, or opaque
SignedData, §3.5.2) carries ``smime/signer-chain.pem``: the signer's certificate, then
its issuers, as the message's CMS SignedData held them (canonical PEM). ``proof verify``
checks the signature over message.eml's exact bytes with ``openssl cms -verify``
(:func:`keys.cms.verify_detached`), the signer looked up in that member only
(``-nointern``), the chain against ``--smime-ca`` at the time of the submission's
evidence (``-attime``: the notary's time-stamp proves the message existed then), and
the From: address against the certificate's SubjectAltName. Without ``--smime-ca`` the
signature is checked against the carried certificate and the check is reported unrun
(the chain). An S/MIME encrypted message
has its signature inside: a recipient's check. A bundle without the member (format 5
or older) reports the check unrun.
"""

from __future__ import annotations

import datetime
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING

from certmail.bundle.layout import FORMAT_SMIME, SIGNER_CHAIN, fail
from certmail.bundle.report import Check
from keys.errors import Error, MalformedError, VerificationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography import x509

    from certmail.bundle.checks import Verified
    from certmail.bundle.documents.feature_facts import SmimeFact
    from certmail.mime import Entity
    from notary.mime import Buffer

__all__ = [
    "SIGNER_CHAIN",
    "check_smime_signature",
    "signer_chain_pem",
    "smime_fact",
    "smime_layout",
]

_SIGNED = ("multipart-signed", "signed-data")
_ITEM = "sender signature"


def smime_layout(
    message: Buffer, entity: Callable[[], Entity] | None = None
) -> tuple[str, Entity] | None:
    """``("signed" | "encrypted", top entity)`` of an S/MIME message.eml, else None;
    ``entity`` answers the top entity when the caller has read it already."""
    from certmail.mime import parse_entity
    from certmail.smime.entities import smime_kind

    try:
        top = parse_entity(message) if entity is None else entity()
        kind = smime_kind(top)
    except (Error, ValueError, UnicodeError):
        return None
    if kind in _SIGNED:
        return "signed", top
    if kind in ("enveloped-data", "authenveloped-data"):
        return "encrypted", top
    return None


def _signature(top: Entity) -> tuple[bytes, bytes | None]:
    """The DER SignedData and, for multipart/signed, the exact signed bytes."""
    from certmail.smime.entities import detached_parts, p7_der, smime_kind

    if smime_kind(top) == "multipart-signed":
        content, sig = detached_parts(top)
        return sig, content
    return p7_der(top), None


def _chain_of(der: bytes) -> list[x509.Certificate]:
    """The signer's certificate (the first SignerInfo's issuer and serial number, or its
    subject key identifier), then each issuer the SignedData holds."""
    from asn1crypto import cms
    from cryptography.hazmat.primitives.serialization import pkcs7

    from keys.cms import signer_certificates

    certs = pkcs7.load_der_pkcs7_certificates(der)
    sid = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["sid"]
    found = signer_certificates(sid, certs)
    if len(found) != 1:
        raise MalformedError("the S/MIME signature does not carry its signer's certificate")
    chain = found
    while chain[-1].issuer != chain[-1].subject and len(chain) < 8:
        up = [c for c in certs if c.subject == chain[-1].issuer and c not in chain]
        if not up:
            break
        chain.append(up[0])
    return chain


def signer_chain_pem(message: Buffer) -> bytes | None:
    """At export: smime/signer-chain.pem of an S/MIME signed message, else None."""
    from certmail.smime.certs import to_pem

    layout = smime_layout(message)
    if layout is None or layout[0] != "signed":
        return None
    try:
        return to_pem(_chain_of(_signature(layout[1])[0]))
    except (ValueError, KeyError, IndexError, TypeError):
        raise MalformedError("message.eml's S/MIME signature does not read") from None


def submission_time(v: Verified) -> int:
    """The time (POSIX seconds) of the first event: the chain is checked as of then."""
    text = str(v.events[0].statement["time"]).replace("Z", "+00:00")
    return int(datetime.datetime.fromisoformat(text).timestamp())


def smime_fact(v: Verified, sender: str) -> SmimeFact:
    """What VERIFY.txt states of the carried signer (the member checked already)."""
    from dataclasses import replace

    from certmail.bundle.documents.feature_facts import SmimeFact
    from certmail.mime import parse_entity, part_spans
    from certmail.smime.certs import fingerprint
    from certmail.smime.entities import smime_kind

    chain = _carried_chain(v.files[SIGNER_CHAIN])
    fact = SmimeFact(parseaddr(sender)[1].lower(), fingerprint(chain[0]), submission_time(v))
    layout = smime_layout(v.message, v.message_entity)
    if layout is None or smime_kind(layout[1]) != "multipart-signed":
        return fact
    (s0, e0), (s1, e1) = part_spans(layout[1])[:2]
    sig = parse_entity(layout[1].buf, s1, e1)
    return replace(fact, signed=(s0, e0 - s0), signature=(sig.body_start, sig.end - sig.body_start))


def check_smime_signature(v: Verified, sender: str, ca: Path | None) -> Check | None:
    """The sender's S/MIME signature of message.eml, or None: not S/MIME (the OpenPGP
    check applies). VerificationError when it does not verify."""
    layout = smime_layout(v.message, v.message_entity)
    carried = v.files.get(SIGNER_CHAIN)
    if layout is None or layout[0] == "encrypted":
        if carried is not None:
            raise fail(f"{SIGNER_CHAIN} in a bundle of a message that is not S/MIME signed")
        if v.format == FORMAT_SMIME and not _needs_6_otherwise(v):
            # the words of every format's refusal (checks.check_format, the browser's too)
            raise fail(
                f"bundle.json says format {FORMAT_SMIME}, but the bundle holds nothing of "
                f"format {FORMAT_SMIME}"
            )
        if layout is None:
            return None
        return Check(
            _ITEM, "skipped", "S/MIME encrypted: signature inside, checkable by a recipient"
        )
    if carried is None:
        if v.format >= FORMAT_SMIME:
            raise fail(
                f"the bundle lacks {SIGNER_CHAIN} (the S/MIME signer's certificate chain) "
                f"that a format {v.format} bundle of an S/MIME signed message holds"
            )
        return Check(
            _ITEM,
            "skipped",
            f"the bundle carries no S/MIME signer certificate "
            f"({SIGNER_CHAIN}, format {FORMAT_SMIME})",
        )
    if v.format < FORMAT_SMIME:
        raise fail(
            f"{SIGNER_CHAIN} in a bundle of format {v.format} (S/MIME signer: {FORMAT_SMIME})"
        )
    chain = _carried_chain(carried)
    return _verify(v, layout[1], chain, carried, sender, ca)


def _needs_6_otherwise(v: Verified) -> bool:
    """Whether a bundle without the signer chain needs format 6 for its read receipts,
    version 2 acknowledgements (:func:`certmail.bundle.mdns.needs_format_5`) or S/MIME
    acknowledgements (:func:`certmail.bundle.smimeack.has_cms_ack`)."""
    from certmail.bundle.mdns import needs_format_5
    from certmail.bundle.smimeack import has_cms_ack

    stmts = [e.statement for e in v.events]
    return needs_format_5(v.files, stmts) or has_cms_ack(stmts)


def _carried_chain(data: bytes) -> list[x509.Certificate]:
    from certmail.smime.certs import load_certificates, to_pem

    try:
        chain = load_certificates(data, SIGNER_CHAIN)
    except Error:
        raise fail(f"{SIGNER_CHAIN} is not PEM certificates") from None
    if not chain or to_pem(chain) != data:
        raise fail(f"{SIGNER_CHAIN} is not in its canonical form")
    return chain


def _verify(
    v: Verified,
    top: Entity,
    chain: list[x509.Certificate],
    pem: bytes,
    sender: str,
    ca: Path | None,
) -> Check:
    from certmail.smime import openssl
    from certmail.smime.certs import emails, fingerprint
    from keys.cms import CmsOptions, verify_detached

    def refused(stderr: bytes) -> VerificationError:
        e = openssl.explain(stderr, "the S/MIME signature does not verify")
        return VerificationError(
            f"the sender's S/MIME signature (message.eml, {SIGNER_CHAIN}): {e.message}",
            hint=e.hint,
        )

    der, content = _signature(top)
    at = datetime.datetime.fromtimestamp(submission_time(v), datetime.UTC) if ca else None
    options = CmsOptions(
        certs=pem,  # the signer looked up in the carried chain only
        nointern=True,
        strict=False,
        timeout=openssl.TIMEOUT,
        what="verify an S/MIME signature",
        explain=refused,
    )
    try:
        signer = verify_detached(content, der, ca, at=at, chain=ca is not None, options=options)
    except MalformedError:  # more than one signer
        signer = None
    if signer is None or signer.certificate != chain[0]:
        raise fail(f"message.eml is not signed by the first certificate of {SIGNER_CHAIN}")
    addr = parseaddr(sender)[1].lower()
    names = [e.lower() for e in emails(chain[0])]
    if addr not in names:
        raise fail(
            f"message.eml is signed by a certificate for {', '.join(names) or '(no address)'}, "
            f"not for its From: address {addr or '(none)'}"
        )
    fpr = fingerprint(chain[0])
    if ca is None:
        return Check(
            _ITEM,
            "skipped",
            f"good S/MIME signature by the certificate the bundle carries for {addr} "
            f"(sha256 {fpr}); its chain is not checked: give --smime-ca FILE",
        )
    return Check(
        _ITEM,
        "ok",
        f"good S/MIME signature by {addr} (certificate sha256 {fpr}, {SIGNER_CHAIN}), "
        "chain verified against --smime-ca at the submission time",
    )

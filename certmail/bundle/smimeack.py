"""S/MIME (CMS) acknowledgements in a proof bundle (bundle format 6; docs/proof-bundle.md).

A ContentHandover of an S/MIME acknowledgement (docs/ack.md) carries, inside the
logged statement, the signed text (``signed``), the detached CMS SignedData
(``cms``, base64 DER) with the signer's certificate and its issuers, and the
certificate's SHA-256 (``certificate_sha256``). Nothing else is needed to check
it offline, so it adds no member: a bundle that holds one is written in format 6
(the S/MIME format) and a bundle of an older format that holds one is refused.
``proof verify`` checks it with ``openssl cms -verify`` (:func:`keys.cms.verify_detached`):
with ``--smime-ca``, the chain against that bundle as of the time the notary
logged the acknowledgement (``-attime``), the certificate's SubjectAltName
against the acknowledging recipient and its SHA-256 against the logged one;
without, the signature against the carried certificate only, and the check is
reported unrun (the chain). VERIFY.txt prints the same check with the stock tools
(certmail/bundle/documents/verify_txt.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certmail.bundle.layout import FORMAT_SMIME, fail
from certmail.bundle.report import Check
from keys.errors import MalformedError, VerificationError

if TYPE_CHECKING:
    from certmail.bundle.checks import Event

__all__ = ["check_cms_acknowledgement", "has_cms_ack", "is_cms_ack"]


def is_cms_ack(stmt: Mapping[str, Any]) -> bool:
    """Is ``stmt`` the ContentHandover of an S/MIME (CMS-signed) acknowledgement?"""
    return stmt.get("event") == "ContentHandover" and "cms" in stmt


def has_cms_ack(statements: Iterable[Mapping[str, Any]]) -> bool:
    """Does the bundle need format 6 for an S/MIME acknowledgement?"""
    return any(is_cms_ack(s) for s in statements)


def _members(e: Event, recipients: Sequence[str], sha256: str) -> tuple[str, str, str, str]:
    """The signed text, the CMS (base64), the logged certificate SHA-256 and the
    recipient, which must be about this message and by one of its recipients."""
    vals = [e.statement.get(k) for k in ("signed", "cms", "certificate_sha256", "recipient")]
    if not all(isinstance(x, str) for x in vals):
        raise fail(
            f"evidence {e.number:02d}: the S/MIME acknowledgement lacks signed, cms, "
            "certificate_sha256 or recipient"
        )
    signed, cms, fpr, who = (str(x) for x in vals)
    if sha256 not in signed:
        raise fail(f"evidence {e.number:02d}: the acknowledgement is about another message")
    if who.lower() not in {r.lower() for r in recipients}:
        raise VerificationError(
            f"evidence {e.number:02d}: the acknowledgement is by {who}, "
            "who is not a recipient of the message"
        )
    return signed, cms, fpr.lower(), who.lower()


def check_cms_acknowledgement(
    e: Event, recipients: Sequence[str], sha256: str, fmt: int, ca: Path | None
) -> Check:
    """The S/MIME acknowledgement of evidence ``e`` (see the module docstring)."""
    from keys.cms import decode_cms, verify_detached
    from notary.evidence import parse_time

    label = f"{e.number:02d} acknowledgement"
    if fmt < FORMAT_SMIME:
        raise fail(
            f"evidence {e.number:02d}: an S/MIME acknowledgement in a bundle of format {fmt} "
            f"(S/MIME: {FORMAT_SMIME})"
        )
    signed, cms, fpr, who = _members(e, recipients, sha256)
    at: datetime = parse_time(str(e.statement.get("time")))
    try:
        der = decode_cms(cms)
        signer = verify_detached(signed.encode("utf-8"), der, ca, at=at, chain=ca is not None)
    except (MalformedError, VerificationError) as ex:
        if ex.message.startswith("the signer's certificate"):
            raise VerificationError(
                f"evidence {e.number:02d}: the S/MIME acknowledgement's certificate: "
                f"{ex.message} (--smime-ca)"
            ) from None
        raise fail(f"evidence {e.number:02d}: S/MIME acknowledgement: {ex.message}") from None
    if signer.sha256 != fpr:
        raise fail(f"evidence {e.number:02d}: the acknowledgement was signed by another "
                   f"certificate ({signer.sha256}) than the one logged ({fpr})")  # fmt: skip
    if who not in signer.emails:
        raise VerificationError(
            f"evidence {e.number:02d}: the acknowledgement's S/MIME certificate is for "
            f"{', '.join(signer.emails) or 'no address'}, not for {who}"
        )
    what = f"signed (S/MIME) by recipient {who}, certificate {fpr} ({signer.subject[:200]})"
    if ca is None:
        return Check(label, "skipped", f"{what}: the chain is not checked (give --smime-ca)")
    return Check(label, "ok", f"{what}, chain verified")

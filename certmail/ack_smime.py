"""The S/MIME acknowledgement of receipt, client side (docs/ack.md, "S/MIME").

The recipient of an S/MIME message who holds an S/MIME key (``keys smime
import FILE.p12``) signs the acknowledgement text as a detached CMS SignedData
(:func:`make_cms_ack`: SHA-256, the exact bytes of the text, the certificate and
its issuers included), checked again with ``openssl cms -verify`` before it
leaves (DESIGN §5). The sender's client checks a logged one
(:func:`check_cms_handover`) against its own CA bundle, as of the time the
notary logged it, and says whether the certificate is the one it holds for the
recipient.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from keys.cms import decode_cms, verify_detached
from keys.errors import Error, MalformedError, VerificationError
from notary.ackformat import Ack, ack_text
from notary.evidence import parse_time

from .ack import HandoverCheck, SignedAck, logged_text

if TYPE_CHECKING:
    from .smime.opening import SmimeContext

__all__ = ["check_cms_handover", "is_smime_message", "make_cms_ack"]


def is_smime_message(raw: bytes) -> bool:
    """Is the delivered message S/MIME (RFC 8551: its top entity)?"""
    from .mime import canonicalize, parse_entity
    from .smime.entities import is_smime

    try:
        return is_smime(parse_entity(canonicalize(raw)))
    except MalformedError:
        return False


def make_cms_ack(ctx: SmimeContext, ack: Ack) -> SignedAck:
    """The acknowledgement text of ``ack`` signed with your S/MIME key (detached CMS,
    base64 DER).

    Raises VerificationError when your certificate is not for ``ack.recipient`` or the
    signature does not verify against your CA bundle (it would not at the notary)."""
    text = ack_text(ack)
    own = ctx.own()
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(text.encode("utf-8"))
        .add_signer(own.cert, own.key, hashes.SHA256())
    )
    for c in own.chain:
        builder = builder.add_certificate(c)
    opts = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
    der = builder.sign(serialization.Encoding.DER, opts)
    signer = verify_detached(text.encode("utf-8"), der, ctx.ca)  # what the notary checks
    if ack.recipient.lower() not in signer.emails:
        raise VerificationError(
            f"your S/MIME certificate is for {', '.join(signer.emails) or 'no address'}, "
            f"not for {ack.recipient}",
            hint="certmail keys smime import FILE.p12 (the key of this address)",
        )
    cms = base64.b64encode(der).decode("ascii")
    return SignedAck(ack.sha256, ack.message_id, ack.recipient, text, "", "", signer.sha256, cms)


def check_cms_handover(stmt: dict[str, Any], ctx: SmimeContext) -> HandoverCheck:
    """Check a ContentHandover with a CMS signature, as the sender.

    The signature must verify over the logged text, with a certificate that chains
    to your CA bundle as of the time the notary logged it, names the recipient and
    is the one logged; the text must name this message and recipient. A
    certificate that does not chain (or is for another address) is "not the
    recipient's key"."""
    from .smime.certs import fingerprint

    recipient = str(stmt.get("recipient") or "")
    fpr = stmt.get("certificate_sha256")
    fpr = str(fpr).lower() if isinstance(fpr, str) else None
    try:
        signed = logged_text(stmt, recipient)
        at = parse_time(str(stmt["time"])) if isinstance(stmt.get("time"), str) else None
        signer = verify_detached(
            signed.encode("utf-8"), decode_cms(str(stmt["cms"])), ctx.ca, at=at
        )
        if signer.sha256 != fpr:
            raise VerificationError("signed by another certificate than the one logged")
    except (KeyError, MalformedError, VerificationError, UnicodeError) as e:
        why = e.message if isinstance(e, Error) else str(e)
        if why.startswith("the signer's certificate"):
            return HandoverCheck(recipient, fpr, "not the recipient's key", why, kind="cms")
        return HandoverCheck(recipient, fpr, "bad signature", why, kind="cms")
    if recipient.lower() not in signer.emails:
        why = f"the S/MIME certificate is for {', '.join(signer.emails)}, not for {recipient}"
        return HandoverCheck(recipient, fpr, "not the recipient's key", why, kind="cms")
    held = any(fingerprint(c) == fpr for c in ctx.store.correspondents())
    detail = f"signed by {recipient}'s S/MIME certificate {fpr} ({signer.subject}), " + (
        "the one you hold for them" if held else "chaining to your CA bundle; not the one you hold"
    )
    return HandoverCheck(recipient, fpr, "recipient's key", detail, kind="cms")

"""S/MIME signed read receipts (RFC 8098 MDN inside RFC 8551 §3.5.3 ``multipart/signed``).

Outlook and most corporate clients sign their MDNs with S/MIME: a
``multipart/signed; protocol="application/pkcs7-signature"`` whose part 1 is the
``multipart/report``. :func:`verify_smime_mdn` checks the signature over part 1's
exact bytes with ``openssl cms -verify`` (:func:`keys.cms.verify_detached`) against
the CA bundle (``--smime-ca``, :class:`certmail.smime.opening.SmimeContext`), the
signer's certificate for S/MIME signing, and the From address against its
SubjectAltName, as an S/MIME message's signature is checked (docs/smime.md); the
signer is a :class:`keys.cms.CmsSigner`. :mod:`certmail.mdn_in` then labels it:
``signed-smime`` when the certificate names the Final-Recipient, one of the
message's recipients.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from keys.errors import Error

from .mime import Entity, single_mailbox

if TYPE_CHECKING:
    from keys.cms import CmsSigner

    from .smime.opening import SmimeContext

__all__ = ["is_smime_signed", "verify_smime_mdn"]


def is_smime_signed(top: Entity) -> bool:
    """Is ``top`` an S/MIME ``multipart/signed`` (RFC 8551 §3.5.3)?"""
    from .smime.entities import smime_kind

    try:
        return smime_kind(top) == "multipart-signed"
    except Error:
        return True  # declared S/MIME: verifying it says what is wrong


def verify_smime_mdn(ctx: SmimeContext | None, top: Entity) -> CmsSigner:
    """The signer of the S/MIME signed MDN ``top``; VerificationError when the signature
    does not verify, the certificate does not chain to the CA bundle or is not the From
    address's, MalformedError when it does not read."""
    from .smime.entities import detached_parts
    from .smime.opening import signature_info, verify

    if ctx is None:
        raise Error("an S/MIME signed read receipt needs the S/MIME settings to be checked")
    content, sig = detached_parts(top)
    with tempfile.TemporaryDirectory(prefix="certmail-mdn-") as tmp:
        signer, signed_at = verify(ctx, sig, Path(tmp), content=content)
    signature_info(signer.certificate, single_mailbox(top.headers.get("From")), signed_at)
    return signer  # the chain verified against the CA bundle, From = SAN

"""Checking a message's signatures without decrypting: PGP/MIME (RFC 3156) and DKIM (RFC 6376).

:func:`verify_signatures` checks a ``multipart/signed`` message's OpenPGP
signature (an encrypted one carries it inside the encryption: ``certmail
open`` checks that) and any DKIM-Signature field; it raises
:class:`keys.errors.VerificationError` when a signature present does not
verify, or when there is nothing that can be verified at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from keys.errors import VerificationError

from .mime import Entity, canonicalize, header_fields, parse_entity
from .results import VerifyResult
from .rfc3156 import signed_parts
from .smime.entities import is_smime
from .unseal import check_sender

if TYPE_CHECKING:
    from keys.gpg import Keyring, SignatureInfo

    from .smime.opening import SmimeContext

__all__ = ["verify_signatures"]


def verify_signatures(
    keyring: Callable[[], Keyring],
    raw: bytes,
    *,
    dnsfunc: Callable[[bytes], bytes] | None = None,
    smime: SmimeContext | None = None,
) -> VerifyResult:
    """Check the PGP signature (when not encrypted) and any DKIM signature of ``raw``.

    ``keyring`` is called only for a signed message; ``dnsfunc(name) -> bytes``
    answers DKIM key lookups offline; ``smime`` checks S/MIME (certmail/smime/checking.py).
    """
    top = parse_entity(canonicalize(raw))
    fields = header_fields(top.headers)
    warnings: list[str] = []
    pgp, sig, smime_state = "unsigned", None, "absent"
    if smime is not None and is_smime(top):  # RFC 8551
        from .smime.checking import check_smime

        smime_state, sig = check_smime(smime, top, warnings)
    elif top.content_type == "multipart/encrypted":
        pgp = "encrypted"
        warnings.append("the PGP signature is inside the encryption: certmail open FILE checks it")
    elif top.content_type == "multipart/signed":
        sig = _verify_pgp(keyring(), top, fields, warnings)
        pgp = "valid"
    dkim_state, dkim_domain = "absent", None
    if top.headers.get("DKIM-Signature") is not None:
        dkim_domain = _dkim_verify(raw, str(top.headers["DKIM-Signature"]), dnsfunc)
        dkim_state = "valid"
    if "valid" not in (pgp, smime_state, dkim_state):
        if "encrypted" in (pgp, smime_state):
            warnings.append("no DKIM signature: nothing can be checked without decrypting")
        else:
            raise VerificationError(
                "the message carries no PGP or DKIM signature", hint="certmail open FILE"
            )
    return VerifyResult(
        sha256=hashlib.sha256(raw).hexdigest(),
        pgp=pgp,
        signer=sig.signer_email if sig else None,
        signer_fingerprint=sig.primary_fingerprint if sig else None,
        trust=sig.validity if sig else None,
        dkim=dkim_state,
        dkim_domain=dkim_domain,
        headers=fields,
        warnings=warnings,
        smime=smime_state,
    )


def _verify_pgp(
    keyring: Keyring, top: Entity, fields: dict[str, str], warnings: list[str]
) -> SignatureInfo:
    """The multipart/signed signature, checked, and its signer matched with the From."""
    sp = signed_parts(top)
    sig = keyring.verify_detached(sp.signed, sp.signature)
    inner = parse_entity(sp.signed)
    check_sender(keyring, sig, inner.headers.get("From", top.headers.get("From")))
    if not sig.trusted:
        warnings.append(f"the signer's key is not certified (validity {sig.validity})")
    return sig


def _dkim_verify(raw: bytes, field: str, dnsfunc: Callable[[bytes], bytes] | None) -> str | None:
    """Verify the message's DKIM signature (VerificationError when bad); its ``d=`` domain."""
    from keys.dkim import dkim_verify, signing_domain

    dkim_verify(raw, dnsfunc=dnsfunc)
    return signing_domain(field)

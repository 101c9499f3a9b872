"""``certmail verify`` of an S/MIME message, without decrypting (RFC 8551 §3.5).

A signed message (``multipart/signed`` or opaque SignedData) is verified as
:mod:`certmail.smime.opening` does when it opens one; an enveloped one is
reported ``"encrypted"``: its signature, if any, is inside the encryption,
and ``certmail open`` checks it.
"""

from __future__ import annotations

from keys.gpg import SignatureInfo

from ..fileio import private_dir
from ..mime import Entity
from .entities import smime_kind
from .opening import SmimeContext, open_layers

__all__ = ["check_smime"]


def check_smime(
    ctx: SmimeContext, top: Entity, warnings: list[str]
) -> tuple[str, SignatureInfo | None]:
    """``("valid", signature)`` or ``("encrypted", None)``; VerificationError when bad."""
    kind = smime_kind(top)
    if kind in ("enveloped-data", "authenveloped-data"):
        warnings.append(
            "the S/MIME signature (if any) is inside the encryption: certmail open FILE checks it"
        )
        return "encrypted", None
    with private_dir("smime", ctx.store.dir.parent / "tmp") as work:
        _, _, sig = open_layers(ctx, top, work)
    if sig is None:  # not reached: a signed kind yields a signature or raises
        return "unsigned", None
    return "valid", sig

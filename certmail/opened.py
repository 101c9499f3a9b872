"""What ``open`` reports about a message it opened: the :class:`~certmail.results.OpenResult`
of an :class:`~certmail.unseal.Unsealed`, with the warnings a person should read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .results import AttachmentInfo, OpenResult
from .signer import NOTARY_HEADER

if TYPE_CHECKING:
    from keys.gpg import SignatureInfo

    from .unseal import Unsealed

__all__ = ["open_result", "open_warnings", "signature_fields"]


def open_result(
    u: Unsealed,
    sha256: str,
    attachments: list[AttachmentInfo],
    receipts: list[dict[str, Any]],
    warnings: list[str],
) -> OpenResult:
    """The result of opening ``u`` (the notarized bytes' ``sha256``, its scanned or saved
    ``attachments``, the ledger's ``receipts``): ``warnings`` followed by
    :func:`open_warnings`."""
    notary = u.outer_fields.get(NOTARY_HEADER) or u.fields.get(NOTARY_HEADER)
    body = (u.body or b"").decode("utf-8", "replace").replace("\r\n", "\n")
    return OpenResult(
        sha256=sha256,
        encrypted=u.encrypted,
        signed=u.signature is not None,
        **signature_fields(u.signature),
        header_protection=u.header_protection,
        headers=u.fields,
        body=body,
        manifest="verified" if u.manifest else "absent",
        attachments=attachments,
        notary=notary,
        receipts=receipts,
        warnings=[*warnings, *open_warnings(u)],
    )


def signature_fields(sig: SignatureInfo | None) -> dict[str, Any]:
    """The signer fields of an :class:`~certmail.results.OpenResult` (all empty: unsigned)."""
    if sig is None:
        return {
            "signer": None,
            "signer_fingerprint": None,
            "signer_primary_fingerprint": None,
            "trust": None,
            "trusted": False,
            "signed_at": None,
        }
    return {
        "signer": sig.signer_email,
        "signer_fingerprint": sig.fingerprint,
        "signer_primary_fingerprint": sig.primary_fingerprint,
        "trust": sig.validity,
        "trusted": sig.trusted,
        "signed_at": sig.created.isoformat(),
    }


def open_warnings(u: Unsealed) -> list[str]:
    """What a person should know about an opened message's signature and headers."""
    out = []
    if u.signature is None:
        out.append("the message is NOT signed: its sender is not proven")
    elif not u.signature.trusted:
        out.append(
            f"the signer's key is not certified (validity {u.signature.validity}); "
            "check the fingerprint, then: "
            f"certmail keys trust {u.signature.primary_fingerprint}"
        )
    if u.encrypted and u.header_protection not in ("cipher", "v1"):  # v1: other clients
        out.append("the header fields are not protected (no RFC 9788 hp=cipher)")
    return out

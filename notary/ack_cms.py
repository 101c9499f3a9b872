"""The S/MIME acknowledgement of receipt, notary side: a CMS signature's check (docs/ack.md).

``POST /v1/ack`` with ``cms`` (a detached CMS SignedData over the
acknowledgement text, carrying the signer's certificate) instead of
``signature`` and ``public_key``. The notary accepts it when
:func:`keys.cms.verify_detached` does, against the operator's S/MIME CA bundle
(``ack_smime_ca`` in notary.toml; unset: the system store): the signature is
over the exact text, the certificate chains to the bundle, is valid now and is
for S/MIME signing; and the certificate's SubjectAltName names the recipient
(RFC 8550 §3: the subject's emailAddress is not read). Which certificate is the
recipient's is for the sender to check again (the one they encrypted to,
:mod:`certmail.ack_smime`), as for OpenPGP keys.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from keys.cms import CmsSigner, decode_cms, verify_detached
from keys.errors import TemporaryError, VerificationError

log = logging.getLogger(__name__)


class Busy(TemporaryError):
    """Too many acknowledgements are waiting for their signature check, or S/MIME ones
    cannot be checked now (the CA bundle is unreadable): 503, try again later."""


__all__ = ["check_cms", "handover_members", "smime_ca"]


def smime_ca(config: Any) -> Path | None:
    """The CA bundle S/MIME acknowledgements must chain to (relative to the notary's
    directory), or None: OpenSSL's default store."""
    name = str(getattr(config, "ack_smime_ca", "") or "")
    return (Path(config.directory) / name) if name else None


def check_cms(text: str, cms: str, recipient: str, ca: Path | None) -> CmsSigner:
    """Verify the CMS signature ``cms`` (base64) over ``text``; return the signer.

    MalformedError (400) for what is not a detached one-signer SignedData,
    VerificationError (422) for a bad signature, an untrusted, expired or
    non-signing certificate, or one that does not name ``recipient``.
    """
    der = decode_cms(cms)
    if ca is not None and not ca.is_file():  # the operator's setting, not the client's fault
        log.error("ack_smime_ca %s is not a file: S/MIME acknowledgements are refused", ca)
        raise Busy("this notary cannot check S/MIME acknowledgements right now")
    signer = verify_detached(text.encode("utf-8"), der, ca)
    if recipient.lower() not in signer.emails:
        named = ", ".join(signer.emails) or "no address"
        raise VerificationError(f"the signer's certificate is for {named}, not for {recipient}")
    return signer


def handover_members(signer: CmsSigner) -> dict[str, str]:
    """What a ContentHandover of a CMS acknowledgement records of its signer."""
    return {
        "certificate_sha256": signer.sha256,
        "certificate_subject": signer.subject,
    }

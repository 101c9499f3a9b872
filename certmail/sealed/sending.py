"""``certmail send --sealed``: the inner MIME sealed under K, K_n registered (docs/sealed.md).

:func:`prepare_sealed` composes the inner entity that would otherwise be the
PGP/MIME plaintext, encrypts it under a fresh K (:mod:`certmail.sealed.box`)
and gives back what the PGP/MIME layer carries instead: a short text body and
two parts, ``sealed-key.json`` (K_r) and ``sealed-content.bin``. After
sealing, :meth:`Prepared.register` sends K_n, the message's SHA-256, its
Message-ID, the recipients' key fingerprints and the expiry to the notary
(``POST /v1/seals``), before anything is sent.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import Error, NotFoundError
from notary.evidence import format_time

from ..compose import NOT_SCANNED, Headers, ScanRecord, compose_inner
from .box import CONTENT_NAME, KEY_NAME, seal_content

if TYPE_CHECKING:
    from keys.gpg import Keyring

    from ..notary_client import NotaryClient

__all__ = ["DEFAULT_EXPIRY", "SEALED_BODY", "Prepared", "prepare_for_send", "prepare_sealed"]

#: How long the notary keeps K_n when the sender does not say (14 days).
DEFAULT_EXPIRY = timedelta(days=14)

SEALED_BODY = (
    b"This message is sealed (certmail sealed delivery, docs/sealed.md).\r\n"
    b"Its content is handed over only against your signed acknowledgement of receipt,\r\n"
    b"which the notary logs first: certmail open --ack FILE (or --refuse).\r\n"
)


@dataclass
class Prepared:
    """What the PGP/MIME layer carries in sealed mode, and the share still to register."""

    body: bytes
    parts: list[tuple[Path, ScanRecord]]
    share: bytes  # K_n
    fingerprints: tuple[str, ...]
    recipients: tuple[str, ...]
    notary: NotaryClient | None = None
    expires: datetime | None = None

    def register(self, sha256: str, message_id: str) -> dict[str, Any]:
        """``POST /v1/seals``: the notary keeps K_n for the listed keys until ``expires``."""
        if self.notary is None or self.expires is None:
            raise Error("a sealed message needs a notary and an expiry to register with")
        body = {
            "sha256": sha256,
            "message_id": message_id,
            "share": base64.b64encode(self.share).decode("ascii"),
            "fingerprints": list(self.fingerprints),
            "expires": format_time(self.expires),
            "recipients": list(self.recipients),
        }
        resp = self.notary.request("POST", "/v1/seals", json=body)
        out: dict[str, Any] = resp.json()
        return out


def prepare_for_send(
    until: datetime | None,
    work: Path,
    keyring: Keyring,
    headers: Headers,
    body: bytes,
    scanned: list[tuple[Path, ScanRecord]],
    notary: NotaryClient | None,
    encrypt: bool = True,
    smime: bool = False,
) -> Prepared | None:
    """:func:`prepare_sealed` for ``Certmail.send(seal_until=...)``; None when not sealing.

    With ``smime`` K_r travels in the S/MIME layer the sealer makes; the
    registration still names the recipients' OpenPGP keys (:func:`prepare_sealed`)."""
    if until is None:
        return None
    if not encrypt:  # K_r would travel in clear beside the content it opens
        raise Error("--sealed needs encryption", hint="drop --no-encrypt")
    if notary is None:
        raise Error("--sealed needs a notary", hint="set CERTMAIL_NOTARY_URL")
    prepared = prepare_sealed(work, keyring, headers, body, scanned, notary.url, smime=smime)
    prepared.notary, prepared.expires = notary, until
    return prepared


def prepare_sealed(
    work: Path,
    keyring: Keyring,
    headers: Headers,
    body: bytes,
    scanned: list[tuple[Path, ScanRecord]],
    notary_url: str,
    *,
    smime: bool = False,
) -> Prepared:
    """Seal the inner entity of ``headers``/``body``/``scanned`` (held in memory).

    The notary releases K_n against an acknowledgement signed with a registered
    OpenPGP key, so each recipient's OpenPGP key is needed here, also when K_r
    travels in an S/MIME layer (``smime``: only the error says so)."""
    fprs = []
    for addr in headers.recipients:
        try:
            fprs.append(keyring.key_for(addr).fingerprint.upper())
        except Error as e:
            also = (
                ", also with --smime: the acknowledgement that releases the content is "
                "signed with the recipient's OpenPGP key"
                if smime
                else ""
            )
            kind = NotFoundError if isinstance(e, NotFoundError) else Error
            raise kind(
                f"sealed delivery needs {addr}'s OpenPGP key{also}: {e.message}",
                hint=f"certmail keys locate {addr} (or send without --sealed)",
            ) from None
    inner = io.BytesIO()
    compose_inner(inner, headers, body, scanned, hp=None)
    blob, part, share = seal_content(inner.getvalue(), headers.message_id, notary_url)
    key_path, content_path = work / KEY_NAME, work / CONTENT_NAME
    key_path.write_bytes(part.to_bytes())
    content_path.write_bytes(blob)
    parts = [(key_path, ScanRecord(NOT_SCANNED)), (content_path, ScanRecord(NOT_SCANNED))]
    return Prepared(
        SEALED_BODY, parts, share, tuple(dict.fromkeys(fprs)), tuple(headers.recipients)
    )

"""certmail's view of one received message, for ``certmail inbox list``.

Who sent it and when (the outer fields), the protected subject when the
message can be decrypted, whether it is certified (a ``Certmail-Notary`` or
``Certmail-Evidence`` field), the notarized SHA-256 (:mod:`.notarized`), the
signature's verdict, and whether it was acknowledged already (the ledger).
Nothing is saved and nothing is posted: a message that cannot be read is
described, not raised.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from keys.errors import Error, NotFoundError, VerificationError

from ..mime import NOTARY_FIELD, header_fields, parse_entity
from .notarized import notarized_bytes
from .source import Item

__all__ = ["LIST_OPEN_LIMIT", "Summary", "describe"]

#: Larger messages are listed from their header only (``inbox open`` reads them whole).
LIST_OPEN_LIMIT = 64 << 20


@dataclass
class Summary:
    """One line of ``inbox list``."""

    id: str
    unread: bool
    size: int | None
    date: str | None
    sender: str | None
    subject: str | None
    subject_protected: bool  # the subject came from inside the encryption
    certified: bool
    notary: str | None
    sha256: str | None  # the notarized SHA-256 (None when it does not check)
    #: "good" | "good, key not certified" | "unsigned" | "bad: ..." | "not opened: ..."
    signature: str
    signer: str | None
    #: "yes" | "queued" | "no" (certified messages only), else None
    acknowledged: str | None
    #: an RFC 8098 read receipt for a message you sent: what it says and is worth
    mdn: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def describe(cm: Any, item: Item, path: Path) -> Summary:
    """Describe the message copied to ``path``; ``cm`` is the recipient's Certmail."""
    raw = path.read_bytes() if path.stat().st_size <= LIST_OPEN_LIMIT else _head(path)
    sha: str | None = None
    try:
        copy, n = notarized_bytes(raw)
        sha, body, broken = n.sha256, copy[n.start :], None
    except VerificationError as e:
        copy, body, broken = raw, raw, f"bad: {e.message}"
    try:
        outer = header_fields(parse_entity(body).headers)
    except Error:
        outer = {}
    certified = _certified(copy)
    fields, verdict, signer = _open(cm, body, path.parent, len(raw) < path.stat().st_size)
    notary = outer.get(NOTARY_FIELD) or fields.get(NOTARY_FIELD)
    protected = "Subject" in fields
    return Summary(
        id=item.id,
        unread=item.unread,
        size=item.size,
        date=outer.get("Date"),
        sender=outer.get("From"),
        subject=fields.get("Subject", outer.get("Subject")),
        subject_protected=protected,
        certified=certified or notary is not None,
        notary=notary,
        sha256=sha,
        signature=broken or verdict,
        signer=signer,
        acknowledged=_acknowledged(cm, sha, notary) if (certified or notary) else None,
    )


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(256 * 1024)


def _certified(copy: bytes) -> bool:
    end = copy.find(b"\r\n\r\n")
    head = copy[: end if end >= 0 else 256 * 1024].lower()
    return head.startswith(b"certmail-evidence:") or b"\r\ncertmail-evidence:" in head


def _open(
    cm: Any, body: bytes, work: Path, partial: bool
) -> tuple[dict[str, str], str, str | None]:
    """Protected fields, signature verdict and signer, from decrypting and verifying ``body``."""
    from ..unseal import unseal

    if partial:
        return {}, "not opened: too large to check in a list (certmail inbox open ID)", None
    try:
        u = unseal(cm.keyring, body, work / "unseal", allow_unsigned=True, smime=cm.smime)
    except VerificationError as e:
        return {}, f"bad: {e.message}", None
    except Error as e:
        return {}, f"not opened: {e.message}", None
    sig = u.signature
    protected = u.header_protection is not None or u.fields != u.outer_fields
    fields = dict(u.fields) if protected else {}
    if NOTARY_FIELD in u.fields:
        fields.setdefault(NOTARY_FIELD, u.fields[NOTARY_FIELD])
    if sig is None:
        return fields, "unsigned", None
    verdict = "good" if sig.trusted else "good, key not certified"
    return fields, verdict, sig.signer_email or sig.primary_fingerprint


def _acknowledged(cm: Any, sha: str | None, notary: str | None) -> str:
    me = cm.settings.email
    if sha is None or notary is None or not me or not cm.settings.ledger_path.exists():
        return "no"
    with contextlib.suppress(NotFoundError):
        a = cm.ledger.ack(sha, me, notary)
        return "yes" if a.state == "sent" else "queued"
    return "no"

"""What the Python API returns (docs/python-api.md): one dataclass per verb.

Each result has ``to_json()``, the object the CLI prints with ``--json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["AttachmentInfo", "FlushItem", "OpenResult", "SendResult", "VerifyResult"]


@dataclass
class SendResult:
    """One message handed to the SMTP server (and notarized, unless told not to)."""

    sha256: str
    message_id: str
    recipients: list[str]
    receipts: list[dict[str, Any]]
    status: str  # sent | queued | notarizing | uncertain
    size: int
    path: str  # the stored copy of the exact bytes
    signed: bool
    encrypted: bool
    smtp_reply: str | None = None
    warnings: list[str] = field(default_factory=list)
    via: str = "smtp"  # smtp: your own server (direct mode); relay: the notary's relay

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AttachmentInfo:
    """An attachment of an opened message."""

    filename: str | None  # as declared by the sender (untrusted)
    content_type: str
    size: int
    sha256: str
    scan: str  # "clean", "not scanned"
    saved_as: str | None = None
    scan_engine: str | None = None  # clamd's VERSION answer, when scanned
    #: The manifest's ``scan`` member for it: what the sender's terminal said (untrusted).
    manifest_scan: dict[str, Any] | None = None


@dataclass
class OpenResult:
    """What :meth:`certmail.api.Certmail.open` found and did."""

    sha256: str
    encrypted: bool
    signed: bool
    signer: str | None
    signer_fingerprint: str | None
    signer_primary_fingerprint: str | None
    trust: str | None  # the key's validity: full, ultimate, marginal, unknown, ...
    trusted: bool
    signed_at: str | None
    header_protection: str | None
    headers: dict[str, str]
    body: str
    manifest: str  # "verified" or "absent"
    attachments: list[AttachmentInfo]
    notary: str | None
    receipts: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyResult:
    """What could be checked without decrypting."""

    sha256: str
    pgp: str  # "valid", "encrypted" (inside the encryption), "unsigned"
    signer: str | None
    signer_fingerprint: str | None
    trust: str | None
    dkim: str  # "valid", "absent"
    dkim_domain: str | None
    headers: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    smime: str = "absent"  # "valid", "encrypted" (inside the encryption), "absent"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FlushItem:
    """The outcome of one outbox message in :meth:`certmail.api.Certmail.flush`."""

    sha256: str
    message_id: str
    status: str
    error: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

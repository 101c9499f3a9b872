"""The facts a proof bundle's human-readable files state (docs/proof-bundle.md).

:class:`Facts` is derived by :mod:`certmail.bundle.verify` from the bundle's
verified evidence alone; every renderer of :mod:`certmail.bundle.documents` is
a pure function of it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WEAK", "CheckpointFact", "EventFact", "Facts", "MimeLayout", "TsaFact", "proves"]

#: The event that is weak evidence (ETSI EN 319 522 ContentAccessTracking).
WEAK = "ContentAccessTracking"


@dataclass(frozen=True)
class TsaFact:
    """A verified RFC 3161 token."""

    file: str
    gen_time: str
    serial: str
    policy: str
    signer: str


@dataclass(frozen=True)
class CheckpointFact:
    """A verified checkpoint."""

    origin: str
    size: int
    root_hex: str


@dataclass(frozen=True)
class EventFact:
    """One verified evidence statement and where it sits in the log."""

    number: int
    event: str
    time: str
    index: int
    recipient: str | None
    details: tuple[str, ...]
    checkpoint_size: int
    leaf_hash: str
    proof_hashes: tuple[str, ...]
    stem: str
    tsa: TsaFact | None


@dataclass(frozen=True)
class MimeLayout:
    """Byte ranges of message.eml's OpenPGP parts, for the ``tail | head`` commands."""

    kind: str  # "signed" or "encrypted"
    first: tuple[int, int]  # signed part (signed) or ciphertext (encrypted): offset, length
    signature: tuple[int, int] | None = None


@dataclass(frozen=True)
class Facts:
    """Everything the human-readable files say, each item verified."""

    sha256: str
    message_id: str
    size: int
    sender: str
    recipients: tuple[str, ...]
    subject: str | None
    vkey: str
    events: tuple[EventFact, ...]
    checkpoints: tuple[CheckpointFact, ...]
    consistency: tuple[tuple[int, int], ...]
    tsa_chain: tuple[tuple[str, str], ...]  # (subject, SHA-256 fingerprint), TSA first
    mime: MimeLayout | None


_PROVES = {
    "SubmissionAcceptance": "the notary accepted this exact message (its SHA-256) "
    "for registered delivery at this time",
    "SubmissionRejection": "the notary refused the message",
    "RelayToNonERDS": "the notary handed the message to the recipient's mail server, "
    "which accepted it",
    "RelayToNonERDSFailure": "delivery to the recipient failed for good",
    "ContentHandover": "the recipient signed an acknowledgement of receipt with an "
    "OpenPGP key, and the notary logged it",
    "ContentAccessTracking": "WEAK EVIDENCE: something fetched the recipient's tracking "
    "link. Mail proxies and scanners prefetch links, so this "
    "does not show that a person opened the message",
    "VirusDetected": "a virus scan refused the content",
}


def proves(event: str, with_token: bool) -> str:
    """One sentence: what an event proves."""
    text = _PROVES.get(event, event)
    if with_token:
        text += "; an independent RFC 3161 time-stamp covers the message's SHA-256"
    return text

"""The facts a proof bundle's human-readable files state (docs/proof-bundle.md).

:class:`Facts` is derived by :mod:`certmail.bundle.verify` from the bundle's
verified evidence alone; every renderer of :mod:`certmail.bundle.documents` is
a pure function of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from certmail.bundle.documents.feature_facts import (
        AnchorFact,
        MdnFact,
        MimeLayout,
        SmimeFact,
    )

__all__ = [
    "PROTECTED_NOTE",
    "RENDERER",
    "RENDERERS",
    "RENDERER_MDNS",
    "RENDERER_SMIME",
    "WEAK",
    "AnchorFact",
    "CheckpointFact",
    "EventFact",
    "Facts",
    "MdnFact",
    "MimeLayout",
    "SmimeFact",
    "TsaFact",
    "proves",
]

#: The event that is weak evidence (ETSI EN 319 522 ContentAccessTracking).
WEAK = "ContentAccessTracking"

#: The renderer release new bundles are written with. Every released one stays, and
#: verify accepts the documents of any of them (DESIGN §4.8: golden bundles verify
#: forever): 1, up to issue 10; 2, each submission worded by its channel (relay or
#: direct notarization of a hash), the trust flags of ``proof verify``, a protected
#: Subject revealed from the sender's copy; 3 (bundle format 2), VERIFY.txt checks the
#: OpenPGP signatures with the keys the bundle carries (keys/); 4 (bundle format 4), the
#: outside time-stamps over checkpoints (what they prove, the ``openssl ts -verify`` of
#: each); 5 (bundle format 5, issue 11), all of 4 and the attachments' scan verdicts of
#: each v2 acknowledgement and the read receipts (mdns/). New bundles are written with 3,
#: 4 when they hold outside time-stamps, 5 when they need format 5 (certmail/bundle/mdns.py).
RENDERER = 3
RENDERER_ANCHORED = 4
#: The renderer of a format 5 bundle (certmail/bundle/mdns.py).
RENDERER_MDNS = 5
#: The renderer of a format 6 bundle: 5, and VERIFY.txt's stock-tool check of the S/MIME
#: sender signature (certmail/bundle/smimesig.py) and of each signed read receipt.
RENDERER_SMIME = 6
RENDERERS = (6, 5, 4, 3, 2, 1)

#: After a Subject the exporter read inside the encryption (renderer 2).
PROTECTED_NOTE = (
    "(as read by the sender from inside the encryption: message.eml holds it encrypted, "
    "so only a recipient who decrypts it can check it)"
)


@dataclass(frozen=True)
class TsaFact:
    """A verified RFC 3161 token."""

    file: str
    gen_time: str
    serial: str
    policy: str
    signer: str


#: What an outside time-stamp over a checkpoint proves (renderer 4).
ANCHOR_PROVES = (
    "an outside TSA, independent of the notary, time-stamped the notary's signed "
    "checkpoint of this tree size at this time: the checkpoint, and through the "
    "consistency proofs every entry of the smaller checkpoints, existed then, so the "
    "notary cannot have back-dated those events past it; it says nothing of what the "
    "entries mean"
)


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
    channel: str | None = None  # SubmissionAcceptance: "smtp" (the relay) or "api" (direct)
    #: ContentHandover: "sealed" or "pickup" (docs/sealed.md), "smime" (a CMS signature),
    #: else None (an OpenPGP signature).
    mode: str | None = None
    #: ContentHandover of a v2 text: its scan verdicts, labelled (renderer 5 shows them).
    scans: tuple[str, ...] = ()


@dataclass(frozen=True)
class Facts:
    """Everything the human-readable files say, each item verified."""

    sha256: str
    message_id: str
    size: int
    sender: str
    #: The recipients named in To:/Cc: and by the evidence, blind copies excepted.
    recipients: tuple[str, ...]
    subject: str | None
    vkey: str
    events: tuple[EventFact, ...]
    checkpoints: tuple[CheckpointFact, ...]
    consistency: tuple[tuple[int, int], ...]
    tsa_chain: tuple[tuple[str, str], ...]  # (subject, SHA-256 fingerprint), TSA first
    mime: MimeLayout | None
    renderer: int = RENDERER  # the renderer release (RENDERERS) the documents are made by
    protected_subject: bool = False  # subject: read by the exporter inside the encryption
    keys: tuple[tuple[str, str], ...] = ()  # keys/<FPR>.asc: (fingerprint, address), format 2
    #: The blind copy (Bcc) a bundle was made for, if any: only its own bundle names it.
    blind: tuple[str, ...] = ()
    anchors: tuple[AnchorFact, ...] = ()  # outside time-stamps over checkpoints, format 4
    mdns: tuple[MdnFact, ...] = ()  # mdns/NN.eml (format 5)
    smime: SmimeFact | None = None  # smime/signer-chain.pem (format 6)

    def evolve(self, **changes: Any) -> Facts:
        """``dataclasses.replace(self, **changes)``: the same ``__init__`` call (every field
        is an ``__init__`` argument and the instance holds exactly its fields; test in
        tests/certmail/test_bundle_facts.py), without replace's loop over the
        fields in Python (a tenth of a repeated verification's interpreted steps)."""
        return type(self)(**{**self.__dict__, **changes})


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


#: Added to a sealed ContentHandover (docs/sealed.md): K_n is answered only once it is logged.
SEALED_HANDOVER = (
    "; the message was sealed: the content could not be read before the signature was logged"
)

#: An S/MIME ContentHandover (certmail/bundle/smimeack.py): a CMS signature, not OpenPGP.
SMIME_HANDOVER = (
    "the recipient signed an acknowledgement of receipt with an S/MIME certificate's key "
    "(CMS), and the notary logged it"
)

#: A pickup ContentHandover (docs/sealed.md "Pickup"): no signature, the page's confirmation.
PICKUP_HANDOVER = (
    "the recipient confirmed receipt on the notary's pickup page (no signature: the identity "
    "assurance says who could do that), and the notary logged it; the content could not be "
    "read before this was logged: the notary released its key share only after"
)

#: SubmissionAcceptance by the statement's ``channel`` (renderer 2 on).
_ACCEPTED_BY = {
    "smtp": "the notary's relay received this exact message (its SHA-256) for registered "
    "delivery at this time",
    "api": "the sender had the notary time-stamp and log this message's SHA-256 at this "
    "time (direct mode: the notary saw only the hash, not the message, and did not "
    "deliver it)",
}
_ACCEPTED_OTHER = "the notary logged this message's SHA-256 at this time"


def proves(
    event: str,
    with_token: bool,
    channel: str | None = None,
    renderer: int = 1,
    mode: str | None = None,
) -> str:
    """One sentence: what an event proves. From renderer 2 a SubmissionAcceptance is
    worded by its ``channel``; renderer 1 said "accepted ... for registered delivery"
    whatever the channel."""
    if renderer >= 2 and event == "SubmissionAcceptance":
        text = _ACCEPTED_BY.get(channel or "", _ACCEPTED_OTHER)
    else:
        text = _PROVES.get(event, event)
    if event == "ContentHandover" and mode == "sealed":  # issue 12: sealed delivery
        text += SEALED_HANDOVER
    elif event == "ContentHandover" and mode == "pickup":
        text = PICKUP_HANDOVER
    elif event == "ContentHandover" and mode == "smime":
        text = SMIME_HANDOVER
    if with_token:
        text += "; an independent RFC 3161 time-stamp covers the message's SHA-256"
    return text


def __getattr__(name: str) -> Any:
    """:class:`AnchorFact`, :class:`MdnFact`, :class:`MimeLayout` and :class:`SmimeFact`,
    from :mod:`certmail.bundle.documents.feature_facts` on first use (a bundle without
    those features verifies without them)."""
    if name in ("AnchorFact", "MdnFact", "MimeLayout", "SmimeFact"):
        from certmail.bundle.documents import feature_facts

        return getattr(feature_facts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

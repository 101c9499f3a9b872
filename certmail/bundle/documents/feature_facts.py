"""The facts of the features a plain message's bundle lacks: the OpenPGP/MIME layout of
a signed or encrypted message, outside time-stamps (format 4), read receipts (format 5),
the S/MIME signer (format 6).

Split from :mod:`certmail.bundle.documents.facts` (which still answers these names):
a bundle without these features verifies without creating their classes (each frozen
dataclass costs its generated methods' compilation at start-up).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AnchorFact", "MdnFact", "MimeLayout", "SmimeFact"]


@dataclass(frozen=True)
class MimeLayout:
    """Byte ranges of message.eml's OpenPGP parts, for the ``tail | head`` commands."""

    kind: str  # "signed" or "encrypted"
    first: tuple[int, int]  # signed part (signed) or ciphertext (encrypted): offset, length
    signature: tuple[int, int] | None = None


@dataclass(frozen=True)
class AnchorFact:
    """A verified outside RFC 3161 token over a checkpoint (renderer 4)."""

    file: str  # evidence/anchor-N-ID.tsr
    checkpoint_file: str  # evidence/anchor-N.checkpoint
    size: int
    gen_time: str
    serial: str
    signer: str  # the outside TSA certificate's subject


@dataclass(frozen=True)
class SmimeFact:
    """The S/MIME signer the bundle carries (smime/signer-chain.pem, format 6)."""

    address: str  # the From: address, which the certificate names
    fingerprint: str  # SHA-256 of the signer certificate's DER
    attime: int  # the submission's time, POSIX seconds: the chain is checked as of then
    #: multipart/signed: the (offset, length) of the signed part and of the signature
    #: part's base64 body in message.eml; None for opaque SignedData
    signed: tuple[int, int] | None = None
    signature: tuple[int, int] | None = None


@dataclass(frozen=True)
class MdnFact:
    """A read receipt the bundle carries (mdns/NN.eml, format 5), as its content states it."""

    file: str
    final_recipient: str
    disposition: str
    signed: bool
    layout: MimeLayout | None = None  # a signed one's byte ranges (renderer 6's commands)
    smime: bool = False  # signed with S/MIME (certmail/bundle/smimemdn.py), not OpenPGP

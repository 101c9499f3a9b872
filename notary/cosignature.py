"""C2SP tlog-cosignature, Ed25519 ``cosignature/v1`` (c2sp.org/tlog-cosignature).

A cosignature is a signed-note signature line on a checkpoint,
``— <name> base64(key ID ‖ u64 timestamp ‖ Ed25519 signature)``, by a cosigner
(a witness) whose key ID is ``SHA-256(<name> ‖ "\\n" ‖ 0x04 ‖ public key)[:4]``.
The signed message is ``cosignature/v1\\n``, ``time <timestamp>\\n``, then the
checkpoint's whole note text. Semantics: as of that time, the consistent tree
with the largest size the cosigner has seen for that origin has that root.

Verifier keys (vkeys) are ``<name>+<8 hex key id>+base64(0x04 ‖ public key)``.
Pure format code: no I/O; verification returns the timestamp or raises
:class:`~notary.errors.VerificationError`.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from keys.checkpoint_key import is_valid_key_name
from keys.encoding import Base64Error, b64decode_canonical
from notary.errors import MalformedError, VerificationError
from notary.note import parse_note

__all__ = [
    "ALG_COSIGNATURE_V1",
    "CosignatureVerifier",
    "Cosigner",
    "cosigned_message",
    "verify_cosignatures",
]

ALG_COSIGNATURE_V1 = 0x04
MAX_TIMESTAMP = (1 << 63) - 1
_DASH = "\u2014 "


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name ‖ "\\n" ‖ 0x04 ‖ public key)[:4]."""
    data = name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key
    return hashlib.sha256(data).digest()[:4]


def cosigned_message(note_text: str, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: header, time line, the checkpoint's note text."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("cosignature timestamp out of range")
    return f"cosignature/v1\ntime {timestamp}\n{note_text}".encode()


@dataclass(frozen=True)
class CosignatureVerifier:
    """A cosigner's name and Ed25519 public key."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return cosigner_key_id(self.name, self.public_key)

    def vkey(self) -> str:
        b64 = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{b64}"

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse ``name+keyid+base64(0x04 ‖ key)`` strictly; raise MalformedError."""
        name, sep1, rest = vkey.strip().partition("+")
        hexid, sep2, b64 = rest.partition("+")
        if not (sep1 and sep2) or not is_valid_key_name(name):
            raise MalformedError("malformed cosigner key: want name+keyid+base64")
        try:
            raw = b64decode_canonical(b64)
        except Base64Error as e:
            raise MalformedError(f"malformed cosigner key: {e}") from None
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise MalformedError("malformed cosigner key: not an Ed25519 cosignature/v1 key")
        v = cls(name, raw[1:])
        if len(hexid) != 8 or hexid != v.key_id.hex():
            raise MalformedError("malformed cosigner key: the key id does not match")
        return v

    def verify(self, note_text: str, signature: bytes) -> int:
        """Check one cosignature's bytes (timestamp ‖ signature) on ``note_text``; its time."""
        if len(signature) != 8 + 64:
            raise VerificationError(f"cosignature by {self.name} is not 72 bytes")
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            raise VerificationError(f"cosignature by {self.name} has an impossible time")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                signature[8:], cosigned_message(note_text, timestamp)
            )
        except InvalidSignature:
            raise VerificationError(f"cosignature by {self.name} does not verify") from None
        return timestamp


class Cosigner:
    """An Ed25519 cosigner: signs cosignature/v1 lines."""

    def __init__(self, name: str, seed: bytes) -> None:
        if not is_valid_key_name(name):
            raise ValueError(f"invalid cosigner name {name!r}")
        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        pub = self._key.public_key().public_bytes_raw()
        self.verifier = CosignatureVerifier(name, pub)

    def cosign(self, note_text: str, timestamp: int) -> str:
        """The signature line ``— name base64(...)\\n`` over a checkpoint's note text."""
        sig = self._key.sign(cosigned_message(note_text, timestamp))
        raw = self.verifier.key_id + struct.pack(">Q", timestamp) + sig
        return f"{_DASH}{self.name} {base64.b64encode(raw).decode()}\n"


def verify_cosignatures(
    note: bytes, verifiers: Sequence[CosignatureVerifier], quorum: int
) -> dict[str, int]:
    """Check that at least ``quorum`` of ``verifiers`` cosigned ``note``; name -> time.

    Signature lines by other keys are ignored (the log's own signature among
    them); a line by a known cosigner that does not verify is an error.
    """
    parsed = parse_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    times: dict[str, int] = {}
    for sig in parsed.signatures:
        v = known.get((sig.name, sig.key_id))
        if v is not None:
            times[v.name] = v.verify(parsed.text, sig.signature)
    if len(times) < quorum:
        raise VerificationError(
            f"{len(times)} valid cosignature(s), {quorum} required "
            f"(known cosigners: {', '.join(sorted(v.name for v in verifiers)) or 'none'})"
        )
    return times

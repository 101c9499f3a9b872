"""C2SP transparency-log checkpoints (c2sp.org/tlog-checkpoint).

A checkpoint is the note text ``<origin>\\n<size>\\n<base64 root hash>\\n``,
optionally followed by non-empty extension lines, signed as a C2SP signed note
(:mod:`notary.note`). certmail logs sign with Ed25519 and the key name equals
the origin.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from keys.encoding import Base64Error, NonCanonicalBase64Error, b64decode_canonical
from notary.errors import MalformedError, VerificationError
from notary.note import CONTROL, Note, Signer, Verifier, open_note, sign_note, verify_note

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "open_checkpoint",
    "parse_decimal",
    "sign_checkpoint",
    "verify_opened",
]

#: Largest tree size accepted (a signed 64-bit integer, as in Go's tlog).
MAX_TREE_SIZE = (1 << 63) - 1


def parse_decimal(s: str, what: str) -> int:
    """An ASCII decimal with no sign, no leading zeros (but "0"), at most MAX_TREE_SIZE."""
    if not s or len(s) > 19 or not all("0" <= c <= "9" for c in s):
        raise MalformedError(f"malformed {what}: not a decimal number")
    if s[0] == "0" and s != "0":
        raise MalformedError(f"malformed {what}: leading zero")
    n = int(s)
    if n > MAX_TREE_SIZE:
        raise MalformedError(f"malformed {what}: too large")
    return n


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed tree head: origin, tree size, RFC 6962 root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def to_text(self) -> str:
        """The checkpoint note text, final newline included."""
        if not self.origin or "\n" in self.origin:
            raise ValueError("checkpoint origin must be a non-empty line")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError("checkpoint size out of range")
        if len(self.root_hash) != 32:
            raise ValueError("checkpoint root hash must be 32 bytes")
        for ext in self.extensions:
            if not ext or "\n" in ext:
                raise ValueError("checkpoint extension lines must be non-empty lines")
        root = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text strictly; raise MalformedError."""
        if not text.endswith("\n"):
            raise MalformedError("malformed checkpoint: text must end in a newline")
        if CONTROL.search(text):
            raise MalformedError("malformed checkpoint: control character")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedError("malformed checkpoint: fewer than three lines")
        origin, size_s, root_s, *extensions = lines
        if not origin:
            raise MalformedError("malformed checkpoint: empty origin")
        size = parse_decimal(size_s, "checkpoint size")
        not_a_hash = "malformed checkpoint: root hash is not 32 bytes of base64"
        try:
            root = b64decode_canonical(root_s)
        except NonCanonicalBase64Error:
            raise MalformedError(not_a_hash) from None
        except Base64Error:
            raise MalformedError("malformed checkpoint: bad base64 root hash") from None
        if len(root) != 32:
            raise MalformedError(not_a_hash)
        if any(not ext for ext in extensions):
            raise MalformedError("malformed checkpoint: empty extension line")
        return cls(origin, size, root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> bytes:
    """Sign ``cp`` as a signed note; the signer's key name must equal the origin."""
    if signer.name != cp.origin:
        raise ValueError(f"key name {signer.name!r} is not the checkpoint origin {cp.origin!r}")
    return sign_note(cp.to_text(), signer)


def open_checkpoint(note: bytes, verifier: Verifier) -> Checkpoint:
    """Verify a signed checkpoint against ``verifier`` (key name = origin) and parse it.

    Raises VerificationError (MalformedError if unparsable) unless the note
    carries a valid signature by ``verifier`` and its origin is the verifier's name.
    """
    opened = open_note(note, [verifier])
    cp = Checkpoint.from_text(opened.text)
    if cp.origin != verifier.name:
        raise VerificationError(
            f"checkpoint origin {cp.origin!r} is not the verifier key name {verifier.name!r}"
        )
    return cp


def verify_opened(note: Note, cp: Checkpoint, verifier: Verifier) -> Checkpoint:
    """:func:`open_checkpoint` for a note already parsed (:func:`~notary.note.parse_note`)
    whose text parsed as ``cp`` (:meth:`Checkpoint.from_text`): the same signature and
    origin checks and errors, without parsing again."""
    verify_note(note, [verifier])
    if cp.origin != verifier.name:
        raise VerificationError(
            f"checkpoint origin {cp.origin!r} is not the verifier key name {verifier.name!r}"
        )
    return cp

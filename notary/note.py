"""C2SP signed notes (c2sp.org/signed-note), Ed25519 only (signature type 0x01).

A signed note is a text ending in a newline, a blank line, then one or more
signature lines ``— <key name> base64(4-byte key id || signature)``. Key and
note text forms match golang.org/x/mod/sumdb/note: verifier keys
``<name>+<8 hex id>+<base64(0x01 || public key)>`` and signer keys
``PRIVATE+KEY+<name>+<8 hex id>+<base64(0x01 || seed)>``.

Parsing is strict and capped (1 MiB, 100 signatures, canonical base64);
verification returns the note or raises :class:`~notary.errors.VerificationError`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from keys.checkpoint_key import (
    ALG_ED25519,
    CheckpointKey,
    ed25519_key_id,
    is_valid_key_name,
    parse_skey,
    split_key_text,
)
from keys.encoding import Base64Error, b64decode_canonical
from keys.errors import KeyMaterialError
from notary.errors import MalformedError, VerificationError

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Note",
    "Signature",
    "Signer",
    "Verifier",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
    "verify_note",
]

#: Largest note accepted by :func:`parse_note`, in bytes.
MAX_NOTE_SIZE = 1 << 20
#: Most signature lines accepted in one note (as golang.org/x/mod/sumdb/note).
MAX_SIGNATURES = 100

_EM_DASH_PREFIX = "\u2014 "


def key_id(name: str, public_key: bytes) -> bytes:
    """The Ed25519 key id: SHA-256(name || "\\n" || 0x01 || public key)[:4]."""
    return ed25519_key_id(name, public_key)


@dataclass(frozen=True)
class Signature:
    """One signature line: the key name, the 4-byte key id and the raw signature."""

    name: str
    key_id: bytes
    signature: bytes

    def to_line(self) -> str:
        """The signature line, including its final newline."""
        b64 = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{_EM_DASH_PREFIX}{self.name} {b64}\n"


@dataclass(frozen=True)
class Note:
    """A note's text (ending in a newline) and its signatures."""

    text: str
    signatures: tuple[Signature, ...]

    def to_bytes(self) -> bytes:
        """The signed note: text, blank line, signature lines."""
        return (self.text + "\n" + "".join(s.to_line() for s in self.signatures)).encode("utf-8")


class Verifier:
    """An Ed25519 signed-note verifier key: name, key id and 32-byte public key."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        if not is_valid_key_name(name):
            raise MalformedError(f"invalid key name {name!r}")
        if len(public_key) != 32:
            raise MalformedError("an Ed25519 public key is 32 bytes")
        self.name = name
        self.public_key = bytes(public_key)
        self.key_id = key_id(name, self.public_key)
        self._key = Ed25519PublicKey.from_public_bytes(self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<8 hex id>+<base64(0x01 || public key)>`` strictly."""
        try:
            name, id_hex, raw = split_key_text(vkey)
        except ValueError as e:
            raise MalformedError(f"malformed verifier key: {e}") from None
        v = cls(name, raw[1:])
        if v.key_id.hex() != id_hex:
            raise MalformedError("malformed verifier key: key id does not match the key")
        return v

    def vkey(self) -> str:
        """The verifier key text."""
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{b64}"

    def verify(self, text: bytes, signature: bytes) -> None:
        """Check an Ed25519 signature over ``text``; raise VerificationError if it fails."""
        try:
            self._key.verify(signature, text)
        except InvalidSignature:
            raise VerificationError(
                f"invalid signature by {self.name}+{self.key_id.hex()}"
            ) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return self.name == other.name and self.public_key == other.public_key

    def __hash__(self) -> int:
        return hash((self.name, self.public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.vkey()!r})"


class Signer:
    """An Ed25519 signed-note signer: a key name and a private key."""

    __slots__ = ("_key",)

    def __init__(self, key: CheckpointKey) -> None:
        if not is_valid_key_name(key.name):
            raise ValueError(f"invalid key name {key.name!r}")
        self._key = key

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A fresh random key named ``name``."""
        return cls(CheckpointKey(name, Ed25519PrivateKey.generate()))

    @classmethod
    def from_key(cls, key: CheckpointKey) -> Signer:
        """Wrap a key loaded with :func:`keys.checkpoint_key.load_checkpoint_key`."""
        return cls(key)

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse Go note signer-key text ``PRIVATE+KEY+<name>+<hex id>+<base64>``."""
        try:
            return cls(parse_skey(skey))
        except KeyMaterialError as e:
            raise MalformedError(e.message) from None

    @property
    def name(self) -> str:
        """The key name (for a log: its origin)."""
        return self._key.name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id."""
        return self._key.key_id

    @property
    def key(self) -> CheckpointKey:
        """The underlying key material."""
        return self._key

    def skey(self) -> str:
        """The signer key text (secret)."""
        return self._key.skey()

    def sign(self, text: bytes) -> Signature:
        """Sign ``text`` (a note text, final newline included)."""
        return Signature(self.name, self.key_id, self._key.private_key.sign(text))

    def verifier(self) -> Verifier:
        """The matching verifier."""
        return Verifier(self.name, self._key.public_key)

    def __repr__(self) -> str:
        return f"Signer({self.verifier().vkey()!r})"


#: Control characters other than newline (what notes and checkpoints refuse).
CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")


def _check_chars(s: str) -> None:
    if CONTROL.search(s):
        raise MalformedError("note contains a control character")


def sign_note(text: str, *signers: Signer) -> bytes:
    """Sign ``text`` with every signer and return the signed note bytes.

    ``text`` must be non-empty, end in a newline and contain no control
    characters but newlines (ValueError otherwise: a programming error).
    """
    if not signers:
        raise ValueError("sign_note needs at least one signer")
    if not text.endswith("\n"):
        raise ValueError("note text must end in a newline")
    try:
        _check_chars(text)
    except MalformedError:
        raise ValueError("note text must not contain control characters but newline") from None
    raw = text.encode("utf-8")
    sigs = tuple(s.sign(raw) for s in signers)
    return Note(text, sigs).to_bytes()


def parse_note(data: bytes) -> Note:
    """Parse a signed note strictly, without verifying it; raise MalformedError."""
    if len(data) > MAX_NOTE_SIZE:
        raise MalformedError("note too large")
    try:
        s = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedError("note is not valid UTF-8") from None
    _check_chars(s)
    split = s.rfind("\n\n")
    if split < 0:
        raise MalformedError("note has no blank line before its signatures")
    text, block = s[: split + 1], s[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedError("note has no signatures or does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedError("note has too many signatures")
    sigs = []
    for line in lines:
        if not line.startswith(_EM_DASH_PREFIX):
            raise MalformedError("malformed signature line")
        rest = line[len(_EM_DASH_PREFIX) :]
        name, sep, b64 = rest.partition(" ")
        if not sep or not is_valid_key_name(name) or not b64:
            raise MalformedError("malformed signature line")
        try:
            raw = b64decode_canonical(b64)
        except Base64Error as e:
            raise MalformedError(f"malformed signature line: {e}") from None
        if len(raw) < 5:
            raise MalformedError("malformed signature line: signature too short")
        sigs.append(Signature(name, raw[:4], raw[4:]))
    return Note(text, tuple(sigs))


def open_note(data: bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse a note and verify it against known ``verifiers``.

    Signatures by unknown keys (name and key id not both matching a known
    verifier) are ignored. Every signature by a known key must verify, and at
    least one must exist; otherwise VerificationError. The returned note carries
    only the verified signatures, each once.
    """
    known = _known(verifiers)
    return _verify_known(parse_note(data), known)


def verify_note(note: Note, verifiers: Sequence[Verifier]) -> Note:
    """:func:`open_note` of a note already parsed by :func:`parse_note`: the same checks
    and errors, without parsing the bytes again."""
    return _verify_known(note, _known(verifiers))


def _known(verifiers: Sequence[Verifier]) -> dict[tuple[str, bytes], Verifier]:
    known: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        k = (v.name, v.key_id)
        if k in known and known[k] != v:
            raise VerificationError(f"ambiguous verifier keys for {v.name}+{v.key_id.hex()}")
        known[k] = v
    return known


def _verify_known(note: Note, known: dict[tuple[str, bytes], Verifier]) -> Note:
    raw = note.text.encode("utf-8")
    verified: list[Signature] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in note.signatures:
        k = (sig.name, sig.key_id)
        verifier = known.get(k)
        if verifier is None:
            continue
        verifier.verify(raw, sig.signature)
        if k not in seen:
            seen.add(k)
            verified.append(sig)
    if not verified:
        names = ", ".join(sorted(f"{n}+{i.hex()}" for n, i in known)) or "none"
        raise VerificationError(f"note has no signature by a known key (known: {names})")
    return Note(note.text, tuple(verified))

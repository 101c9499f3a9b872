"""The notary's Ed25519 checkpoint key on disk.

The key is stored as the signer-key ("skey") text of golang.org/x/mod/sumdb/note::

    PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || 32-byte Ed25519 seed)>

where the key id is the C2SP signed-note key id, the first four bytes of
SHA-256(name || 0x0A || 0x01 || 32-byte public key) (c2sp.org/signed-note).
The same text is accepted by Go's ``note.NewSigner``.

Dependencies run ``keys`` <- ``notary``: this module knows the key material and
its text forms only; ``notary.note.Signer.from_key`` wraps a :class:`CheckpointKey`
into a note signer.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from keys.encoding import Base64Error, b64decode_canonical
from keys.errors import ConflictError, KeyMaterialError

__all__ = [
    "ALG_ED25519",
    "CheckpointKey",
    "ed25519_key_id",
    "generate_checkpoint_key",
    "is_valid_key_name",
    "load_checkpoint_key",
    "parse_skey",
    "split_key_text",
]

#: The C2SP signed-note signature type byte of Ed25519.
ALG_ED25519 = 0x01

_SKEY_PREFIX = "PRIVATE+KEY+"
_MAX_KEY_FILE = 4096


def split_key_text(text: str) -> tuple[str, str, bytes]:
    """``<name>+<8 hex id>+<base64(0x01 || 32 bytes)>`` (C2SP signed-note key text) split
    strictly into name, key id hex and the 33 raw bytes; ValueError says what is wrong.

    The one parser under signer keys (``PRIVATE+KEY+`` then this) and verifier keys.
    """
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise ValueError("expected <name>+<key id>+<key>")
    name, id_hex, key64 = parts
    if not is_valid_key_name(name):
        raise ValueError("invalid key name")
    if len(id_hex) != 8 or any(c not in "0123456789abcdef" for c in id_hex):
        raise ValueError("key id must be 8 lowercase hex digits")
    try:
        raw = b64decode_canonical(key64)
    except Base64Error as e:
        raise ValueError(str(e)) from None
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise ValueError("not an Ed25519 key (0x01 || 32 bytes)")
    return name, id_hex, raw


def is_valid_key_name(name: str) -> bool:
    """Whether ``name`` is a valid signed-note key name: non-empty, no Unicode space, no "+"."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def ed25519_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id: SHA-256(name || 0x0A || 0x01 || public key)[:4] (c2sp.org/signed-note)."""
    data = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    return hashlib.sha256(data).digest()[:4]


@dataclass(frozen=True)
class CheckpointKey:
    """A named Ed25519 private key: the log's checkpoint signing key (key name = origin)."""

    name: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        """The 32-byte raw Ed25519 public key."""
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> bytes:
        """The 4-byte signed-note key id."""
        return ed25519_key_id(self.name, self.public_key)

    def skey(self) -> str:
        """The Go note signer-key text (secret)."""
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        b64 = base64.b64encode(bytes([ALG_ED25519]) + seed).decode("ascii")
        return f"{_SKEY_PREFIX}{self.name}+{self.key_id.hex()}+{b64}"

    def vkey(self) -> str:
        """The public verifier-key text ``<name>+<hex id>+<base64(0x01 || public key)>``."""
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{b64}"


def parse_skey(skey: str) -> CheckpointKey:
    """Parse Go note signer-key text, strictly; raise KeyMaterialError if malformed.

    The key id in the text must match the one computed from the name and the
    public key derived from the seed; base64 must be canonical.
    """
    if not skey.startswith(_SKEY_PREFIX):
        raise KeyMaterialError("malformed signer key: it must start with PRIVATE+KEY+")
    try:
        name, id_hex, raw = split_key_text(skey[len(_SKEY_PREFIX) :])
    except ValueError as e:
        raise KeyMaterialError(f"malformed signer key: {e}") from None
    key = CheckpointKey(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
    if key.key_id.hex() != id_hex:
        raise KeyMaterialError("malformed signer key: key id does not match the key")
    return key


def generate_checkpoint_key(path: Path, origin: str) -> CheckpointKey:
    """Create a new Ed25519 checkpoint key named ``origin`` and write its skey to ``path``.

    The file is created with mode 0600 and fsynced; an existing file is never
    overwritten (ConflictError).
    """
    if not is_valid_key_name(origin):
        raise KeyMaterialError(
            f"invalid log origin {origin!r} for a key name",
            hint="use a schema-less URL without spaces or '+', e.g. notary.example.com/log",
        )
    key = CheckpointKey(origin, Ed25519PrivateKey.generate())
    data = (key.skey() + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConflictError(
            f"checkpoint key {path} already exists",
            hint="refusing to overwrite a signing key; move it away first if you mean it",
        ) from None
    except OSError as e:
        raise KeyMaterialError(f"cannot create checkpoint key {path}: {e.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)
    return key


def load_checkpoint_key(path: Path) -> CheckpointKey:
    """Read the checkpoint key at ``path``; raise KeyMaterialError if missing or malformed."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise KeyMaterialError(
            f"checkpoint key {path} does not exist",
            hint="create one with: certmail notary init",
        ) from None
    except OSError as e:
        raise KeyMaterialError(f"cannot read checkpoint key {path}: {e.strerror}") from None
    if len(data) > _MAX_KEY_FILE:
        raise KeyMaterialError(f"checkpoint key {path} is too large to be a key")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyMaterialError(f"checkpoint key {path} is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1]
    try:
        return parse_skey(text)
    except KeyMaterialError as e:
        raise KeyMaterialError(f"checkpoint key {path}: {e.message}") from None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

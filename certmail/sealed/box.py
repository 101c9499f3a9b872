"""The sealed content and its key part (docs/sealed.md, docs/formats.md "Sealed delivery"): pure.

K (32 random bytes) encrypts the inner MIME entity with AES-256-GCM; K is
split as K = K_r ⊕ K_n with K_n 32 fresh random bytes. The sealed content
(``sealed-content.bin``) is::

    "CMSEAL1\\n" (8 bytes) ‖ nonce (12 bytes) ‖ AES-256-GCM(K, nonce, inner, aad) ‖ tag (16)

with ``aad = "CMSEAL1\\n" ‖ Message-ID`` (ASCII). The key part
(``sealed-key.json``, UTF-8 JSON) carries K_r to the recipient inside the
PGP/MIME layer: ``{"v": 1, "alg": "A256GCM", "k_r": base64, "notary": URL,
"content": "sealed-content.bin", "content_sha256": hex, "size": bytes of the
inner entity}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys.errors import MalformedError, VerificationError

__all__ = [
    "CONTENT_NAME",
    "KEY_NAME",
    "MAGIC",
    "KeyPart",
    "join_key",
    "open_content",
    "seal_content",
]

MAGIC = b"CMSEAL1\n"
CONTENT_NAME = "sealed-content.bin"
KEY_NAME = "sealed-key.json"
_NONCE = 12
_MAX_KEY_PART = 4096


@dataclass(frozen=True)
class KeyPart:
    """What ``sealed-key.json`` says."""

    k_r: bytes
    notary: str
    content_sha256: str
    size: int

    def to_bytes(self) -> bytes:
        obj = {
            "v": 1,
            "alg": "A256GCM",
            "k_r": base64.b64encode(self.k_r).decode("ascii"),
            "notary": self.notary,
            "content": CONTENT_NAME,
            "content_sha256": self.content_sha256,
            "size": self.size,
        }
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyPart:
        """Read ``sealed-key.json`` strictly; MalformedError otherwise."""
        try:
            if len(data) > _MAX_KEY_PART:
                raise ValueError
            obj: Any = json.loads(data)
            if obj.get("v") != 1 or obj.get("alg") != "A256GCM":
                raise ValueError
            k_r = base64.b64decode(obj["k_r"], validate=True)
            notary, sha, size = obj["notary"], obj["content_sha256"], obj["size"]
            ok = isinstance(notary, str) and isinstance(sha, str) and isinstance(size, int)
            if len(k_r) != 32 or not ok or obj.get("content") != CONTENT_NAME:
                raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise MalformedError(
                f"the {KEY_NAME} part of this sealed message is malformed"
            ) from None
        return cls(k_r, notary, sha, size)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def join_key(k_r: bytes, k_n: bytes) -> bytes:
    """K = K_r ⊕ K_n."""
    if len(k_r) != 32 or len(k_n) != 32:
        raise MalformedError("a key share is 32 bytes")
    return _xor(k_r, k_n)


def seal_content(inner: bytes, message_id: str, notary: str) -> tuple[bytes, KeyPart, bytes]:
    """Encrypt ``inner`` under a fresh K; return (sealed content, key part with K_r, K_n)."""
    key, k_n, nonce = os.urandom(32), os.urandom(32), os.urandom(_NONCE)
    blob = MAGIC + nonce + AESGCM(key).encrypt(nonce, inner, MAGIC + message_id.encode("ascii"))
    part = KeyPart(_xor(key, k_n), notary, hashlib.sha256(blob).hexdigest(), len(inner))
    return blob, part, k_n


def open_content(blob: bytes, key: bytes, message_id: str) -> bytes:
    """The inner entity; VerificationError when ``key`` is not K (or the content was changed)."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _NONCE + 16:
        raise MalformedError(f"{CONTENT_NAME} is not certmail sealed content")
    nonce = blob[len(MAGIC) : len(MAGIC) + _NONCE]
    try:
        return AESGCM(key).decrypt(
            nonce, blob[len(MAGIC) + _NONCE :], MAGIC + message_id.encode("ascii")
        )
    except InvalidTag:
        raise VerificationError(
            "the sealed content does not decrypt with this key (wrong share, or changed)"
        ) from None

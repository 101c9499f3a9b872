"""The pickup content, its link and its passphrase KDF (docs/sealed.md "Pickup",
docs/formats.md §10): pure. The pickup page (notary/web/src/pickup.js) reads the same.

K = K_link ⊕ K_n ⊕ P, where K_link (32 random bytes) is only in the link's
fragment, K_n is the notary's share and P is 32 zero bytes, or with a
passphrase the first 32 bytes of ``scrypt(passphrase, salt, N=2^15, r=8, p=1,
dkLen=64)``; its last 32 bytes are the *verifier* the page sends with the
acknowledgement (the notary keeps only its SHA-256). The content is::

    "CMPICK1\\n" ‖ nonce (12) ‖ AES-256-GCM(K, nonce, payload, aad = "CMPICK1\\n" ‖ Message-ID)

and the payload is ``uint32 big-endian length ‖ manifest (UTF-8 JSON) ‖ the
files, one after the other``, the manifest ``{"v": 1, "text": str, "files":
[{"name", "type", "size", "sha256"}]}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys.errors import MalformedError, VerificationError
from notary.pickupformat import SCRYPT_N, SCRYPT_P, SCRYPT_R

__all__ = [
    "MAGIC",
    "DerivedPassphrase",
    "PickupFile",
    "PickupKeys",
    "link",
    "new_token",
    "open_pickup",
    "passphrase_keys",
    "seal_pickup",
]

MAGIC = b"CMPICK1\n"
_NONCE = 12


@dataclass(frozen=True)
class PickupFile:
    name: str
    type: str
    data: bytes


@dataclass(frozen=True)
class PickupKeys:
    """The keys of one pickup: K_link (link), K_n (notary), P and the verifier (passphrase)."""

    k_link: bytes
    k_n: bytes
    p: bytes  # 32 zero bytes without a passphrase
    verifier: bytes | None
    #: The verifier's SHA-256 when only that is known (:class:`DerivedPassphrase`).
    known_verifier_sha256: str | None = None

    @property
    def verifier_sha256(self) -> str | None:
        """What the notary keeps of the verifier (None: no passphrase)."""
        if self.verifier is not None:
            return hashlib.sha256(self.verifier).hexdigest()
        return self.known_verifier_sha256

    @property
    def key(self) -> bytes:
        """K = K_link ⊕ K_n ⊕ P."""
        return bytes(a ^ b ^ c for a, b, c in zip(self.k_link, self.k_n, self.p, strict=True))


def new_token() -> str:
    """A link token: 24 random bytes (192 bits), base64url, 32 characters."""
    return _b64url(os.urandom(24))


def link(notary_url: str, token: str, k_link: bytes) -> str:
    """``<notary>/p/<token>#<K_link base64url>``: the fragment never reaches a server."""
    return f"{notary_url.rstrip('/')}/p/{token}#{_b64url(k_link)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def passphrase_keys(passphrase: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """(P, verifier) = scrypt(passphrase, salt, N=2^15, r=8, p=1, dkLen=64) split in two."""
    out = hashlib.scrypt(
        passphrase, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20, dklen=64
    )
    return out[:32], out[32:]


@dataclass(frozen=True, repr=False)
class DerivedPassphrase:
    """A passphrase's scrypt output for one random salt, without the passphrase: P and the
    verifier's SHA-256 (not the verifier, which the page proves the passphrase with). A
    campaign keeps this for a recipient's own passphrase until their message is sealed
    (docs/campaigns.md "A passphrase per recipient")."""

    salt: bytes
    p: bytes
    verifier_sha256: str

    @classmethod
    def of(cls, passphrase: bytes) -> DerivedPassphrase:
        salt = os.urandom(16)
        p, verifier = passphrase_keys(passphrase, salt)
        return cls(salt, p, hashlib.sha256(verifier).hexdigest())

    def to_json(self) -> str:
        b64 = base64.b64encode
        return json.dumps(
            {"salt": b64(self.salt).decode(), "p": b64(self.p).decode(), "v": self.verifier_sha256}
        )

    @classmethod
    def from_json(cls, text: str) -> DerivedPassphrase:
        d = json.loads(text)
        return cls(base64.b64decode(d["salt"]), base64.b64decode(d["p"]), str(d["v"]))


def seal_pickup(
    text: str,
    files: list[PickupFile],
    message_id: str,
    passphrase: bytes | DerivedPassphrase | None = None,
) -> tuple[bytes, PickupKeys, bytes | None]:
    """Encrypt text and files under a fresh K; return (content, keys, salt or None)."""
    manifest = {
        "v": 1,
        "text": text,
        "files": [
            {
                "name": f.name,
                "type": f.type,
                "size": len(f.data),
                "sha256": hashlib.sha256(f.data).hexdigest(),
            }
            for f in files
        ],
    }
    head = json.dumps(manifest, ensure_ascii=False, sort_keys=True).encode("utf-8")
    payload = struct.pack(">I", len(head)) + head + b"".join(f.data for f in files)
    if isinstance(passphrase, DerivedPassphrase):
        salt: bytes | None = passphrase.salt
        keys = PickupKeys(
            os.urandom(32), os.urandom(32), passphrase.p, None, passphrase.verifier_sha256
        )
    else:
        salt = os.urandom(16) if passphrase is not None else None
        p, verifier = (
            (bytes(32), None) if salt is None else passphrase_keys(passphrase or b"", salt)
        )
        keys = PickupKeys(os.urandom(32), os.urandom(32), p, verifier)
    nonce = os.urandom(_NONCE)
    aad = MAGIC + message_id.encode("ascii")
    return MAGIC + nonce + AESGCM(keys.key).encrypt(nonce, payload, aad), keys, salt


def open_pickup(blob: bytes, key: bytes, message_id: str) -> tuple[str, list[PickupFile]]:
    """The text and files; VerificationError when ``key`` is not K (or the content changed)."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _NONCE + 16:
        raise MalformedError("this is not certmail pickup content")
    nonce, body = blob[len(MAGIC) : len(MAGIC) + _NONCE], blob[len(MAGIC) + _NONCE :]
    try:
        payload = AESGCM(key).decrypt(nonce, body, MAGIC + message_id.encode("ascii"))
    except InvalidTag:
        raise VerificationError("the pickup content does not decrypt with this key") from None
    (n,) = struct.unpack(">I", payload[:4])
    manifest: Any = json.loads(payload[4 : 4 + n])
    files, at = [], 4 + n
    for f in manifest["files"]:
        files.append(PickupFile(f["name"], f["type"], payload[at : at + f["size"]]))
        at += f["size"]
    return manifest["text"], files

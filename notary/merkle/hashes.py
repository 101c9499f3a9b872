"""RFC 9162 §2.1 hashing: the leaf and node hashes, and the :class:`HashReader` that
serves stored hashes to the proof functions (answers checked for count and size)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from notary.errors import StorageError

HASH_SIZE = 32
Hash = bytes

EMPTY_ROOT: Hash = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() of the empty string, RFC 9162 §2.1.1."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(entry: bytes) -> Hash:
    """Return the leaf hash SHA-256(0x00 ‖ entry) of RFC 9162 §2.1.1."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: Hash, right: Hash) -> Hash:
    """Return the interior node hash SHA-256(0x01 ‖ left ‖ right) of RFC 9162 §2.1.1."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


class HashReader(Protocol):
    """Read access to stored hashes (the tlog ``HashReader``).

    ``read_hashes`` returns exactly ``len(indexes)`` hashes of :data:`HASH_SIZE`
    bytes, in the order asked for. Every index asked for was written before
    (by the caller's own appends, or by storage that made it durable), so a
    reader never invents or recomputes a hash.
    """

    def read_hashes(self, indexes: Sequence[int]) -> list[Hash]:
        """Return the stored hashes at ``indexes``, in the same order."""
        ...


def read_hashes(reader: HashReader, indexes: Sequence[int]) -> list[Hash]:
    """Read hashes through ``reader``, checking the count and size of the answer."""
    if not indexes:
        return []
    hashes = reader.read_hashes(indexes)
    if len(hashes) != len(indexes):
        raise StorageError(f"hash reader returned {len(hashes)} hashes for {len(indexes)} indexes")
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise StorageError(f"hash reader returned a {len(h)}-byte hash")
    return hashes


def split_size(size: int) -> tuple[int, int]:
    """Return ``(k, level)``: k = 2^level is the largest power of two less than ``size`` ≥ 2 (RFC 9162 §2.1.1)."""  # noqa: E501
    level = (size - 1).bit_length() - 1
    return 1 << level, level


def check_hash_arg(h: Hash, what: str) -> None:
    """Raise ``ValueError`` unless ``h`` is a :data:`HASH_SIZE`-byte hash (caller misuse)."""
    if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes")

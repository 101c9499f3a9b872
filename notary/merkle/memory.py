"""The reference Merkle Tree Hash (RFC 9162 §2.1.1, recursive) and an in-memory store
of stored hashes (tests, benchmarks, small tools)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from notary.errors import StorageError
from notary.merkle.hashes import (
    EMPTY_ROOT,
    Hash,
    leaf_hash,
    node_hash,
    split_size,
)
from notary.merkle.proofs import tree_hash
from notary.merkle.stored import stored_hashes, stored_hashes_for_batch

# --- reference definition and in-memory store --------------------------------


def mth(entries: Sequence[bytes]) -> Hash:
    """Return MTH(D_n) by the recursive definition of RFC 9162 §2.1.1 (slow; a reference for tests)."""  # noqa: E501
    n = len(entries)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hash(entries[0])
    k, _ = split_size(n)
    return node_hash(mth(entries[:k]), mth(entries[k:]))


class MemoryHashStore:
    """An in-memory :class:`HashReader` holding a whole tree's stored hashes (for tests and small uses).

    Nothing is durable: the hashes live as long as the object.
    """  # noqa: E501

    def __init__(self) -> None:
        self._hashes: list[Hash] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Return the number of records appended."""
        return self._size

    def append(self, entry: bytes) -> int:
        """Append ``entry`` as the next record and return its index (RFC 9162 §2.1.1)."""
        index = self._size
        self._hashes.extend(stored_hashes(index, leaf_hash(entry), self))
        self._size += 1
        return index

    def extend(self, entries: Iterable[bytes]) -> int:
        """Append ``entries`` as the next records in one batch and return the first one's index."""
        index = self._size
        leaves = [leaf_hash(e) for e in entries]
        self._hashes.extend(stored_hashes_for_batch(index, leaves, self))
        self._size += len(leaves)
        return index

    def read_hashes(self, indexes: Sequence[int]) -> list[Hash]:
        """Return the stored hashes at ``indexes``, in order."""
        stored = len(self._hashes)
        for i in indexes:
            if not 0 <= i < stored:
                raise StorageError(f"hash index {i} is not stored (have {stored})")
        return [self._hashes[i] for i in indexes]

    def root(self) -> Hash:
        """Return MTH of all records appended so far (RFC 9162 §2.1.1)."""
        return tree_hash(self._size, self)

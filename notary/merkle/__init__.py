"""The RFC 9162 (RFC 6962) Merkle tree over SHA-256, with stored-hash indexing.

Implements the Merkle Tree Hash, inclusion proofs and consistency proofs of
RFC 9162 §2.1 (leaf = SHA-256(0x00 ‖ entry), node = SHA-256(0x01 ‖ left ‖ right)).

Storage follows golang.org/x/mod/sumdb/tlog: every complete subtree hash is
stored once, at an index given by :func:`stored_hash_index`, and appending
record ``n`` stores the leaf hash followed by the hashes of the perfect
subtrees it completes. Tree hashes and proofs at any size are then assembled
from O(log n) stored hashes read through a :class:`HashReader`; nothing is ever
rebuilt.

Verification functions return ``None`` or raise
:class:`~notary.errors.VerificationError` (:class:`~notary.errors.MalformedError`
for hashes of the wrong length); proof functions raise ``ValueError`` on
out-of-range sizes and :class:`~notary.errors.StorageError` when a reader
answers with the wrong number or size of hashes.

The package's modules: :mod:`~notary.merkle.hashes`, :mod:`~notary.merkle.stored`,
:mod:`~notary.merkle.proofs`, :mod:`~notary.merkle.verify`, :mod:`~notary.merkle.memory`;
import the public names from here.
"""

from __future__ import annotations

from notary.merkle.hashes import EMPTY_ROOT, HASH_SIZE, Hash, HashReader, leaf_hash, node_hash
from notary.merkle.memory import MemoryHashStore, mth
from notary.merkle.proofs import prove_consistency, prove_inclusion, prove_inclusion_many, tree_hash
from notary.merkle.stored import (
    split_stored_hash_index,
    stored_hash_count,
    stored_hash_index,
    stored_hashes,
    stored_hashes_for_batch,
)
from notary.merkle.verify import verify_consistency, verify_inclusion

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Hash",
    "HashReader",
    "MemoryHashStore",
    "leaf_hash",
    "mth",
    "node_hash",
    "prove_consistency",
    "prove_inclusion",
    "prove_inclusion_many",
    "split_stored_hash_index",
    "stored_hash_count",
    "stored_hash_index",
    "stored_hashes",
    "stored_hashes_for_batch",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]

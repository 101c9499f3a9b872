"""Verification of inclusion and consistency proofs (RFC 9162 §2.1.3.2, §2.1.4.2): return
``None`` or raise :class:`~notary.errors.VerificationError`."""

from __future__ import annotations

from collections.abc import Sequence

from notary.errors import MalformedError, VerificationError
from notary.merkle.hashes import (
    EMPTY_ROOT,
    HASH_SIZE,
    Hash,
    node_hash,
)

# --- verification (RFC 9162 §2.1.3.2, §2.1.4.2) -------------------------------


def _check_hash(h: Hash, what: str) -> None:
    """Raise :class:`MalformedError` unless ``h`` is a :data:`HASH_SIZE`-byte hash."""
    if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
        raise MalformedError(f"{what} is not a {HASH_SIZE}-byte hash")


def _check_proof(proof: Sequence[Hash]) -> None:
    """Raise :class:`MalformedError` unless every proof element is a :data:`HASH_SIZE`-byte hash."""
    for i, h in enumerate(proof):
        _check_hash(h, f"proof hash {i}")


def verify_inclusion(leaf: Hash, index: int, size: int, proof: Sequence[Hash], root: Hash) -> None:
    """Check that ``proof`` shows the leaf hash ``leaf`` at ``index`` in the tree of ``size`` with root ``root`` (RFC 9162 §2.1.3.2)."""  # noqa: E501
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    _check_proof(proof)
    if index < 0 or size < 0:
        raise VerificationError("inclusion proof: negative index or size")
    if index >= size:
        raise VerificationError(f"inclusion proof: index {index} is not in a tree of size {size}")
    fn, sn = index, size - 1
    r = bytes(leaf)
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is too short")
    if r != root:
        raise VerificationError("inclusion proof does not lead to the root hash")


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[Hash], old_root: Hash, new_root: Hash
) -> None:
    """Check that ``proof`` shows the tree of ``new_size`` with root ``new_root`` extends the tree of ``old_size`` with root ``old_root`` (RFC 9162 §2.1.4.2).

    Equal sizes need an empty proof and equal roots (the empty root for size
    0); a non-empty tree is never proved consistent with the empty tree, as
    the RFC's algorithm and the official vectors require.
    """  # noqa: E501
    _check_proof(proof)
    if old_size < 0 or new_size < 0:
        raise VerificationError("consistency proof: negative tree size")
    if old_size > new_size:
        raise VerificationError(
            f"consistency proof: old size {old_size} is larger than new size {new_size}"
        )
    if old_size == new_size:
        if proof:
            raise VerificationError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise VerificationError("roots of the same tree size differ")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise VerificationError("root of the empty tree is not the empty hash")
        return
    # Roots are length-checked only here: for equal sizes the official vectors
    # (and upstream transparency-dev/merkle) compare them byte for byte.
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    if old_size == 0:
        raise VerificationError("a consistency proof from the empty tree is meaningless")
    if not proof:
        raise VerificationError("consistency proof is empty")

    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is too short")
    if fr != old_root:
        raise VerificationError("consistency proof does not lead to the old root hash")
    if sr != new_root:
        raise VerificationError("consistency proof does not lead to the new root hash")

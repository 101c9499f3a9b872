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
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from notary.errors import MalformedError, StorageError, VerificationError

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
    "split_stored_hash_index",
    "stored_hash_count",
    "stored_hash_index",
    "stored_hashes",
    "stored_hashes_for_batch",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]

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


def _read(reader: HashReader, indexes: Sequence[int]) -> list[Hash]:
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


# --- stored-hash indexing (golang.org/x/mod/sumdb/tlog) ----------------------


def stored_hash_index(level: int, n: int) -> int:
    """Return the storage index of the hash of the ``n``th level-``level`` subtree (tlog)."""
    if level < 0 or n < 0:
        raise ValueError("level and n must not be negative")
    # Storage of the level-l node n ends with the storage of its rightmost
    # leaf, 2^l·(n+1)-1, after which come the l hashes that leaf completed.
    n = ((n + 1) << level) - 1
    i = 0
    while n > 0:
        i += n
        n >>= 1
    return i + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """Return the ``(level, n)`` whose :func:`stored_hash_index` is ``index`` (tlog)."""
    if index < 0:
        raise ValueError("index must not be negative")
    # Leaf n is stored at roughly 2n, never after it: start there and walk on.
    n = index // 2
    index_n = stored_hash_index(0, n)
    while True:
        nxt = index_n + 1 + _trailing_zeros(n + 1)
        if nxt > index:
            break
        n += 1
        index_n = nxt
    level = index - index_n
    return level, n >> level


def stored_hash_count(n: int) -> int:
    """Return how many hashes a tree of ``n`` records stores (tlog)."""
    if n < 0:
        raise ValueError("n must not be negative")
    if n == 0:
        return 0
    count = stored_hash_index(0, n - 1) + 1
    i = n - 1
    while i & 1:
        count += 1
        i >>= 1
    return count


def _trailing_zeros(x: int) -> int:
    """Return the number of trailing zero bits of the positive integer ``x``."""
    return (x & -x).bit_length() - 1


def _trailing_ones(x: int) -> int:
    """Return the number of trailing one bits of the non-negative integer ``x``."""
    return _trailing_zeros(x + 1)


def stored_hashes(n: int, leaf: Hash, reader: HashReader) -> list[Hash]:
    """Return the hashes to store, from ``stored_hash_index(0, n)`` on, when appending record ``n`` with leaf hash ``leaf`` (RFC 9162 §2.1.1)."""  # noqa: E501
    if n < 0:
        raise ValueError("n must not be negative")
    _check_hash_arg(leaf, "leaf hash")
    # Record n completes one perfect subtree per trailing one bit of n; the
    # left sibling at level i is the level-i subtree (n >> i) - 1.
    m = _trailing_ones(n)
    indexes = [stored_hash_index(i, (n >> i) - 1) for i in range(m - 1, -1, -1)]
    old = _read(reader, indexes)
    hashes = [leaf]
    h = leaf
    for i in range(m):
        h = node_hash(old[m - 1 - i], h)
        hashes.append(h)
    return hashes


def stored_hashes_for_batch(start: int, leaves: Sequence[Hash], reader: HashReader) -> list[Hash]:
    """Return the hashes to store, from ``stored_hash_index(0, start)`` on, when appending ``leaves`` as records ``start``, ``start+1``, … (RFC 9162 §2.1.1).

    The result equals the concatenation of :func:`stored_hashes` for each
    record, but the reader is asked once, for at most one hash per level (the
    right edge of the tree of size ``start``); hashes the batch creates are
    kept in memory.
    """  # noqa: E501
    if start < 0:
        raise ValueError("start must not be negative")
    for leaf in leaves:
        _check_hash_arg(leaf, "leaf hash")
    if not leaves:
        return []
    # pending[l] is the newest level-l subtree with an even index: a left child
    # still waiting for its right sibling. Before the batch these are the
    # perfect subtrees of the tree of size start, one per set bit of start.
    levels = [lvl for lvl in range(start.bit_length()) if (start >> lvl) & 1]
    edge = _read(reader, [stored_hash_index(lvl, (start >> lvl) - 1) for lvl in levels])
    pending: list[Hash] = [b""] * (start + len(leaves)).bit_length()
    for lvl, h in zip(levels, edge, strict=True):
        pending[lvl] = h
    out: list[Hash] = []
    append = out.append
    n = start
    for leaf in leaves:
        h = leaf
        append(h)
        m = _trailing_ones(n)
        for i in range(m):
            h = node_hash(pending[i], h)
            append(h)
        pending[m] = h
        n += 1
    return out


# --- tree hashes and proofs (RFC 9162 §2.1) ----------------------------------


def _split(size: int) -> tuple[int, int]:
    """Return ``(k, level)``: k = 2^level is the largest power of two less than ``size`` ≥ 2 (RFC 9162 §2.1.1)."""  # noqa: E501
    level = (size - 1).bit_length() - 1
    return 1 << level, level


def _subtree_indexes(lo: int, hi: int, need: list[int]) -> None:
    """Append the stored-hash indexes of the perfect subtrees that make up records [lo, hi)."""
    while lo < hi:
        # Largest power of two k with k <= hi - lo.
        level = (hi - lo).bit_length() - 1
        k = 1 << level
        if lo & (k - 1):
            raise AssertionError("unaligned subtree")  # pragma: no cover
        need.append(stored_hash_index(level, lo >> level))
        lo += k


def _subtree_hash(lo: int, hi: int, hashes: list[Hash], pos: int) -> tuple[Hash, int]:
    """Combine the hashes read for :func:`_subtree_indexes` ``(lo, hi)`` from ``hashes[pos:]``; return the MTH of records [lo, hi) and the next position."""  # noqa: E501
    count = 0
    while lo < hi:
        lo += 1 << ((hi - lo).bit_length() - 1)
        count += 1
    h = hashes[pos + count - 1]
    for i in range(pos + count - 2, pos - 1, -1):
        h = node_hash(hashes[i], h)
    return h, pos + count


def tree_hash(n: int, reader: HashReader) -> Hash:
    """Return MTH(D[0:n]), the Merkle Tree Hash of the first ``n`` records (RFC 9162 §2.1.1)."""
    if n < 0:
        raise ValueError("n must not be negative")
    if n == 0:
        return EMPTY_ROOT
    need: list[int] = []
    _subtree_indexes(0, n, need)
    h, _ = _subtree_hash(0, n, _read(reader, need), 0)
    return h


def _inclusion_indexes(lo: int, hi: int, m: int, need: list[int]) -> None:
    """Append the stored-hash indexes PATH(m, D[lo:hi]) needs (RFC 9162 §2.1.3.1)."""
    if lo + 1 == hi:
        return
    k, _ = _split(hi - lo)
    if m < lo + k:
        _inclusion_indexes(lo, lo + k, m, need)
        _subtree_indexes(lo + k, hi, need)
    else:
        _subtree_indexes(lo, lo + k, need)
        _inclusion_indexes(lo + k, hi, m, need)


def _inclusion_path(lo: int, hi: int, m: int, hashes: list[Hash], pos: int, out: list[Hash]) -> int:
    """Append PATH(m, D[lo:hi]) to ``out``, leaf end first, from ``hashes[pos:]`` (RFC 9162 §2.1.3.1)."""  # noqa: E501
    if lo + 1 == hi:
        return pos
    k, _ = _split(hi - lo)
    if m < lo + k:
        # PATH(m, D[0:k]) : MTH(D[k:n])
        pos = _inclusion_path(lo, lo + k, m, hashes, pos, out)
        th, pos = _subtree_hash(lo + k, hi, hashes, pos)
    else:
        # PATH(m - k, D[k:n]) : MTH(D[0:k])
        th, pos = _subtree_hash(lo, lo + k, hashes, pos)
        pos = _inclusion_path(lo + k, hi, m, hashes, pos, out)
    out.append(th)
    return pos


def prove_inclusion(size: int, index: int, reader: HashReader) -> list[Hash]:
    """Return the audit path PATH(index, D[0:size]) for record ``index``, leaf end first (RFC 9162 §2.1.3.1)."""  # noqa: E501
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    need: list[int] = []
    _inclusion_indexes(0, size, index, need)
    hashes = _read(reader, need)
    out: list[Hash] = []
    _inclusion_path(0, size, index, hashes, 0, out)
    return out


def prove_inclusion_many(size: int, indexes: Sequence[int], reader: HashReader) -> list[list[Hash]]:
    """Return PATH(i, D[0:size]) for every i in ``indexes``, as :func:`prove_inclusion` does (RFC 9162 §2.1.3.1).

    Made for a sequencer batch (many neighbouring records of one tree): the
    path of record m holds, level by level from the leaves up, the hash of the
    sibling of m's ancestor at that level — a stored subtree when it is
    complete, the MTH of the tree's ragged right edge when it is not, nothing
    when it lies beyond the tree. Every sibling the batch needs is looked up
    once, in one read, and each path is then assembled by table look-ups.
    """  # noqa: E501
    for m in indexes:
        if not 0 <= m < size:
            raise ValueError(f"index {m} is not in a tree of size {size}")
    if not indexes:
        return []
    lo_m, hi_m = min(indexes), max(indexes)
    if hi_m - lo_m > 4 * len(indexes) + 64:  # sparse: tables would be mostly unused
        return [prove_inclusion(size, m, reader) for m in indexes]
    levels = (size - 1).bit_length()
    # tables[l][s - offsets[l]]: the hash of sibling node s at level l, or None.
    offsets: list[int] = []
    tables: list[list[Hash | None]] = []
    wanted: list[int] = []
    slots: list[tuple[int, int]] = []
    ragged: list[tuple[int, int, int]] = []
    for lvl in range(levels):
        first = max(0, (lo_m >> lvl) - 1)
        last = (hi_m >> lvl) + 1
        row: list[Hash | None] = [None] * (last - first + 1)
        for s in range(first, last + 1):
            start = s << lvl
            if start >= size:
                continue
            if (s + 1) << lvl <= size:  # a complete, stored subtree
                n = ((s + 1) << lvl) - 1
                wanted.append(2 * n - n.bit_count() + lvl)
                slots.append((lvl, s - first))
            else:  # the ragged right edge [start, size)
                ragged.append((lvl, s - first, start))
        offsets.append(first)
        tables.append(row)
    for (lvl, pos), h in zip(slots, _read(reader, wanted), strict=True):
        tables[lvl][pos] = h
    for lvl, pos, start in ragged:
        tables[lvl][pos] = _range_hash(start, size, reader)
    out: list[list[Hash]] = []
    for m in indexes:
        path: list[Hash] = []
        for lvl in range(levels):
            sib = tables[lvl][((m >> lvl) ^ 1) - offsets[lvl]]
            if sib is not None:
                path.append(sib)
        out.append(path)
    return out


def _range_hash(lo: int, hi: int, reader: HashReader) -> Hash:
    """MTH(D[lo:hi]) for a range ending at the tree's edge, from stored subtrees."""
    need: list[int] = []
    _subtree_indexes(lo, hi, need)
    h, _ = _subtree_hash(lo, hi, _read(reader, need), 0)
    return h


def _consistency_indexes(lo: int, hi: int, m: int, need: list[int]) -> None:
    """Append the stored-hash indexes SUBPROOF(m, D[lo:hi], lo == 0) needs (RFC 9162 §2.1.4.1)."""
    if m == hi:
        if lo != 0:
            _subtree_indexes(lo, hi, need)
        return
    k, _ = _split(hi - lo)
    if m <= lo + k:
        _consistency_indexes(lo, lo + k, m, need)
        _subtree_indexes(lo + k, hi, need)
    else:
        _subtree_indexes(lo, lo + k, need)
        _consistency_indexes(lo + k, hi, m, need)


def _consistency_path(
    lo: int, hi: int, m: int, hashes: list[Hash], pos: int, out: list[Hash]
) -> int:
    """Append SUBPROOF(m, D[lo:hi], lo == 0) to ``out`` from ``hashes[pos:]`` (RFC 9162 §2.1.4.1)."""  # noqa: E501
    if m == hi:
        if lo != 0:
            th, pos = _subtree_hash(lo, hi, hashes, pos)
            out.append(th)
        return pos
    k, _ = _split(hi - lo)
    if m <= lo + k:
        # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
        pos = _consistency_path(lo, lo + k, m, hashes, pos, out)
        th, pos = _subtree_hash(lo + k, hi, hashes, pos)
    else:
        # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
        th, pos = _subtree_hash(lo, lo + k, hashes, pos)
        pos = _consistency_path(lo + k, hi, m, hashes, pos, out)
    out.append(th)
    return pos


def prove_consistency(old_size: int, new_size: int, reader: HashReader) -> list[Hash]:
    """Return PROOF(old_size, D[0:new_size]), the consistency proof between two tree sizes (RFC 9162 §2.1.4.1).

    The proof is empty when the sizes are equal. A proof from the empty tree
    is meaningless (RFC 9162 §2.1.4.2 rejects it), so ``old_size`` 0 is only
    accepted together with ``new_size`` 0.
    """  # noqa: E501
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == new_size:
        return []
    if old_size == 0:
        raise ValueError("a consistency proof from the empty tree is meaningless")
    need: list[int] = []
    _consistency_indexes(0, new_size, old_size, need)
    hashes = _read(reader, need)
    out: list[Hash] = []
    _consistency_path(0, new_size, old_size, hashes, 0, out)
    return out


# --- verification (RFC 9162 §2.1.3.2, §2.1.4.2) -------------------------------


def _check_hash_arg(h: Hash, what: str) -> None:
    """Raise ``ValueError`` unless ``h`` is a :data:`HASH_SIZE`-byte hash (caller misuse)."""
    if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes")


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


# --- reference definition and in-memory store --------------------------------


def mth(entries: Sequence[bytes]) -> Hash:
    """Return MTH(D_n) by the recursive definition of RFC 9162 §2.1.1 (slow; a reference for tests)."""  # noqa: E501
    n = len(entries)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hash(entries[0])
    k, _ = _split(n)
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

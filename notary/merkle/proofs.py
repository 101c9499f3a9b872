"""Tree hashes, inclusion and consistency proofs (RFC 9162 §2.1.1-§2.1.4), assembled from
O(log n) stored hashes read through a :class:`~notary.merkle.hashes.HashReader`."""

from __future__ import annotations

from collections.abc import Sequence

from notary.merkle.hashes import (
    EMPTY_ROOT,
    Hash,
    HashReader,
    node_hash,
    read_hashes,
    split_size,
)
from notary.merkle.stored import (
    stored_hash_index,
)

# --- tree hashes and proofs (RFC 9162 §2.1) ----------------------------------


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
    h, _ = _subtree_hash(0, n, read_hashes(reader, need), 0)
    return h


def _inclusion_indexes(lo: int, hi: int, m: int, need: list[int]) -> None:
    """Append the stored-hash indexes PATH(m, D[lo:hi]) needs (RFC 9162 §2.1.3.1)."""
    if lo + 1 == hi:
        return
    k, _ = split_size(hi - lo)
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
    k, _ = split_size(hi - lo)
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
    hashes = read_hashes(reader, need)
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
    for (lvl, pos), h in zip(slots, read_hashes(reader, wanted), strict=True):
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
    h, _ = _subtree_hash(lo, hi, read_hashes(reader, need), 0)
    return h


def _consistency_indexes(lo: int, hi: int, m: int, need: list[int]) -> None:
    """Append the stored-hash indexes SUBPROOF(m, D[lo:hi], lo == 0) needs (RFC 9162 §2.1.4.1)."""
    if m == hi:
        if lo != 0:
            _subtree_indexes(lo, hi, need)
        return
    k, _ = split_size(hi - lo)
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
    k, _ = split_size(hi - lo)
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
    hashes = read_hashes(reader, need)
    out: list[Hash] = []
    _consistency_path(0, new_size, old_size, hashes, 0, out)
    return out

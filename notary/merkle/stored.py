"""Stored-hash indexing (golang.org/x/mod/sumdb/tlog): where each complete subtree hash
is stored, and which hashes appending records stores."""

from __future__ import annotations

from collections.abc import Sequence

from notary.merkle.hashes import (
    Hash,
    HashReader,
    check_hash_arg,
    node_hash,
    read_hashes,
)

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
    check_hash_arg(leaf, "leaf hash")
    # Record n completes one perfect subtree per trailing one bit of n; the
    # left sibling at level i is the level-i subtree (n >> i) - 1.
    m = _trailing_ones(n)
    indexes = [stored_hash_index(i, (n >> i) - 1) for i in range(m - 1, -1, -1)]
    old = read_hashes(reader, indexes)
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
        check_hash_arg(leaf, "leaf hash")
    if not leaves:
        return []
    # pending[l] is the newest level-l subtree with an even index: a left child
    # still waiting for its right sibling. Before the batch these are the
    # perfect subtrees of the tree of size start, one per set bit of start.
    levels = [lvl for lvl in range(start.bit_length()) if (start >> lvl) & 1]
    edge = read_hashes(reader, [stored_hash_index(lvl, (start >> lvl) - 1) for lvl in levels])
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

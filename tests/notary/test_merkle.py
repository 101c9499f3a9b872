"""Tests of notary.merkle against RFC 9162 §2.1, the official vectors and the tlog layout."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notary.errors import MalformedError, StorageError, VerificationError
from notary.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Hash,
    MemoryHashStore,
    leaf_hash,
    mth,
    node_hash,
    prove_consistency,
    prove_inclusion,
    split_stored_hash_index,
    stored_hash_count,
    stored_hash_index,
    stored_hashes,
    stored_hashes_for_batch,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rfc9162-merkle"
VECTOR_FILES = sorted(VECTORS.rglob("*.json"))

# Vector files whose expectation we deliberately do not follow, with the reason.
# This copy of the vectors accepts two equal 12-byte "roots" for sizes 1 == 1;
# a root that is not a SHA-256 hash is malformed here, whatever the sizes.
DEVIATIONS: dict[str, type[Exception]] = {}

MAX = 64
FLIP_MAX = 32
ENTRIES = [b"entry %d" % i for i in range(MAX)]
ROOTS = [mth(ENTRIES[:n]) for n in range(MAX + 1)]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(h) for h in value or []]


def check_vector(path: Path) -> None:
    """Run one official vector file through verify_inclusion or verify_consistency."""
    rel = path.relative_to(VECTORS).as_posix()
    case: dict[str, Any] = json.loads(path.read_text())
    if rel.startswith("inclusion/"):

        def run() -> None:
            verify_inclusion(
                _b64(case["leafHash"]),
                case["leafIdx"],
                case["treeSize"],
                _proof(case["proof"]),
                _b64(case["root"]),
            )

    elif rel.startswith("consistency/"):

        def run() -> None:
            verify_consistency(
                case["size1"],
                case["size2"],
                _proof(case["proof"]),
                _b64(case["root1"]),
                _b64(case["root2"]),
            )

    else:  # pragma: no cover - a new kind of vector needs a new branch
        raise AssertionError(f"unknown vector kind: {rel}")

    if rel in DEVIATIONS:
        with pytest.raises(DEVIATIONS[rel]):
            run()
    elif case["wantErr"]:
        with pytest.raises(VerificationError):
            run()
    else:
        run()


def test_all_vector_files_present() -> None:
    assert len(VECTOR_FILES) == 196
    assert (VECTORS / "LICENSE").is_file()
    assert (VECTORS / "PROVENANCE.md").is_file()
    for rel in DEVIATIONS:
        assert (VECTORS / rel).is_file()


@pytest.mark.parametrize(
    "path", VECTOR_FILES, ids=[p.relative_to(VECTORS).as_posix() for p in VECTOR_FILES]
)
def test_official_vector(path: Path) -> None:
    check_vector(path)


# --- hashing and the reference definition -----------------------------------


def test_hash_primitives() -> None:
    assert HASH_SIZE == 32
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert EMPTY_ROOT.hex().startswith("e3b0c442")
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert mth([]) == EMPTY_ROOT
    assert mth([b"x"]) == leaf_hash(b"x")
    # RFC 9162 §2.1.1: k is the largest power of two smaller than n.
    three = [b"a", b"b", b"c"]
    assert mth(three) == node_hash(node_hash(leaf_hash(b"a"), leaf_hash(b"b")), leaf_hash(b"c"))


# --- stored-hash layout (golang.org/x/mod/sumdb/tlog) ------------------------


def test_stored_hash_index_matches_tlog() -> None:
    # Values from tlog's own table: leaves and the hashes they complete, in order.
    want = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0), (0, 4), (0, 5), (1, 2)]
    for index, (level, n) in enumerate(want):
        assert stored_hash_index(level, n) == index
        assert split_stored_hash_index(index) == (level, n)
    for index in range(5000):
        level, n = split_stored_hash_index(index)
        assert stored_hash_index(level, n) == index


def test_stored_hash_count_matches_store() -> None:
    store = MemoryHashStore()
    assert stored_hash_count(0) == 0
    for n in range(1, 200):
        store.append(b"%d" % n)
        assert store.size == n
        assert stored_hash_count(n) == stored_hash_index(0, n)
        # Every stored hash is readable, and the next one is not.
        store.read_hashes([stored_hash_count(n) - 1])
        with pytest.raises(StorageError):
            store.read_hashes([stored_hash_count(n)])


# --- tree hashes and proofs over every small tree ----------------------------


@pytest.fixture(scope="module")
def store() -> MemoryHashStore:
    s = MemoryHashStore()
    for i, entry in enumerate(ENTRIES):
        assert s.append(entry) == i
    return s


def test_tree_hash_matches_mth(store: MemoryHashStore) -> None:
    for n in range(MAX + 1):
        assert tree_hash(n, store) == ROOTS[n]
    assert store.root() == ROOTS[MAX]


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_inclusion_every_leaf(store: MemoryHashStore, size: int) -> None:
    root = tree_hash(size, store)
    assert root == ROOTS[size]
    for index in range(size):
        proof = prove_inclusion(size, index, store)
        verify_inclusion(leaf_hash(ENTRIES[index]), index, size, proof, root)
        # The proof is exactly the length RFC 9162 requires: one more or less fails.
        with pytest.raises(VerificationError):
            verify_inclusion(leaf_hash(ENTRIES[index]), index, size, [*proof, root], root)
        if proof:
            with pytest.raises(VerificationError):
                verify_inclusion(leaf_hash(ENTRIES[index]), index, size, proof[:-1], root)
        # Another leaf, index or root does not verify with the same proof. (The
        # size alone is bound only through the root: index 0 has the same path
        # shape in trees of 40 and 41, so a size change with the same root may
        # pass; with the other tree's root it must not.)
        with pytest.raises(VerificationError):
            verify_inclusion(leaf_hash(b"other"), index, size, proof, root)
        with pytest.raises(VerificationError):
            verify_inclusion(leaf_hash(ENTRIES[index]), index, size, proof, ROOTS[size - 1])
        if index < size - 1:
            with pytest.raises(VerificationError):
                verify_inclusion(leaf_hash(ENTRIES[index]), index, size - 1, proof, ROOTS[size - 1])
        if size > 1:
            other = (index + 1) % size
            with pytest.raises(VerificationError):
                verify_inclusion(leaf_hash(ENTRIES[index]), other, size, proof, root)


@pytest.mark.parametrize("new_size", range(1, MAX + 1))
def test_consistency_every_pair(store: MemoryHashStore, new_size: int) -> None:
    for old_size in range(1, new_size + 1):
        proof = prove_consistency(old_size, new_size, store)
        verify_consistency(old_size, new_size, proof, ROOTS[old_size], ROOTS[new_size])
        if old_size == new_size:
            assert proof == []
            continue
        with pytest.raises(VerificationError):
            verify_consistency(
                old_size, new_size, [*proof, ROOTS[0]], ROOTS[old_size], ROOTS[new_size]
            )
        with pytest.raises(VerificationError):
            verify_consistency(old_size, new_size, proof[:-1], ROOTS[old_size], ROOTS[new_size])
        with pytest.raises(VerificationError):
            verify_consistency(old_size, new_size, proof, ROOTS[old_size - 1], ROOTS[new_size])
        with pytest.raises(VerificationError):
            verify_consistency(old_size, new_size, proof, ROOTS[old_size], ROOTS[new_size - 1])


def _flipped(proof: Sequence[Hash]) -> list[list[Hash]]:
    """Every copy of ``proof`` with exactly one byte of one hash inverted."""
    out = []
    for j, h in enumerate(proof):
        for b in range(len(h)):
            bad = bytearray(h)
            bad[b] ^= 0xFF
            out.append([*proof[:j], bytes(bad), *proof[j + 1 :]])
    return out


@pytest.mark.parametrize("size", range(1, FLIP_MAX + 1))
def test_inclusion_flipped_byte_rejected(store: MemoryHashStore, size: int) -> None:
    root = ROOTS[size]
    for index in range(size):
        leaf = leaf_hash(ENTRIES[index])
        proof = prove_inclusion(size, index, store)
        for bad in _flipped(proof):
            with pytest.raises(VerificationError):
                verify_inclusion(leaf, index, size, bad, root)
        for bad_leaf, bad_root in [(p[0], root) for p in _flipped([leaf])] + [
            (leaf, p[0]) for p in _flipped([root])
        ]:
            with pytest.raises(VerificationError):
                verify_inclusion(bad_leaf, index, size, proof, bad_root)


@pytest.mark.parametrize("new_size", range(2, FLIP_MAX + 1))
def test_consistency_flipped_byte_rejected(store: MemoryHashStore, new_size: int) -> None:
    for old_size in range(1, new_size):
        proof = prove_consistency(old_size, new_size, store)
        assert proof
        for bad in _flipped(proof):
            with pytest.raises(VerificationError):
                verify_consistency(old_size, new_size, bad, ROOTS[old_size], ROOTS[new_size])


def test_verification_edge_cases(store: MemoryHashStore) -> None:
    leaf = leaf_hash(ENTRIES[0])
    # Index beyond the tree, and the empty tree, hold nothing.
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, 1, 1, [], ROOTS[1])
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT)
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, -1, 1, [], ROOTS[1])
    # Hashes of the wrong length are malformed, never silently compared.
    with pytest.raises(MalformedError):
        verify_inclusion(leaf[:31], 0, 1, [], leaf[:31])
    with pytest.raises(MalformedError):
        verify_inclusion(leaf, 0, 2, [leaf_hash(ENTRIES[1]) + b"\x00"], ROOTS[2])
    with pytest.raises(MalformedError):
        verify_consistency(1, 2, [leaf], b"", ROOTS[2])
    # ...except roots of equal sizes, compared byte for byte as the official
    # vector consistency/additional/sizes-are-equal-one-and-proof-is-empty wants.
    verify_consistency(1, 1, [], b"don't care", b"don't care")
    with pytest.raises(VerificationError):
        verify_consistency(1, 1, [], b"don't care", b"don't care!")
    # Equal sizes: empty proof and equal roots; size 0 only with the empty root.
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(5, 5, [], ROOTS[5], ROOTS[5])
    with pytest.raises(VerificationError):
        verify_consistency(0, 0, [], ROOTS[1], ROOTS[1])
    with pytest.raises(VerificationError):
        verify_consistency(5, 5, [ROOTS[5]], ROOTS[5], ROOTS[5])
    with pytest.raises(VerificationError):
        verify_consistency(5, 5, [], ROOTS[5], ROOTS[4])
    # From the empty tree nothing is provable; shrinking never is.
    for proof in ([], [ROOTS[1]]):
        with pytest.raises(VerificationError):
            verify_consistency(0, 1, proof, EMPTY_ROOT, ROOTS[1])
    with pytest.raises(VerificationError):
        verify_consistency(2, 1, [], ROOTS[2], ROOTS[1])
    with pytest.raises(VerificationError):
        verify_consistency(1, 2, [], ROOTS[1], ROOTS[2])
    # Proof functions refuse impossible requests instead of inventing proofs.
    assert prove_consistency(0, 0, store) == []
    assert prove_consistency(7, 7, store) == []
    with pytest.raises(ValueError):
        prove_consistency(0, 3, store)
    with pytest.raises(ValueError):
        prove_consistency(4, 3, store)
    with pytest.raises(ValueError):
        prove_inclusion(3, 3, store)
    with pytest.raises(ValueError):
        prove_inclusion(0, 0, store)


# --- batches -------------------------------------------------------------------


class ListReader:
    """A HashReader over a plain list that counts what it was asked for."""

    def __init__(self, hashes: list[Hash]) -> None:
        self.hashes = hashes
        self.calls = 0
        self.reads = 0

    def read_hashes(self, indexes: Sequence[int]) -> list[Hash]:
        self.calls += 1
        self.reads += len(indexes)
        return [self.hashes[i] for i in indexes]


def _one_by_one(leaves: Sequence[Hash]) -> list[Hash]:
    reader = ListReader([])
    for n, leaf in enumerate(leaves):
        reader.hashes.extend(stored_hashes(n, leaf, reader))
    return reader.hashes


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), max_size=12))
def test_batch_equals_one_by_one(chunks: list[int]) -> None:
    total = sum(chunks)
    leaves = [leaf_hash(b"%d" % i) for i in range(total)]
    want = _one_by_one(leaves)
    got: list[Hash] = []
    start = 0
    for size in chunks:
        # The reader sees only what was stored before this batch: reading a
        # hash the batch itself makes would fail with IndexError.
        reader = ListReader(list(got))
        new = stored_hashes_for_batch(start, leaves[start : start + size], reader)
        assert len(got) == stored_hash_index(0, start)
        assert reader.calls == (1 if size and start else 0)
        assert reader.reads == (bin(start).count("1") if size else 0)
        got.extend(new)
        start += size
    assert got == want
    assert len(got) == stored_hash_count(total)


def test_memory_store_extend_matches_append() -> None:
    a, b = MemoryHashStore(), MemoryHashStore()
    for e in ENTRIES:
        a.append(e)
    assert b.extend(ENTRIES[:10]) == 0
    assert b.extend(ENTRIES[10:]) == 10
    assert b.size == a.size == MAX
    assert b.root() == a.root() == ROOTS[MAX]
    count = stored_hash_count(MAX)
    assert b.read_hashes(range(count)) == a.read_hashes(range(count))


# --- cost: O(log n) hash reads -------------------------------------------------


class CountingReader:
    """Wraps a HashReader and records every index asked for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.asked: list[int] = []

    def read_hashes(self, indexes: Sequence[int]) -> list[Hash]:
        self.asked.extend(indexes)
        return list(self.inner.read_hashes(indexes))


class LazyReader:
    """A fake reader for a huge tree: each stored hash is SHA-256 of its index (not a real tree)."""

    def __init__(self, size: int) -> None:
        self.limit = stored_hash_count(size)
        self.asked: list[int] = []

    def read_hashes(self, indexes: Sequence[int]) -> list[Hash]:
        self.asked.extend(indexes)
        assert all(0 <= i < self.limit for i in indexes), "read beyond the tree"
        return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in indexes]


def _bound(n: int) -> float:
    return 2 * math.log2(n) + 2


def test_proofs_read_log_n_hashes_from_real_store() -> None:
    store = MemoryHashStore()
    store.extend(b"%d" % i for i in range(5000))
    sizes = [1, 2, 3, 1023, 1024, 1025, 3333, 4095, 4096, 4097, 5000]
    for size in sizes:
        root = tree_hash(size, store)
        for index in sorted({0, size // 3, size // 2, size - 1}):
            reader = CountingReader(store)
            proof = prove_inclusion(size, index, reader)
            assert len(reader.asked) <= _bound(size)
            verify_inclusion(leaf_hash(b"%d" % index), index, size, proof, root)
        for old in sorted({1, size // 2, size - 1, size} - {0}):
            reader = CountingReader(store)
            proof = prove_consistency(old, size, reader)
            assert len(reader.asked) <= _bound(size)
            verify_consistency(old, size, proof, tree_hash(old, store), root)
        reader = CountingReader(store)
        tree_hash(size, reader)
        assert len(reader.asked) <= math.log2(size) + 1


@pytest.mark.parametrize("size", [1_000_000, 1_048_575, 1_048_576, 1_048_577, 987_654_321])
def test_proofs_read_log_n_hashes_at_a_million(size: int) -> None:
    for index in [0, 1, 12_345, size // 2, size - 2, size - 1]:
        reader = LazyReader(size)
        proof = prove_inclusion(size, index, reader)
        assert len(reader.asked) <= _bound(size)
        assert len(proof) <= math.ceil(math.log2(size))
    for old in [1, 777, size // 2 + 1, size - 1]:
        reader = LazyReader(size)
        prove_consistency(old, size, reader)
        assert len(reader.asked) <= _bound(size)
    reader = LazyReader(size)
    tree_hash(size, reader)
    assert len(reader.asked) == bin(size).count("1")


class ShortReader:
    def read_hashes(self, indexes: Sequence[int]) -> list[Hash]:
        return [EMPTY_ROOT] * (len(indexes) - 1)


def test_reader_answering_wrongly_is_a_storage_error() -> None:
    with pytest.raises(StorageError):
        tree_hash(3, ShortReader())
    with pytest.raises(StorageError):
        stored_hashes(1, EMPTY_ROOT, ShortReader())


def test_prove_inclusion_many_equals_prove_inclusion() -> None:
    from notary.merkle import prove_inclusion_many

    store = MemoryHashStore()
    for n in range(1, 140):
        store.append(b"e%d" % n)
        size = store.size
        many = prove_inclusion_many(size, list(range(size)), store)
        assert many == [prove_inclusion(size, i, store) for i in range(size)]
    assert prove_inclusion_many(139, [], store) == []
    with pytest.raises(ValueError):
        prove_inclusion_many(139, [139], store)


def test_prove_inclusion_many_batches_and_sparse_indexes() -> None:
    from notary.merkle import prove_inclusion_many

    store = MemoryHashStore()
    store.extend(b"x%d" % i for i in range(1000))
    for size in (1, 2, 3, 511, 512, 513, 777, 1000):
        for lo, hi in ((0, size), (size // 2, size), (max(0, size - 3), size)):
            idx = list(range(lo, hi))
            assert prove_inclusion_many(size, idx, store) == [
                prove_inclusion(size, i, store) for i in idx
            ]
    sparse = [0, 999, 500]
    assert prove_inclusion_many(1000, sparse, store) == [
        prove_inclusion(1000, i, store) for i in sparse
    ]

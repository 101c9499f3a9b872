"""C2SP tlog-tiles format (notary/tiles.py): paths, tiling, hashes and proofs from tiles."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from notary.errors import MalformedError, StorageError, VerificationError
from notary.merkle import (
    MemoryHashStore,
    leaf_hash,
    mth,
    prove_consistency,
    prove_inclusion,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)
from notary.tiles import (
    TILE_WIDTH,
    Tile,
    TileHashReader,
    parse_tile_path,
    read_tile,
    tiles_for_size,
)
from notary.tiles import available as tile_available

# --- paths (c2sp.org/tlog-tiles "Merkle Tree") --------------------------------


@pytest.mark.parametrize(
    ("tile", "path"),
    [
        (Tile(0, 0), "tile/0/000"),
        (Tile(0, 1234067), "tile/0/x001/x234/067"),  # the spec's example
        (Tile(0, 1000), "tile/0/x001/000"),
        (Tile(0, 999), "tile/0/999"),
        (Tile(1, 5, 17), "tile/1/005.p/17"),
        (Tile(2, 0, 1), "tile/2/000.p/1"),
        (Tile(63, 10**9, 255), "tile/63/x001/x000/x000/000.p/255"),
    ],
)
def test_path_round_trip(tile: Tile, path: str) -> None:
    assert tile.path() == path
    assert parse_tile_path(path) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/entries/000",  # entry bundles: never served here
        "tile/entries/000.p/3",
        "tile/00/000",  # leading zero in the level
        "tile/64/000",  # level over 63
        "tile/-1/000",
        "tile/0/00",  # not three digits
        "tile/0/0000",
        "tile/0/001/234",  # a non-final group without x
        "tile/0/x001",  # the final group with x
        "tile/0/x000/001",  # a leading zero group: not the canonical encoding
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/010",
        "tile/0/000.p/",
        "tile/0/000.q/5",
        "tile/0/",
        "tile/0",
        "tiles/0/000",
        "tile/0/0a0",
        "tile/0/٠٠٠",  # Arabic-Indic digits are digits to str.isdigit, not to the spec
        "tile/0/" + "x000/" * 40 + "000",
    ],
)
def test_malformed_paths_are_refused(path: str) -> None:
    with pytest.raises(MalformedError):
        parse_tile_path(path)


def test_tiles_of_the_spec_examples() -> None:
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one
    # partial level 0 tile of width 112, one full level 1 tile, one partial
    # level 1 tile of width 17, and one partial level 2 tile of width 1."
    tiles = tiles_for_size(70_000)
    assert [t for t in tiles if t.level == 0 and t.full] == [Tile(0, n) for n in range(273)]
    assert [t for t in tiles if not (t.level == 0 and t.full)] == [
        Tile(0, 273, 112),
        Tile(1, 0),
        Tile(1, 1, 17),
        Tile(2, 0, 1),
    ]
    # "a tree of size 256 will be represented by a full level 0 tile and a
    # partial level 1 tile of width 1."
    assert tiles_for_size(256) == [Tile(0, 0), Tile(1, 0, 1)]
    assert tiles_for_size(0) == []


# --- contents: tiles reproduce the tree --------------------------------------


def _store(size: int) -> MemoryHashStore:
    store = MemoryHashStore()
    store.extend(f"entry {i}".encode() for i in range(size))
    return store


class _Served:
    """Tiles as a server would hand them out for a tree of ``size``, counting fetches."""

    def __init__(self, store: MemoryHashStore, size: int) -> None:
        self.store, self.size, self.fetched = store, size, 0

    def __call__(self, tiles: Sequence[Tile]) -> list[bytes]:
        self.fetched += len(tiles)
        for t in tiles:
            assert tile_available(t, self.size), t
        return [read_tile(t, self.store) for t in tiles]


def test_tile_contents_are_the_level_hashes() -> None:
    store = _store(70_000)
    data = read_tile(Tile(0, 3), store)
    assert len(data) == TILE_WIDTH * 32
    assert data[:32] == leaf_hash(b"entry 768")
    level1 = read_tile(Tile(1, 0), store)
    # each level-1 hash is the MTH of a full level-0 tile
    assert level1[:32] == tree_hash(256, store)
    assert level1[32:64] == mth([f"entry {i}".encode() for i in range(256, 512)])


@pytest.mark.parametrize(
    "size", [1, 2, 3, 255, 256, 257, 511, 512, 513, 65535, 65536, 65537, 70_000]
)
def test_tree_hash_and_proofs_from_tiles(size: int) -> None:
    store = _store(70_001)
    served = _Served(store, size)
    tiles = TileHashReader(size, served)
    assert tree_hash(size, tiles) == tree_hash(size, store)
    rng = random.Random(size)
    for index in {0, size - 1, rng.randrange(size)}:
        proof = prove_inclusion(size, index, tiles)
        assert proof == prove_inclusion(size, index, store)
        verify_inclusion(
            leaf_hash(f"entry {index}".encode()), index, size, proof, tree_hash(size, store)
        )
    for old in {1, size // 2 or 1, rng.randrange(1, size + 1)}:
        proof = prove_consistency(old, size, tiles)
        assert proof == prove_consistency(old, size, store)
        verify_consistency(old, size, proof, tree_hash(old, store), tree_hash(size, store))
    assert served.fetched <= len(tiles_for_size(size))


def test_every_small_tree_and_pair() -> None:
    store = _store(300)
    for new in range(1, 300, 7):
        tiles = TileHashReader(new, _Served(store, new))
        for old in range(1, new + 1, 5):
            proof = prove_consistency(old, new, tiles)
            verify_consistency(old, new, proof, tree_hash(old, store), tree_hash(new, store))


def test_a_tampered_tile_is_caught_by_the_proof() -> None:
    store = _store(1000)
    good = _Served(store, 1000)

    def tampered(tiles: Sequence[Tile]) -> list[bytes]:
        out = good(tiles)
        return [
            bytes([d[0] ^ 1]) + d[1:] if t == Tile(0, 3, 232) else d for t, d in zip(tiles, out)
        ]

    tiles = TileHashReader(1000, tampered)
    proof = prove_consistency(700, 1000, tiles)
    with pytest.raises(VerificationError):
        verify_consistency(700, 1000, proof, tree_hash(700, store), tree_hash(1000, store))


def test_wrong_tile_sizes_and_missing_hashes() -> None:
    store = _store(600)
    short = TileHashReader(600, lambda tiles: [read_tile(t, store)[:-1] for t in tiles])
    with pytest.raises(StorageError, match="bytes"):
        tree_hash(600, short)
    tiles = TileHashReader(600, _Served(store, 600))
    with pytest.raises(StorageError, match="not in a tree"):
        tiles.read_hashes([10**6])

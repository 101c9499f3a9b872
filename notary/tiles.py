"""C2SP tlog-tiles (c2sp.org/tlog-tiles): the Merkle tree as hash tiles.

A tile is 256 consecutive Merkle Tree Hashes of one level of the tiling: the
``n``-th tile at tile level ``l`` holds, for ``i`` from 0 to 255,
``MTH(D[(n·256 + i)·256^l : (n·256 + i + 1)·256^l])``, i.e. the tlog stored
hashes of tree level ``8·l`` (tile height 8). The rightmost tile of a level is
usually *partial*: for a tree of ``size`` entries it holds
``floor(size / 256^l) mod 256`` hashes and is served at ``.p/<W>``.

Paths are ``tile/<L>/<N>[.p/<W>]``, ``<N>`` in zero-padded groups of three
digits, every group but the last prefixed with ``x`` (1234067 is
``x001/x234/067``). Entry bundles (``tile/entries/...``) are part of the spec
but a certmail notary never serves them: its entries are private (DESIGN §4.1).

Pure format code: no I/O. The server reads tile contents from storage through
a :class:`~notary.merkle.HashReader` (:func:`read_tile`); a client turns tiles
it fetched back into a :class:`~notary.merkle.HashReader`
(:class:`TileHashReader`), from which :mod:`notary.merkle` computes tree
hashes and proofs. Tiles from a server are untrusted: whatever is computed
from them must be checked against a signed checkpoint (a proof with
:func:`~notary.merkle.verify_consistency`, a root with the checkpoint's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from notary.errors import MalformedError, StorageError
from notary.merkle import HASH_SIZE, Hash, HashReader, node_hash, split_stored_hash_index
from notary.merkle import stored_hash_index as _stored_hash_index

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "TileHashReader",
    "parse_tile_path",
    "read_tile",
    "tile_for_size",
    "tiles_for_size",
]

TILE_HEIGHT = 8
"""Tree levels per tile level (c2sp.org/tlog-tiles)."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes in a full tile: 256, 8,192 bytes."""

MAX_LEVEL = 63


@dataclass(frozen=True, order=True)
class Tile:
    """A tile's coordinates: tile level, index within the level, width in hashes."""

    level: int
    n: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_LEVEL:
            raise ValueError(f"tile level {self.level} is not in 0..{MAX_LEVEL}")
        if self.n < 0:
            raise ValueError("tile index must not be negative")
        if not 1 <= self.width <= TILE_WIDTH:
            raise ValueError(f"tile width {self.width} is not in 1..{TILE_WIDTH}")

    @property
    def full(self) -> bool:
        """Whether the tile holds all 256 hashes."""
        return self.width == TILE_WIDTH

    def path(self) -> str:
        """The tile's path, ``tile/<L>/<N>[.p/<W>]`` (no leading slash)."""
        groups = []
        n = self.n
        while True:
            groups.append(f"{n % 1000:03d}")
            n //= 1000
            if n == 0:
                break
        encoded = "/".join(["x" + g for g in reversed(groups[1:])] + [groups[0]])
        suffix = "" if self.full else f".p/{self.width}"
        return f"tile/{self.level}/{encoded}{suffix}"

    def hash_indexes(self) -> list[int]:
        """The tlog stored-hash indexes of the hashes this tile holds, in order."""
        tree_level = TILE_HEIGHT * self.level
        first = self.n * TILE_WIDTH
        return [_stored_hash_index(tree_level, first + i) for i in range(self.width)]


def _decimal(s: str, what: str, path: str) -> int:
    if not s or not s.isascii() or not s.isdigit() or (s[0] == "0" and s != "0"):
        raise MalformedError(f"malformed tile path {path!r}: bad {what}")
    return int(s)


def parse_tile_path(path: str) -> Tile:
    """Parse ``tile/<L>/<N>[.p/<W>]`` strictly (the canonical encoding only); raise MalformedError.

    ``tile/entries/...`` is refused like any other malformed path: this log
    serves no entry bundles.
    """
    if len(path) > 128:
        raise MalformedError("malformed tile path: too long")
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise MalformedError(f"malformed tile path {path!r}")
    level = _decimal(parts[1], "level", path)
    rest = parts[2:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        width = _decimal(rest[-1], "width", path)
        if not 1 <= width < TILE_WIDTH:
            raise MalformedError(f"malformed tile path {path!r}: width must be 1 to 255")
        rest = [*rest[:-2], rest[-2][:-2]]
    n = 0
    for i, group in enumerate(rest):
        last = i == len(rest) - 1
        digits = group if last else group.removeprefix("x")
        if (not last and not group.startswith("x")) or len(digits) != 3:
            raise MalformedError(f"malformed tile path {path!r}: bad index")
        if not digits.isascii() or not digits.isdigit():
            raise MalformedError(f"malformed tile path {path!r}: bad index")
        n = n * 1000 + int(digits)
    if len(rest) > 1 and rest[0] == "x000":
        raise MalformedError(f"malformed tile path {path!r}: leading zero group")
    if level > MAX_LEVEL:
        raise MalformedError(f"malformed tile path {path!r}: level over {MAX_LEVEL}")
    return Tile(level, n, width)


def tile_for_size(level: int, n: int, size: int) -> Tile | None:
    """The widest tile at ``(level, n)`` that a tree of ``size`` entries has, or None."""
    count = size >> (TILE_HEIGHT * level)  # complete subtrees at this tile level
    width = min(TILE_WIDTH, count - n * TILE_WIDTH)
    if width < 1:
        return None
    return Tile(level, n, width)


def tiles_for_size(size: int) -> list[Tile]:
    """Every tile of a tree of ``size`` entries: full tiles, then each level's partial tile."""
    out: list[Tile] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        count = size >> (TILE_HEIGHT * level)
        out.extend(Tile(level, n) for n in range(count // TILE_WIDTH))
        if count % TILE_WIDTH:
            out.append(Tile(level, count // TILE_WIDTH, count % TILE_WIDTH))
        level += 1
    return out


def available(tile: Tile, size: int) -> bool:
    """Whether a tree of ``size`` entries holds every hash of ``tile``."""
    return (tile.n * TILE_WIDTH + tile.width) <= size >> (TILE_HEIGHT * tile.level)


def read_tile(tile: Tile, reader: HashReader) -> bytes:
    """The tile's bytes (its hashes concatenated), read from stored hashes (server side).

    The caller checks :func:`available` against a checkpointed size first.
    """
    hashes = reader.read_hashes(tile.hash_indexes())
    if len(hashes) != tile.width or any(len(h) != HASH_SIZE for h in hashes):
        raise StorageError(f"storage answered a bad set of hashes for {tile.path()}")
    return b"".join(hashes)


def _subtree(data: bytes) -> Hash:
    """MTH of the perfect subtree whose leaves are the 2^k hashes in ``data``."""
    level = [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


TileFetcher = Callable[[Sequence[Tile]], Sequence[bytes]]
"""Fetch tiles (client side): one bytes object per tile, in order."""


class TileHashReader:
    """A :class:`~notary.merkle.HashReader` over the tiles of a tree of ``size`` entries.

    Each stored hash is found in the tile that holds its subtree's leaves at
    the tile level below it, and recomputed from them (tiles keep only every
    8th tree level). Tiles are fetched once through ``fetch`` and kept. The
    answers are as trustworthy as the tiles: check what is computed from them
    against a signed checkpoint.
    """

    def __init__(self, size: int, fetch: TileFetcher) -> None:
        self.size, self._fetch = size, fetch
        self._tiles: dict[tuple[int, int], bytes] = {}

    def _locate(self, index: int) -> tuple[Tile, int, int]:
        """The tile holding stored hash ``index``, and the slice of it to hash."""
        tree_level, k = split_stored_hash_index(index)
        level, within = divmod(tree_level, TILE_HEIGHT)
        first = k << within  # the subtree's first hash at tree level 8·level
        n, offset = divmod(first, TILE_WIDTH)
        tile = tile_for_size(level, n, self.size)
        count = 1 << within
        if tile is None or offset + count > tile.width:
            raise StorageError(f"hash {index} is not in a tree of size {self.size}")
        return tile, offset * HASH_SIZE, (offset + count) * HASH_SIZE

    def read_hashes(self, indexes: Sequence[int]) -> list[Hash]:
        """Return the hashes at ``indexes``, fetching the tiles not yet held in one call."""
        located = [self._locate(i) for i in indexes]
        missing = sorted({t for t, _, _ in located if (t.level, t.n) not in self._tiles})
        if missing:
            got = self._fetch(missing)
            if len(got) != len(missing):
                raise StorageError("tile fetch answered the wrong number of tiles")
            for tile, data in zip(missing, got, strict=True):
                if len(data) != tile.width * HASH_SIZE:
                    raise StorageError(
                        f"{tile.path()} is {len(data)} bytes, not {tile.width * HASH_SIZE}"
                    )
                self._tiles[(tile.level, tile.n)] = data
        out = []
        for tile, start, end in located:
            data = self._tiles[(tile.level, tile.n)]
            out.append(_subtree(data[start:end]))
        return out

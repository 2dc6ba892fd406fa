"""RFC 9162 Merkle tree: integration, roots, proofs and their verification.

The tree is stored as C2SP tlog-tiles hash tiles (https://c2sp.org/tlog-tiles): tile (L, N) holds
the nodes at level 8L with indices N*256 .. N*256+255, where node (level, index) is the hash of
leaves [index * 2**level, (index + 1) * 2**level). One key per tile (:func:`ledger.layout.tile_key`)
holds its current hashes: a full tile (256 hashes) never changes again; the right-edge tile of each
level is partial and grows by appending. After the W hashes the spec serves (row 0, so a tile of
width W is served as the value's first 32*W bytes), the value keeps the tile's inner rows: row k
(k = 1..7) is the W >> k nodes at level 8L + k whose leaves lie in the tile. So any node is one tile
read and a slice: a root or an inclusion proof reads a few tiles.

:func:`integrate` is pure: given the old size, the new leaf hashes and a reader of stored tiles,
it returns the tiles to write (the caller writes them in the same batch as the entries), and the
tree's right edge (:func:`encode_edge`: the perfect subtrees a tree of that size is made of, and
their folds), so that its root, and the imperfect subtree at the right of a proof, take one read. Tree
reads a tile once per instance (a partial tile only grows, so an older copy still holds every
node it held); the trees of one durable store share the tiles above level 0 and the edge they
read (:class:`TileCache`), so a proof reads one tile from the store, at level 0. Verification
functions follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 and raise :class:`ProofError`; digests
are compared with hmac.compare_digest.
"""

import functools
import hashlib
import hmac
import struct
from collections.abc import Callable

from ledger.errors import IntegrityError
from ledger.layout import EDGE_KEY, from_n8, legacy_node_key, n8, tile_key

Reader = Callable[[bytes], bytes | None]
EMPTY_ROOT = hashlib.sha256(b"").digest()
HEIGHT = 8  #: tile height: a tile spans 8 levels of the tree
WIDTH = 1 << HEIGHT  #: hashes in a full tile
HASH = 32


class ProofError(IntegrityError):
    """A proof does not verify."""

    default_title = "Proof does not verify"


class MissingNodeError(IntegrityError):
    """The stored tree does not hold a node it should."""

    default_title = "Merkle node missing"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _row_starts(width: int) -> tuple[int, ...]:
    """Byte offsets of rows 0..7 of a stored tile of this width, and its length (last)."""
    starts, at = [], 0
    for k in range(HEIGHT):
        starts.append(at)
        at += (width >> k) * HASH
    return (*starts, at)


#: Stored tile length in bytes -> (width, row offsets): the length alone gives the width.
_LAYOUT = {starts[-1]: (width, starts) for width in range(1, WIDTH + 1) for starts in [_row_starts(width)]}


_FULL = _row_starts(WIDTH)[-1]


def _path_unpacker(width: int, at: int) -> tuple[Callable[[bytes], tuple[bytes, ...]], int]:
    """From a stored tile of `width` hashes: a function that takes out the siblings of row-0
    position `at` in rows 0, 1, ... as far as the tile holds them, in one C call; and how many rows."""
    starts, fields, end = _row_starts(width), [], 0
    for row in range(HEIGHT):
        sibling = (at >> row) ^ 1
        if sibling >= width >> row:
            break
        offset = starts[row] + sibling * HASH
        fields.append(f"{offset - end}x{HASH}s")
        end = offset + HASH
    return struct.Struct("".join(fields)).unpack_from, len(fields)


#: Row-0 position -> _path_unpacker of a full tile (an inclusion path's eight levels within it).
_FULL_PATHS = [_path_unpacker(WIDTH, at) for at in range(WIDTH)]


@functools.cache
def _partial_path(length: int, at: int) -> tuple[Callable[[bytes], tuple[bytes, ...]], int]:
    """_path_unpacker for a stored tile of `length` bytes (none of any row for a malformed one)."""
    layout = _LAYOUT.get(length)
    return _path_unpacker(layout[0], at) if layout else (lambda value: (), 0)


def tile_width(value: bytes) -> int:
    """The width of a stored tile value (its served hashes); raises IntegrityError if malformed."""
    layout = _LAYOUT.get(len(value))
    if layout is None:
        raise IntegrityError(f"a stored tile of {len(value)} bytes is not a tile of 1 to {WIDTH} hashes")
    return layout[0]


def tile_rows(value: bytes | None) -> list[bytes]:
    """The stored tile's rows 0..7 (row k: its hashes at level 8L + k); eight empty rows for None."""
    if value is None:
        return [b""] * HEIGHT
    tile_width(value)
    starts = _LAYOUT[len(value)][1]
    return [value[starts[k] : starts[k + 1]] for k in range(HEIGHT)]


def encode_tile(rows: list[bytes]) -> bytes:
    return b"".join(rows)


def _place(level: int, index: int) -> tuple[int, int, int, int]:
    """(tile level, tile index, row, position in the row) of node (level, index)."""
    tile_level, row = divmod(level, HEIGHT)
    return tile_level, index >> (HEIGHT - row), row, index & ((WIDTH >> row) - 1)


def integrate(size: int, leaves: list[bytes], read: Reader) -> dict[bytes, bytes | None]:
    """Tiles to write (key -> value) when appending leaf hashes to a tree of `size` leaves.

    Raises IntegrityError when the stored tiles do not hold exactly a tree of `size` leaves
    where the new nodes go."""
    touched: dict[tuple[int, int], list[bytearray]] = {}  # tiles read, by (tile level, tile index)
    grown: set[tuple[int, int]] = set()  # those a node was added to: the tiles to write
    added: dict[tuple[int, int], bytes] = {}  # the nodes added, by (level, index)

    def rows(tile_level: int, tile_index: int) -> list[bytearray]:
        found = touched.get((tile_level, tile_index))
        if found is None:
            stored = tile_rows(read(tile_key(tile_level, tile_index)))
            found = touched[(tile_level, tile_index)] = [bytearray(row) for row in stored]
        return found

    def get(level: int, index: int) -> bytes:
        tile_level, tile_index, row, at = _place(level, index)
        value = bytes(rows(tile_level, tile_index)[row][at * HASH : (at + 1) * HASH])
        if len(value) != HASH:
            raise MissingNodeError(f"Merkle node {level}/{index} is missing")
        return value

    def put(level: int, index: int, value: bytes) -> None:
        tile_level, tile_index, row, at = _place(level, index)
        stored = rows(tile_level, tile_index)[row]
        grown.add((tile_level, tile_index))
        added[(level, index)] = value
        if len(stored) != at * HASH:
            raise IntegrityError(
                f"tile {tile_level}/{tile_index} holds {len(stored) // HASH} nodes of level {level} where a tree "
                f"of {size} leaves has {at}: the stored tree is not that tree"
            )
        stored += value

    for offset, leaf in enumerate(leaves):
        index, level, value = size + offset, 0, leaf
        put(0, index, value)
        while index & 1:
            value = node_hash(get(level, index - 1), value)
            level, index = level + 1, index >> 1
            put(level, index, value)
    end = size + len(leaves)
    writes: dict[bytes, bytes | None] = {
        tile_key(*place): encode_tile([bytes(row) for row in touched[place]]) for place in sorted(grown)
    }
    # Each subtree of the new edge was added here or is the old edge's at its level (no tile read).
    old = _edge_hashes(read(EDGE_KEY), size)
    writes[EDGE_KEY] = encode_edge(end, [
        added.get((level, (end >> level) - 1)) or old.get(level) or get(level, (end >> level) - 1)
        for level in edge_levels(end)
    ])
    return writes


def _edge_hashes(value: bytes | None, size: int) -> dict[int, bytes]:
    """A stored edge's subtree hashes by level, if it is the edge of a tree of `size` (else none)."""
    if value is None or len(value) < 8 or from_n8(value[:8]) != size or len(value) != 8 + 64 * size.bit_count():
        return {}
    return {level: value[8 + HASH * i : 8 + HASH * (i + 1)] for i, level in enumerate(edge_levels(size))}


def encode_edge(size: int, hashes: list[bytes]) -> bytes:
    """The stored right edge of a tree of `size` leaves, given its perfect subtrees' hashes from
    the left: n8 size, those hashes, then for each i the hash of the subtrees i.. together (the
    first is the root), so that neither a root nor a proof's right-edge subtree needs hashing."""
    folds = list(hashes)
    for i in range(len(folds) - 2, -1, -1):
        folds[i] = node_hash(hashes[i], folds[i + 1])
    return n8(size) + b"".join(hashes) + b"".join(folds)


def edge_levels(size: int) -> list[int]:
    """The levels of the perfect subtrees a tree of `size` leaves is made of, from the left."""
    return [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]


#: Tiles above level 0 that a :class:`TileCache` keeps: 1 per 65,536 entries (16 KiB each), so
#: every one of them up to 268M entries, in 64 MiB at most.
TILES_KEPT = 4096


class TileCache:
    """What the trees read from one durable store share: the tiles above level 0 and the right
    edge, as read before. A full tile never changes; a partial tile only grows, so an older copy
    still holds every node it held, and a tree reads one again when it lacks a node (as it reads
    the edge again when the cached one is not of the tree it needs). Never for a reader that sees
    uncommitted writes; dropped when a failed write may have shown some (:meth:`Log.recover`)."""

    def __init__(self) -> None:
        self.tiles: dict[tuple[int, int], bytes] = {}
        self.edge: tuple[int, bytes] | None = None


class Tree:
    """Read-side view of a stored tree: subtree hashes, roots and proofs."""

    def __init__(self, read: Reader, cache: TileCache | None = None) -> None:
        """`cache`: tiles and edge read before, shared between the trees of one durable store."""
        self.read = read
        self.cache = cache
        self._tiles: dict[tuple[int, int], bytes] = {}
        self._edge: tuple[int, bytes] | None = None
        self._edge_read = False  # whether self._edge was read from the store, not the cache

    def edge(self, at_least: int = 0) -> tuple[int, bytes]:
        """The stored right edge (:func:`encode_edge`): the size it is of, and its value ((0, b"") if none).
        A copy from the cache of a tree smaller than `at_least` is read again, once per tree."""
        edge = self._edge
        if edge is None or (edge[0] < at_least and not self._edge_read):
            cache = self.cache
            edge = None if cache is None else cache.edge
            if edge is None or edge[0] < at_least:
                edge, self._edge_read = self._read_edge(), True
                if cache is not None and (cache.edge is None or cache.edge[0] < edge[0]):
                    cache.edge = edge
            self._edge = edge
        return edge

    def _read_edge(self) -> tuple[int, bytes]:
        value = self.read(EDGE_KEY) or b""
        size = from_n8(value[:8]) if len(value) >= 8 else 0
        if len(value) != (8 + 2 * HASH * size.bit_count() if value else 0):
            raise IntegrityError(f"the stored tree edge ({len(value)} bytes) is not that of a tree of {size}")
        return size, value

    def _tile(self, tile_level: int, tile_index: int, fresh: bool = False) -> bytes:
        """The stored tile's value (b"" if none): as this tree or its cache (above level 0) read it
        before, unless `fresh`; then read from the store, and kept in both."""
        key = (tile_level, tile_index)
        cache = self.cache.tiles if self.cache is not None and tile_level else None
        if not fresh:
            value = self._tiles.get(key) or (None if cache is None else cache.get(key))
            if value:
                return value
        value = self.read(tile_key(tile_level, tile_index)) or b""
        if value and len(value) not in _LAYOUT:
            tile_width(value)  # raises IntegrityError
        self._tiles[key] = value
        if cache is not None and value:
            kept = cache.get(key)
            if len(kept or b"") < len(value) and (kept is not None or len(cache) < TILES_KEPT):
                cache[key] = value
        return value

    def node(self, level: int, index: int) -> bytes:
        tile_level, row = level >> 3, level & 7
        tile_index, at = index >> (HEIGHT - row), index & ((WIDTH >> row) - 1)
        value = self._tiles.get((tile_level, tile_index)) or self._tile(tile_level, tile_index)
        for fresh in (False, True):  # a cached partial tile may predate the node: read it again
            if fresh:
                value = self._tile(tile_level, tile_index, fresh)
            if value:
                width, starts = _LAYOUT[len(value)]
                if at < width >> row:
                    start = starts[row] + at * HASH
                    return value[start : start + HASH]
        raise MissingNodeError(f"Merkle node {level}/{index} is missing")

    def hashes(self, tile_level: int, tile_index: int, width: int) -> bytes:
        """The first `width` hashes of tile (tile_level, tile_index), as tlog-tiles serves them:
        a slice of the stored tile. Raises IntegrityError if the stored tile is narrower."""
        for fresh in (False, True):
            value = self._tile(tile_level, tile_index, fresh)
            if value and tile_width(value) >= width:
                return value[: width * HASH]
        raise MissingNodeError(f"tile {tile_level}/{tile_index} of width {width} is missing from the tree")

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges RFC 9162's recursion produces."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return self.node(n.bit_length() - 1, start // n)
        top = n.bit_length()
        if end & ((1 << top) - 1) == n:  # the right edge of the tree of `end` leaves below level `top`
            size, edge = self.edge(at_least=end)
            if size == end:
                at = 8 + HASH * (2 * size.bit_count() - n.bit_count())  # the fold of its last n.bit_count()
                return edge[at : at + HASH]
        k = _split(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int) -> bytes:
        return self.subtree(0, size)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]); raises ValueError unless 0 <= index < size.

        Bottom up, as transparency-dev/merkle lays it out: below level `inner` (where index and
        size - 1 part), the sibling at each level, the top one of which may be the imperfect
        subtree at the right edge; above it, the left sibling wherever index has a 1 bit."""
        if not 0 <= index < size:
            raise ValueError(f"index {index} is not in a tree of size {size}")
        inner = (index ^ (size - 1)).bit_length()
        proof: list[bytes] = []
        level = 0
        while level < inner - 1:  # a tile's rows at a time: level is a multiple of 8
            rows = min(HEIGHT, inner - 1 - level)
            tile_level, tile_index = level >> 3, index >> (level + HEIGHT)
            value = self._tile(tile_level, tile_index)
            at = (index >> level) & (WIDTH - 1)
            unpack, held = _FULL_PATHS[at] if len(value) == _FULL else _partial_path(len(value), at)
            if held < rows:  # a cached partial tile may predate the nodes: read it again
                value = self._tile(tile_level, tile_index, fresh=True)
                unpack, held = _partial_path(len(value), at)
                if held < rows:  # not in a tile (a LegacyTree's nodes are not): node by node, or MissingNodeError
                    proof += [self.node(level + row, (index >> (level + row)) ^ 1) for row in range(rows)]
                    level += rows
                    continue
            path = unpack(value)
            proof += path if rows == HEIGHT else path[:rows]
            level += rows
        if inner:
            start = ((index >> (inner - 1)) ^ 1) << (inner - 1)
            proof.append(self.subtree(start, min(size, start + (1 << (inner - 1)))))
        level, rest = inner, index >> inner
        while rest:
            if rest & 1:
                proof.append(self.node(level, rest ^ 1))
            level, rest = level + 1, rest >> 1
        return proof

    def consistency(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[0:second]); raises ValueError unless 0 < first <= second."""
        if not 0 < first <= second:
            raise ValueError(f"no consistency proof from size {first} to size {second}")
        proof: list[bytes] = []
        start, end, m, complete = 0, second, first, True
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                proof.append(self.subtree(start + k, end))
                end = start + k
            else:
                proof.append(self.subtree(start, start + k))
                start, m, complete = start + k, m - k, False
        if not complete:
            proof.append(self.subtree(start, end))
        proof.reverse()
        return proof


class LegacyTree(Tree):
    """A tree stored the old way, one key per perfect-subtree node (``t<level><n8 index>``): read
    by ``verify`` on a data dir no node has opened since; a node rebuilds it as tiles on open."""

    def edge(self, at_least: int = 0) -> tuple[int, bytes]:
        return (0, b"")

    def node(self, level: int, index: int) -> bytes:
        value = self.read(legacy_node_key(level, index))
        if value is None:
            raise MissingNodeError(f"Merkle node {level}/{index} is missing")
        return value


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    if not 0 <= index < size:
        raise ProofError(f"index {index} is beyond tree size {size}")
    if len(leaf) != 32:
        raise ProofError("a leaf hash is 32 bytes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> None:
    """Raise ProofError unless proof shows leaf at index in the tree of this size and root."""
    if not _equal(root_from_inclusion(index, size, leaf, proof), root):
        raise ProofError(f"inclusion proof for entry {index} does not lead to the root of size {size}")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]) -> None:
    """Raise ProofError unless proof shows the tree of size1 is a prefix of the tree of size2."""
    if size1 > size2 or size1 < 0:
        raise ProofError(f"size {size1} is beyond size {size2}")
    if size1 == 0:
        raise ProofError("no consistency proof starts from the empty tree (RFC 9162 needs 0 < first size)")
    if size1 == size2:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if not _equal(root1, root2):
            raise ProofError("roots differ for equal sizes")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    if size1 & (size1 - 1) == 0:
        proof = [root1, *proof]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if not _equal(fr, root1):
        raise ProofError(f"consistency proof does not lead to the root of size {size1}")
    if not _equal(sr, root2):
        raise ProofError(f"consistency proof does not lead to the root of size {size2}")

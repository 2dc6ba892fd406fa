"""The log as C2SP tlog-tiles (https://c2sp.org/tlog-tiles): tile paths, hash tiles, entry bundles.

Hash tile ``<L>/<N>`` holds, for i in 0..255, MTH(D[(N*256 + i) * 256**L : (N*256 + i + 1) * 256**L]):
the nodes (level 8L, index N*256 + i). :mod:`ledger.merkle` stores the tree as these very tiles, so
a tile is served as a slice of one stored value, never recomputed. A partial tile ``.p/<W>`` is its first W hashes. An
entry bundle ``entries/<N>`` is entries N*256.. as big-endian uint16 length-prefixed bytes.

Paths are canonical or refused: ``<N>`` is zero-padded 3-digit elements, all but the last
prefixed with ``x`` and the first not ``x000``; ``<L>`` is 0..63 and ``<W>`` 1..255 without
leading zeroes. A tile is served for a tree of ``size`` entries only when all its hashes exist
in that tree (so a partial tile of any width up to the tree's, and every full tile below it).
"""

import re
from dataclasses import dataclass

from ledger.errors import LedgerError, NotFoundError
from ledger.merkle import Tree

WIDTH = 256
HASH = 32
#: An entry bigger than this does not fit a bundle's uint16 length prefix.
MAX_BUNDLED_ENTRY = 0xFFFF
_PATH = re.compile(
    r"(?:(?P<level>0|[1-9][0-9]?)|(?P<entries>entries))/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


class EntryTooLargeError(LedgerError):
    """The bundle holds an entry its format cannot (the API answers 501)."""

    default_title = "Entry too large for a bundle"


@dataclass(frozen=True)
class TilePath:
    """A parsed tile path: level None for an entry bundle; width 256 for a full tile."""

    level: int | None
    index: int
    width: int

    @property
    def full(self) -> bool:
        return self.width == WIDTH

    def format(self) -> str:
        return tile_path(self.level, self.index, None if self.full else self.width)


def format_index(index: int) -> str:
    """1234067 -> "x001/x234/067"."""
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    return "/".join([*("x" + g for g in reversed(groups[1:])), groups[0]])


def tile_path(level: int | None, index: int, width: int | None = None) -> str:
    head = "entries" if level is None else str(level)
    return f"{head}/{format_index(index)}" + ("" if width is None else f".p/{width}")


def parse_path(path: str) -> TilePath:
    """A tile path after ``tile/``; raises NotFoundError unless it is a canonical one."""
    match = _PATH.fullmatch(path)
    if match is None:
        raise NotFoundError(f"no tile {path[:80]!r}: not a tlog-tiles path")
    level = None if match["entries"] else int(match["level"])
    if level is not None and level > 63:
        raise NotFoundError(f"no tile {path[:80]!r}: the level is above 63")
    index = int(match["index"].replace("x", "").replace("/", ""))
    width = WIDTH if match["width"] is None else int(match["width"])
    if match["width"] is not None and width >= WIDTH:
        raise NotFoundError(f"no tile {path[:80]!r}: a partial tile is 1 to 255 wide")
    parsed = TilePath(level, index, width)
    if parsed.format() != path:
        raise NotFoundError(f"no tile {path[:80]!r}: the path is not canonical (it is {parsed.format()!r})")
    return parsed


def covered(tile: TilePath, size: int) -> bool:
    """Whether every hash (or entry) of the tile is in the tree of `size` entries."""
    span = 1 << (8 * (tile.level or 0))  # 256**level leaves under each hash
    return (tile.index * WIDTH + tile.width) * span <= size


def hash_tile(tree: Tree, tile: TilePath, size: int) -> bytes:
    """The tile's hashes from the stored tree; raises NotFoundError unless the tree of `size` holds them."""
    assert tile.level is not None
    if not covered(tile, size):
        raise NotFoundError(f"no tile {tile.format()} in a tree of {size} entries")
    return tree.hashes(tile.level, tile.index, tile.width)


def entry_bundle(raws: list[bytes]) -> bytes:
    """Entries as a bundle: each its big-endian uint16 length, then its bytes.

    Raises EntryTooLargeError for an entry over 65535 bytes (the format cannot hold it)."""
    parts = []
    for raw in raws:
        if len(raw) > MAX_BUNDLED_ENTRY:
            raise EntryTooLargeError(
                f"an entry of {len(raw)} bytes does not fit an entry bundle (at most {MAX_BUNDLED_ENTRY}): "
                "read it from /ledger/entries"
            )
        parts += [len(raw).to_bytes(2, "big"), raw]
    return b"".join(parts)

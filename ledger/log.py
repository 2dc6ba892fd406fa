"""The append-only log: entry bytes by sequence number, in a LevelDB of its own.

Keys are named in :mod:`ledger.layout`: entries, the size, the Merkle tree as hash tiles
(:mod:`ledger.merkle`) and the latest signed checkpoint. An append writes entries,
tiles, size and checkpoint in one synced batch; that batch is the durability point, so the
tree never disagrees with the entries. A log whose tree is still in the old one-key-per-node
layout is rebuilt as tiles from its entries when a node opens it (:meth:`Log.upgrade`). A log
opened with a checkpoint file (:mod:`ledger.checkpoint_file`) also copies each checkpoint there,
right after that batch, and never prepares or commits a tree smaller than the one the file signs.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ledger import merkle
from ledger.errors import IntegrityError
from ledger.layout import (
    CHECKPOINT_KEY,
    EDGE_KEY,
    ENTRY_PREFIX,
    LEGACY_TREE_PREFIX,
    LOG_POSITION_KEY,
    SIZE_KEY,
    entry_key,
    from_n8,
    n8,
)
from ledger.store import Store, Writes

#: Leaves integrated per batch when rebuilding the tree (:meth:`Log.upgrade`).
REBUILD_CHUNK = 65_536

if TYPE_CHECKING:
    from ledger.checkpoint_file import CheckpointFile


class Log:
    def __init__(self, store: Store, checkpoint_file: "CheckpointFile | None" = None) -> None:
        self.store = store
        self.checkpoint_file = checkpoint_file
        self._cache = merkle.TileCache()  # shared by the trees read from the store (see tree())

    def size(self) -> int:
        raw = self.store.get(SIZE_KEY)
        return 0 if raw is None else from_n8(raw)

    def raw(self, seq: int) -> bytes:
        value = self.store.get(entry_key(seq))
        if value is None:
            raise IntegrityError(f"entry {seq} is missing from the log")
        return value

    def raws(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """(seq, bytes) for start <= seq < end, in order; raises IntegrityError on a gap."""
        expected = start
        for key, value in self.store.scan(ENTRY_PREFIX, entry_key(start)):
            seq = from_n8(key[1:])
            if seq >= end:
                break
            if seq != expected:
                raise IntegrityError(f"entry {expected} is missing from the log")
            yield seq, value
            expected += 1
        if expected < end:
            raise IntegrityError(f"entry {expected} is missing from the log")

    def position(self) -> bytes:
        """The sequencer position the last appended batch reached (empty: none recorded)."""
        return self.store.get(LOG_POSITION_KEY) or b""

    def tree(self) -> merkle.Tree:
        """The stored tree. Tiles above level 0 and the right edge, once read, are kept for the
        trees after it (merkle.TileCache), until :meth:`recover`."""
        return merkle.Tree(self.store.get, self._cache)

    def recover(self) -> None:
        """Reopen the store after a failed write (Store.recover), forgetting the tiles kept: the
        write may have shown tiles that did not become durable."""
        self._cache = merkle.TileCache()
        self.store.recover()
        self._cache = merkle.TileCache()

    def has_legacy_tree(self) -> bool:
        """Whether the tree is (still, or partly) stored in the old one-key-per-node layout."""
        return next(iter(self.store.scan(LEGACY_TREE_PREFIX)), None) is not None

    def upgrade(self) -> bool:
        """Rebuild the tree as tiles from the entries if the old node keys are there; whether it did.

        Tiles are written in batches, then the old keys deleted, the last batch synced. Until every
        old key is gone the next open rebuilds again from the entries (from scratch, ignoring
        whatever tiles an interrupted rebuild left), so a crash at any point is harmless; the log
        is not served before this returns."""
        if not self.has_legacy_tree():
            return False
        size = self.size()
        edge: dict[bytes, bytes | None] = {}  # the tiles this rebuild wrote that may still grow
        done = 0
        while done < size:
            end = min(size, done + REBUILD_CHUNK)
            leaves = [merkle.leaf_hash(raw) for _, raw in self.raws(done, end)]
            writes = merkle.integrate(done, leaves, edge.get)
            self.store.write(writes, sync=False)
            edge.update(writes)
            for key in [k for k, v in edge.items() if k != EDGE_KEY and v and merkle.tile_width(v) == merkle.WIDTH]:
                del edge[key]  # a full tile never changes again
            done = end
        old = [key for key, _ in self.store.scan(LEGACY_TREE_PREFIX)]
        for at in range(0, len(old), REBUILD_CHUNK):
            part = old[at : at + REBUILD_CHUNK]
            self.store.write(dict.fromkeys(part), sync=at + REBUILD_CHUNK >= len(old))
        return True

    def checkpoint(self) -> str | None:
        raw = self.store.get(CHECKPOINT_KEY)
        try:
            return None if raw is None else raw.decode()
        except UnicodeDecodeError as e:
            raise IntegrityError(f"the log's checkpoint is not UTF-8 text (byte {e.start})") from e

    def prepare(
        self, first_seq: int, raws: list[bytes], position: bytes = b""
    ) -> tuple[dict[bytes, bytes | None], bytes]:
        """The batch appending entries first_seq.., and the tree root after it (to sign); with the
        sequencer position it reaches, if any, so that the log says how far the order was applied.

        Raises IntegrityError if that tree is smaller than one the checkpoint file signs."""
        if self.checkpoint_file is not None:
            self.checkpoint_file.guard(first_seq + len(raws))
        writes: dict[bytes, bytes | None] = {entry_key(first_seq + i): raw for i, raw in enumerate(raws)}
        writes.update(merkle.integrate(first_seq, [merkle.leaf_hash(raw) for raw in raws], self.store.get))
        writes[SIZE_KEY] = n8(first_seq + len(raws))
        if position:
            writes[LOG_POSITION_KEY] = position

        def read(key: bytes) -> bytes | None:
            return writes[key] if key in writes else self.store.get(key)

        return writes, merkle.Tree(read).root(first_seq + len(raws))

    def commit(self, writes: Writes, checkpoint: str | None = None) -> None:
        """Durably write a prepared batch (one fsync), with the checkpoint that signs it; then
        replace the checkpoint file with it (raises IntegrityError first if it signs a smaller
        tree than the file; a file that cannot be written is logged, see CheckpointFile.follow)."""
        if checkpoint is not None:
            if self.checkpoint_file is not None:
                self.checkpoint_file.check(checkpoint)
            writes = {**writes, CHECKPOINT_KEY: checkpoint.encode()}
        self.store.write(writes, sync=True)  # the durability point: from here the batch is kept
        if checkpoint is not None and self.checkpoint_file is not None:
            self.checkpoint_file.follow(checkpoint)

    def append(self, first_seq: int, raws: list[bytes]) -> None:
        """Durably append entries first_seq.. without a checkpoint."""
        self.commit(self.prepare(first_seq, raws)[0])

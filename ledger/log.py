"""The append-only log: entry bytes by sequence number, in a LevelDB of its own.

Keys are named in :mod:`ledger.layout`: entries, the size, the Merkle tree nodes
(:mod:`ledger.merkle`) and the latest signed checkpoint. An append writes entries,
tree nodes, size and checkpoint in one synced batch; that batch is the durability point.
"""

from collections.abc import Iterator

from ledger import merkle
from ledger.errors import IntegrityError
from ledger.layout import CHECKPOINT_KEY, ENTRY_PREFIX, SIZE_KEY, entry_key, from_n8, n8
from ledger.store import Store, Writes


class Log:
    def __init__(self, store: Store) -> None:
        self.store = store

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

    def tree(self) -> merkle.Tree:
        return merkle.Tree(self.store.get)

    def checkpoint(self) -> str | None:
        raw = self.store.get(CHECKPOINT_KEY)
        return None if raw is None else raw.decode()

    def prepare(self, first_seq: int, raws: list[bytes]) -> tuple[dict[bytes, bytes | None], bytes]:
        """The batch appending entries first_seq.., and the tree root after it."""
        writes: dict[bytes, bytes | None] = {entry_key(first_seq + i): raw for i, raw in enumerate(raws)}
        writes.update(merkle.integrate(first_seq, [merkle.leaf_hash(raw) for raw in raws], self.store.get))
        writes[SIZE_KEY] = n8(first_seq + len(raws))

        def read(key: bytes) -> bytes | None:
            return writes[key] if key in writes else self.store.get(key)

        return writes, merkle.Tree(read).root(first_seq + len(raws))

    def commit(self, writes: Writes, checkpoint: str | None = None) -> None:
        """Durably write a prepared batch (one fsync), with the checkpoint that signs it."""
        if checkpoint is not None:
            writes = {**writes, CHECKPOINT_KEY: checkpoint.encode()}
        self.store.write(writes, sync=True)

    def append(self, first_seq: int, raws: list[bytes]) -> None:
        """Durably append entries first_seq.. without a checkpoint."""
        self.commit(self.prepare(first_seq, raws)[0])

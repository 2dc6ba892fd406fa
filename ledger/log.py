"""The append-only log: entry bytes by sequence number, in a LevelDB of its own.

Keys: ``e<n8>`` -> canonical entry bytes; ``size`` -> n8, the number of entries.
Appends are one synced batch; that batch is the durability point.
"""

from collections.abc import Iterator

from ledger.documents import n8
from ledger.errors import IntegrityError
from ledger.store import Store

SIZE_KEY = b"size"


def entry_key(seq: int) -> bytes:
    return b"e" + n8(seq)


class Log:
    def __init__(self, store: Store) -> None:
        self.store = store

    def size(self) -> int:
        raw = self.store.get(SIZE_KEY)
        return 0 if raw is None else int.from_bytes(raw, "big")

    def raw(self, seq: int) -> bytes:
        value = self.store.get(entry_key(seq))
        if value is None:
            raise IntegrityError(f"entry {seq} is missing from the log")
        return value

    def raws(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """(seq, bytes) for start <= seq < end, in order; raises IntegrityError on a gap."""
        expected = start
        for key, value in self.store.scan(b"e", entry_key(start)):
            seq = int.from_bytes(key[1:], "big")
            if seq >= end:
                break
            if seq != expected:
                raise IntegrityError(f"entry {expected} is missing from the log")
            yield seq, value
            expected += 1
        if expected < end:
            raise IntegrityError(f"entry {expected} is missing from the log")

    def append(self, first_seq: int, raws: list[bytes]) -> None:
        """Durably append entries first_seq.. (one synced batch)."""
        writes: dict[bytes, bytes | None] = {entry_key(first_seq + i): raw for i, raw in enumerate(raws)}
        writes[SIZE_KEY] = n8(first_seq + len(raws))
        self.store.write(writes, sync=True)

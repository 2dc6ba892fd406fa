"""Key-value storage behind a small interface.

Two implementations: :class:`LevelStore` (plyvel, the real one) and
:class:`MemoryStore` (sorted in-memory, for fast unit tests). Both offer point
reads, ordered prefix scans and atomic batches; only the batch may be synced.
"""

import bisect
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import plyvel

from ledger.errors import StorageError

Writes = Mapping[bytes, bytes | None]
"""A batch: key -> new value, or None to delete the key."""


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with prefix, in key order, from start (inclusive)."""
        ...

    def write(self, writes: Writes, *, sync: bool) -> None: ...

    def close(self) -> None: ...


class MemoryStore:
    """Sorted in-memory store with the same semantics as LevelStore."""

    def __init__(self) -> None:
        self._keys: list[bytes] = []
        self._data: dict[bytes, bytes] = {}
        self._lock = threading.Lock()
        self.fail_writes: Exception | None = None  # set by tests to simulate disk trouble

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        with self._lock:
            keys = self._keys
            first = start if start is not None and start > prefix else prefix
            i = bisect.bisect_left(keys, first)
            selected = []
            while i < len(keys) and keys[i].startswith(prefix):
                selected.append((keys[i], self._data[keys[i]]))
                i += 1
        return iter(selected)

    def write(self, writes: Writes, *, sync: bool) -> None:
        if self.fail_writes is not None:
            raise StorageError(f"write failed: {self.fail_writes}")
        with self._lock:
            for key, value in writes.items():
                if value is None:
                    if key in self._data:
                        del self._data[key]
                        self._keys.pop(bisect.bisect_left(self._keys, key))
                else:
                    if key not in self._data:
                        bisect.insort(self._keys, key)
                    self._data[key] = value

    def close(self) -> None:
        pass


class LevelStore:
    """A LevelDB directory opened with plyvel."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        try:
            self._db = plyvel.DB(
                str(path), create_if_missing=create, bloom_filter_bits=10, lru_cache_size=64 * 1024 * 1024
            )
        except plyvel.IOError as e:
            if b"lock" in str(e).encode() or "lock" in str(e):
                raise StorageError(
                    f"{path} is already open by another process (LevelDB lock held); "
                    "stop the other orchestrator or use another --data-dir"
                ) from e
            raise StorageError(f"cannot open {path}: {e}") from e
        except plyvel.Error as e:
            raise StorageError(f"cannot open {path}: {e}") from e

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        if start is not None and start > prefix:
            it = self._db.iterator(start=start, prefix=None)
            for key, value in it:
                if not key.startswith(prefix):
                    break
                yield key, value
            return
        yield from self._db.iterator(prefix=prefix)

    def write(self, writes: Writes, *, sync: bool) -> None:
        try:
            with self._db.write_batch(sync=sync) as batch:
                for key, value in writes.items():
                    if value is None:
                        batch.delete(key)
                    else:
                        batch.put(key, value)
        except plyvel.Error as e:
            raise StorageError(f"write to {self.path} failed: {e}") from e

    def close(self) -> None:
        self._db.close()

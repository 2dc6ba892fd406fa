"""Key-value storage behind a small interface.

Two implementations: :class:`LevelStore` (plyvel, the real one) and
:class:`MemoryStore` (sorted in-memory, for fast unit tests). Both offer point
reads, ordered prefix scans and atomic batches; only the batch may be synced.
"""

import bisect
import fcntl
import itertools
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from threading import get_ident
from typing import Protocol

import plyvel

from ledger.errors import IntegrityError, StorageError

Writes = Mapping[bytes, bytes | None]
"""A batch: key -> new value, or None to delete the key."""


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with prefix, in key order, from start (inclusive)."""
        ...

    def write(self, writes: Writes, *, sync: bool) -> None: ...

    def close(self) -> None: ...

    def recover(self) -> None:
        """After a failed write: make the store writable again, holding only what is durable.
        Raises StorageError while that is not possible yet."""
        ...


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

    def recover(self) -> None:
        pass


class LevelStore:
    """A LevelDB directory opened with plyvel.

    After a failed write LevelDB must be reopened before it is written again: a failed
    compaction leaves a sticky error that fails every later write, and a write-ahead log
    record torn by a full disk makes LevelDB drop, when it next opens, every write that
    followed it in that log file, acknowledged or not. So a failed write marks the store
    failed; the next write (or :meth:`recover`) reopens it first, once a probe shows the
    disk takes writes again. Reads go on meanwhile from the open handle; a reopen waits for
    reads in flight, since closing a plyvel DB under a running read is unsafe.
    """

    def __init__(self, path: Path, *, create: bool = True, paranoid: bool = False) -> None:
        """paranoid: LevelDB's paranoid checks (a damaged write-ahead log or table fails the open
        or the read, rather than being skipped): for the log, whose loss must never go unnoticed."""
        self.path = path
        self.paranoid = paranoid
        self._failed: str | None = None  # why the last write failed, until a reopen succeeds
        # Guards _db, _users, _reopening, _generation (get() passes without it, see there). The hot
        # paths take the bare lock (a C-level context manager); the Condition on it serves the waits.
        self._lock = threading.Lock()
        self._gate = threading.Condition(self._lock)
        self._users = 0  # scans and writes running on _db
        self._readers: set[int] = set()  # threads inside get() on _db
        self._reopening = False
        self._generation = 0  # counts reopens, so that a scan notices one and seeks again
        self._db: plyvel.DB | None = self._open(create)

    def _open(self, create: bool) -> plyvel.DB:
        path = self.path
        try:
            return plyvel.DB(
                str(path),
                create_if_missing=create,
                paranoid_checks=self.paranoid,
                bloom_filter_bits=10,
                lru_cache_size=64 * 1024 * 1024,
            )
        except plyvel.CorruptionError as e:
            raise IntegrityError(f"{path} is damaged: {_reason(e)}") from e
        except plyvel.IOError as e:
            if b"lock" in str(e).encode() or "lock" in str(e):
                raise StorageError(_locked(path)) from e
            raise StorageError(f"cannot open {path}: {_reason(e)}") from e
        except plyvel.Error as e:
            raise StorageError(f"cannot open {path}: {_reason(e)}") from e

    def _enter(self) -> plyvel.DB:
        with self._lock:
            db = self._db
            if db is not None and not self._reopening:
                self._users += 1
                return db
            while self._reopening:
                self._gate.wait()
            if self._db is None:  # closed, or a reopen failed: try again (nobody is using it)
                if self._generation < 0:
                    raise StorageError(f"{self.path} is closed")
                self._db = self._open(False)
                self._generation += 1
                self._failed = None
            self._users += 1
            return self._db

    def _leave(self) -> None:
        with self._lock:
            self._users -= 1
            if self._reopening and self._users == 0:
                self._gate.notify_all()

    def _close_locked(self) -> None:
        """Close _db once no read or write runs on it (the caller holds the gate)."""
        self._reopening = True
        try:
            while self._users or self._readers:
                self._gate.wait(0.001)  # get() does not notify: look again soon
            if self._db is not None:
                self._db.close()
                self._db = None
        finally:
            self._reopening = False
            self._gate.notify_all()

    def recover(self) -> None:
        """Reopen the store if a write failed since it was opened; raises StorageError while
        the disk still refuses writes (the store stays open for reads then)."""
        if self._failed is None and self._db is not None:
            return
        if self._db is not None:
            self._probe()
        with self._gate:
            if self._failed is None and self._db is not None:
                return
            if self._generation < 0:
                raise StorageError(f"{self.path} is closed")
            self._close_locked()
            self._db = self._open(False)  # on failure _db stays None: the next use tries again
            self._generation += 1
            self._failed = None

    def _probe(self) -> None:
        """Raise StorageError unless the disk takes the bytes a reopen writes (the memtable
        becomes a table file) plus a margin; do not touch the store otherwise."""
        db = self._enter()
        try:
            memtable = int(db.get_property(b"leveldb.approximate-memory-usage") or b"0")
        finally:
            self._leave()
        needed = memtable + (1 << 20)
        probe = self.path / "REOPEN-PROBE"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, needed)
                else:
                    os.write(fd, bytes(needed))
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as e:
            raise StorageError(
                f"{self.path} still cannot be written ({e.strerror}: {needed} bytes needed to reopen it "
                f"after a failed write: {self._failed}); writes resume once the disk accepts them again"
            ) from e

    def get(self, key: bytes) -> bytes | None:
        # The state machine's and the API's every read: no lock on the way (request threads
        # queued on a shared one under load). A read announces itself in _readers (set.add is
        # atomic), then looks at _reopening; a reopen sets _reopening, then waits until _readers
        # is empty. Whichever comes second sees the other.
        me = get_ident()
        self._readers.add(me)
        db = self._db
        if db is not None and not self._reopening:
            try:
                value: bytes | None = db.get(key)
                return value
            except plyvel.Error as e:
                raise self._read_error(e) from e
            finally:
                self._readers.discard(me)
        self._readers.discard(me)
        db = self._enter()
        try:
            found: bytes | None = db.get(key)
            return found
        except plyvel.Error as e:
            raise self._read_error(e) from e
        finally:
            self._leave()

    def _read_error(self, error: plyvel.Error) -> IntegrityError | StorageError:
        """A failed read: IntegrityError when LevelDB finds the data damaged, else StorageError."""
        if isinstance(error, plyvel.CorruptionError):
            return IntegrityError(f"{self.path} is damaged: {_reason(error)}")
        return StorageError(f"read from {self.path} failed: {_reason(error)}")

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        first = start if start is not None and start > prefix else prefix
        generation, last, batch = -1, None, 1
        it: Iterator[tuple[bytes, bytes]] = iter(())
        while True:
            # A batch per gate passage (1, 2, 4... items: a one-item lookup reads one), never
            # holding the gate while the caller runs, so that a reopen never waits for a scan.
            db = self._enter()
            try:
                if generation != self._generation:  # first batch, or reopened since: seek again
                    generation = self._generation
                    it = db.iterator(start=first if last is None else last)
                    if last is not None:
                        it = _beyond(it, last)
                items = list(itertools.islice(it, batch))
            except plyvel.Error as e:
                raise self._read_error(e) from e
            finally:
                self._leave()
            for item in items:
                if not item[0].startswith(prefix):
                    return
                yield item
            if len(items) < batch:
                return
            last, batch = items[-1][0], min(2 * batch, 256)

    def write(self, writes: Writes, *, sync: bool) -> None:
        if self._failed is not None or self._db is None:
            self.recover()
        db = self._enter()
        try:
            with db.write_batch(sync=sync) as batch:
                put, delete = batch.put, batch.delete
                for key, value in writes.items():
                    if value is None:
                        delete(key)
                    else:
                        put(key, value)
        except plyvel.Error as e:
            self._failed = _reason(e)
            raise StorageError(f"write to {self.path} failed: {self._failed}") from e
        finally:
            self._leave()

    def close(self) -> None:
        with self._gate:
            self._close_locked()
            self._generation = -1


def _beyond(items: Iterator[tuple[bytes, bytes]], key: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The items whose key is past key (a scan resumed after a reopen)."""
    return itertools.dropwhile(lambda item: item[0] <= key, items)


def _locked(path: Path) -> str:
    return (
        f"{path} is already open by another process (LevelDB lock held); "
        "stop the other orchestrator or use another --data-dir"
    )


def check_unlocked(path: Path) -> None:
    """Raise StorageError if another process holds the LevelDB at path, without opening it.

    A process that forks afterwards must not open LevelDB: LevelDB starts its one background
    (compaction) thread the first time an open needs a compaction, and a forked child inherits
    the belief that the thread runs but not the thread. The child's compactions then never
    happen: its writes stall for good once a memtable fills, and closing waits forever.
    (gunicorn's master checks the data dir, then forks the worker that opens it.)
    """
    try:
        fd = os.open(path / "LOCK", os.O_RDWR)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StorageError(f"cannot open {path / 'LOCK'}: {e.strerror}") from e
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the fcntl lock LevelDB itself takes
    except OSError as e:
        raise StorageError(_locked(path)) from e
    finally:
        os.close(fd)  # releases the lock


def _reason(error: plyvel.Error) -> str:
    """LevelDB's message (plyvel carries it as bytes)."""
    message = error.args[0] if error.args else error
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)

"""A stopped node's data dir (or a copy of it) as a verification source.

Read-only: it writes nothing, not even the checkpoint file a start-up would add. Whatever the
data dir's LevelDBs cannot give back (LevelDB finds a table or its write-ahead log damaged, a
file is missing) is a verification failure naming the part ("log", "state") or the entry it hit.
"""

from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TypeVar

from ledger import merkle
from ledger.checkpoint_file import CheckpointFile, CheckpointFileError, read_signed
from ledger.config import LedgerConfig
from ledger.errors import IntegrityError, StorageError
from ledger.layout import LEGACY_TREE_PREFIX, TILE_PREFIX
from ledger.log import Log
from ledger.store import LevelStore, Store
from ledger.verify import VerificationError

T = TypeVar("T")


class LocalSource:
    live = False

    def __init__(self, config: LedgerConfig) -> None:
        if not config.log_dir.exists():
            raise StorageError(f"{config.data_dir} holds no ledger (no {config.log_dir})")
        try:
            self._log_store = LevelStore(config.log_dir, create=False, paranoid=True)
        except IntegrityError as e:  # LevelDB refuses to open it: damaged
            raise VerificationError("log", e.message) from e
        self.log = Log(self._log_store)
        self._legacy: bool | None = None  # whether the tree is in the old layout, once asked
        self._tree_view: merkle.Tree | None = None
        self._state: LevelStore | None = None
        self._kept: str | None = None
        self._witnessed_file = CheckpointFile(config.witnessed_file)
        try:
            if config.state_dir.exists():
                try:
                    self._state = LevelStore(config.state_dir, create=False)
                except IntegrityError as e:
                    raise VerificationError("state", e.message) from e
            self._kept = self._read_kept(CheckpointFile(config.checkpoint_file))
        except BaseException:
            self.close()
            raise

    def _read_kept(self, file: CheckpointFile) -> str | None:
        """The checkpoint file's note, once it is shown to be the node's and the log to hold it."""
        try:
            kept = read_signed(file, self.log)
        except CheckpointFileError as e:
            raise VerificationError(e.where, e.reason) from e
        except (IntegrityError, StorageError) as e:
            raise VerificationError("log", e.message) from e
        return None if kept is None else kept[0]

    def __enter__(self) -> "LocalSource":
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._log_store.close()
        if self._state is not None:
            self._state.close()

    def checkpoint(self) -> str:
        note = _read("checkpoint", self.log.checkpoint)
        if note is None:
            raise VerificationError("checkpoint", "the log holds no checkpoint")
        return note

    def kept_checkpoint(self) -> str | None:
        return self._kept

    def witnessed_checkpoint(self) -> str | None:
        try:
            return self._witnessed_file.read()
        except (IntegrityError, StorageError) as e:
            raise VerificationError("witnessed checkpoint", e.message) from e

    def size(self) -> int:
        return _read("log", self.log.size)

    def raws(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        try:
            yield from self.log.raws(start, end)
        except StorageError as e:  # a table that cannot be read: reported at the entry it hit
            raise IntegrityError(e.message) from e

    @property
    def _old_layout(self) -> bool:
        if self._legacy is None:
            self._legacy = _read("tree", self.log.has_legacy_tree)
        return self._legacy

    @property
    def _tree(self) -> merkle.Tree:
        """The stored tree (a stopped node's: its tiles can be kept once read)."""
        if self._tree_view is None:
            kind = merkle.LegacyTree if self._old_layout else merkle.Tree
            self._tree_view = kind(self._log_store.get)
        return self._tree_view

    def stored_leaf(self, seq: int) -> bytes | None:
        def leaf() -> bytes | None:
            try:
                return self._tree.node(0, seq)
            except merkle.MissingNodeError:
                return None

        return _read("tree", leaf)

    def stored_nodes(self) -> Iterator[tuple[bytes, bytes]]:
        """The stored tiles; on a data dir still in the old layout, its node keys instead (a node
        rebuilds that as tiles when it opens the log, whatever tiles are there beside it)."""
        try:
            yield from self._log_store.scan(LEGACY_TREE_PREFIX if self._old_layout else TILE_PREFIX)
        except VerificationError:
            raise
        except (IntegrityError, StorageError) as e:
            raise VerificationError("tree", e.message) from e

    def state(self) -> Store | None:
        return self._state

    def consistency(self, first: int, second: int) -> list[bytes]:
        try:
            return self._tree.consistency(first, second)
        except StorageError as e:
            raise IntegrityError(e.message) from e


def _read(part: str, read: Callable[[], T]) -> T:
    """read(), with the store's failures (damage, a missing file) as a failure of that part."""
    try:
        return read()
    except VerificationError:
        raise
    except (IntegrityError, StorageError) as e:
        raise VerificationError(part, e.message) from e

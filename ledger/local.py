"""A stopped node's data dir (or a copy of it) as a verification source."""

from collections.abc import Iterator
from types import TracebackType

from ledger import merkle
from ledger.config import LedgerConfig
from ledger.errors import StorageError
from ledger.log import Log
from ledger.store import LevelStore, Store
from ledger.verify import VerificationError


class LocalSource:
    live = False

    def __init__(self, config: LedgerConfig) -> None:
        if not config.log_dir.exists():
            raise StorageError(f"{config.data_dir} holds no ledger (no {config.log_dir})")
        self._log_store = LevelStore(config.log_dir, create=False)
        self.log = Log(self._log_store)
        self._state: LevelStore | None = None
        if config.state_dir.exists():
            try:
                self._state = LevelStore(config.state_dir, create=False)
            except StorageError:
                self._log_store.close()
                raise

    def __enter__(self) -> "LocalSource":
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._log_store.close()
        if self._state is not None:
            self._state.close()

    def checkpoint(self) -> str:
        note = self.log.checkpoint()
        if note is None:
            raise VerificationError("checkpoint", "the log holds no checkpoint")
        return note

    def size(self) -> int:
        return self.log.size()

    def raws(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        return self.log.raws(start, end)

    def stored_leaf(self, seq: int) -> bytes | None:
        return self._log_store.get(merkle.node_key(0, seq))

    def stored_nodes(self) -> Iterator[tuple[bytes, bytes]]:
        return self._log_store.scan(b"t")

    def state(self) -> Store | None:
        return self._state

    def consistency(self, first: int, second: int) -> list[bytes]:
        return merkle.Tree(self._log_store.get).consistency(first, second)

"""Rebuilding state from the log (`orchestrator replay`).

State is rebuilt in a fresh directory beside the live one and swapped in only
when complete, so an interrupted replay leaves the previous state untouched.
"""

import shutil
from dataclasses import dataclass

from ledger.config import LedgerConfig
from ledger.errors import StorageError, ValidationError
from ledger.log import Log
from ledger.state import Progress, catch_up
from ledger.store import LevelStore


@dataclass(frozen=True)
class ReplayResult:
    applied: int
    log_size: int
    digest: bytes


def replay(config: LedgerConfig, *, to: int | None = None, progress: Progress | None = None) -> ReplayResult:
    """Rebuild config.data_dir's state from its log, through entry `to` (inclusive) if given.

    Raises StorageError (no ledger, data dir in use) or IntegrityError (bad log).
    """
    if not config.log_dir.exists():
        raise StorageError(f"{config.data_dir} holds no ledger (no {config.log_dir})")
    log_store = LevelStore(config.log_dir, create=False, paranoid=True)
    try:
        log = Log(log_store)
        size = log.size()
        if to is not None and not 0 <= to < size:
            raise ValidationError(f"--to {to}: the log holds entries 0..{size - 1}")
        end = size if to is None else to + 1
        fresh = config.data_dir / "state.rebuild"
        shutil.rmtree(fresh, ignore_errors=True)
        store = LevelStore(fresh)
        try:
            head = catch_up(log, store, to=end, progress=progress)
        finally:
            store.close()
        old = config.data_dir / "state.old"
        shutil.rmtree(old, ignore_errors=True)
        if config.state_dir.exists():
            config.state_dir.rename(old)
        fresh.rename(config.state_dir)
        shutil.rmtree(old, ignore_errors=True)
        return ReplayResult(head.size, size, head.digest)
    finally:
        log_store.close()

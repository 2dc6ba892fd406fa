"""Persisting a Batch: Merkle tiles, the signed checkpoint, the synced log batch, then state.

The synced log batch is the durability point: nothing is acknowledged before it. State is
written after it without a sync; a failed state write leaves state behind the log, which
catches up from the log before the next batch. A failed log write may or may not have
reached the disk: the log is reopened so that it holds just what is durable, and the head
is taken from it again (:meth:`Committer.recover`).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import checkpoint
from ledger.batch import Batch, Head
from ledger.errors import StorageError
from ledger.log import Log
from ledger.state import catch_up
from ledger.store import Store


@dataclass(frozen=True)
class Notary:
    """Signs a checkpoint after each commit with the node key, under the ledger's origin."""

    origin: str
    key: Ed25519PrivateKey

    def sign(self, size: int, root: bytes, digest: bytes) -> str:
        return checkpoint.sign(checkpoint.Checkpoint(self.origin, size, root, digest), self.key)


class Committer:
    def __init__(
        self, log: Log, state: Store, notary: Notary, *, on_group: Callable[[int, float], None] | None = None
    ) -> None:
        self.log = log
        self.state = state
        self.notary = notary
        self.on_group = on_group
        self._log_failed = False
        self._state_behind = False

    @property
    def needs_recovery(self) -> bool:
        return self._log_failed or self._state_behind

    def commit(self, batch: Batch) -> None:
        """Persist a batch. Raises StorageError when the log write fails (nothing of the batch
        is then durable); a failed state write only leaves state behind (see recover)."""
        if batch.raws:
            started = time.perf_counter()
            log_writes, root = self.log.prepare(batch.before.size, batch.raws, batch.after.position)
            note = self.notary.sign(batch.after.size, root, batch.after.digest)
            try:
                self.log.commit(log_writes, note)  # durability point
            except StorageError:
                self._log_failed = True  # nothing is acknowledged; recover before the next batch
                raise
            if self.on_group is not None:
                self.on_group(len(batch.raws), time.perf_counter() - started)
        if not batch.writes and batch.after == batch.before:
            return
        try:
            self.state.write(batch.state_writes(), sync=False)
        except StorageError:
            self._state_behind = True  # the entries are durable; state catches up from the log

    def recover(self) -> Head:
        """Reopen what failed and bring state level with the durable log; the head to go on from.

        Raises StorageError while the disk still refuses.
        """
        if self._log_failed:
            self.log.recover()
            self._log_failed = False
            self._state_behind = True
        self.state.recover()
        head = catch_up(self.log, self.state)
        self._state_behind = False
        return head

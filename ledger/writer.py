"""The single writer: orders transactions and commits them in groups.

Request threads :meth:`Writer.submit` a transaction and wait. The writer
thread takes everything that is waiting (up to ``max_group``), assigns each a
sequence number and time, applies it with the state machine over the group's
pending writes, appends the accepted entries in one synced batch (the
durability point: one fsync per group), writes state, then answers everyone.
Group size follows load: no timer, the group is whatever queued during the
previous fsync.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import canonical, checkpoint, machine
from ledger.documents import Overlay, n8
from ledger.entry import Entry, SignedRequest, encode, leaf_hash
from ledger.errors import InternalError, LedgerError, StorageError
from ledger.log import Log
from ledger.state import catch_up, meta_writes
from ledger.store import Store

log = logging.getLogger("orchestrator.ledger")


@dataclass(frozen=True)
class Notary:
    """Signs a checkpoint after each commit with the node key, under the ledger's origin."""

    origin: str
    key: Ed25519PrivateKey

    def sign(self, size: int, root: bytes, digest: bytes) -> str:
        return checkpoint.sign(checkpoint.Checkpoint(self.origin, size, root, digest), self.key)


@dataclass(frozen=True)
class Receipt:
    seq: int
    leaf_hash: str


@dataclass(frozen=True)
class Committed:
    """What a client is told: the outcome of its transaction and where it sits in the log."""

    status: int
    body: dict
    receipt: Receipt
    resent: bool = False


@dataclass
class _Pending:
    request: SignedRequest
    key_id: str
    fingerprint: bytes
    future: "Future[Committed]"


class Writer:
    def __init__(
        self,
        log: Log,
        state: Store,
        *,
        clock: Callable[[], float] = time.time,
        max_group: int = 512,
        on_group: Callable[[int, float], None] | None = None,
        notary: "Notary | None" = None,
    ) -> None:
        self.log = log
        self.notary = notary
        self.state = state
        self.clock = clock
        self.max_group = max_group
        self.on_group = on_group
        meta = catch_up(log, state)
        self.size = meta.applied
        self.digest = meta.digest
        self.genesis = meta.genesis or b""
        self.last_time = self._last_time()
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._state_behind = False
        self._log_failed = False
        self._head_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def _last_time(self) -> int:
        if self.size == 0:
            return 0
        return int(canonical.loads(self.log.raw(self.size - 1))["time"])

    def submit(self, request: SignedRequest, key_id: str, fingerprint: bytes) -> "Future[Committed]":
        future: Future[Committed] = Future()
        with self._cond:
            if self._stopping:
                raise StorageError("the ledger is shutting down")
            self._queue.append(_Pending(request, key_id, fingerprint, future))
            self._cond.notify()
        return future

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                group = [self._queue.popleft() for _ in range(min(self.max_group, len(self._queue)))]
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        try:
            if self._log_failed:
                # The failed batch may or may not have reached the disk: reopen the log so that it
                # holds just what is durable, then take size, time and state from it.
                self.log.store.recover()
                self._log_failed = False
                self._state_behind = True
            if self._state_behind:
                self.state.recover()
                meta = catch_up(self.log, self.state)
                with self._head_lock:
                    self.size, self.digest = meta.applied, meta.digest
                    self.last_time = self._last_time()
                self._state_behind = False
            results = self._commit_group(group)
        except LedgerError as e:
            for item in group:
                if not item.future.done():
                    item.future.set_exception(e)
            return
        except Exception as e:  # a bug must not kill the writer thread
            log.exception("commit failed")
            for item in group:
                if not item.future.done():
                    item.future.set_exception(InternalError(f"internal error while committing: {e!r}"))
            return
        for item, result in results:
            if isinstance(result, LedgerError):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    def _commit_group(self, group: list[_Pending]) -> list[tuple[_Pending, Committed | LedgerError]]:
        overlay = Overlay(self.state)
        now_ms = max(self.last_time, int(self.clock() * 1000))
        seq, digest = self.size, self.digest
        raws: list[bytes] = []
        results: list[tuple[_Pending, Committed | LedgerError]] = []
        for item in group:
            earlier = overlay.get(b"m/sent/" + item.fingerprint)
            if earlier is not None:
                results.append((item, self._original(overlay, int.from_bytes(earlier, "big"))))
                continue
            raw = encode(Entry(seq=seq, time_ms=now_ms, key_id=item.key_id, request=item.request))
            try:
                writes, outcome = machine.apply(overlay, Entry(seq, now_ms, item.key_id, item.request, raw=raw))
            except LedgerError as e:
                results.append((item, e))
                continue
            except Exception as e:  # a bug: reject this transaction alone, keep the group going
                log.exception("state machine failed on a transaction")
                results.append((item, InternalError(f"the state machine failed: {e!r}")))
                continue
            overlay.pending.update(writes)
            digest = machine.write_set_digest(digest, seq, writes)
            raws.append(raw)
            results.append((item, Committed(outcome.status, outcome.body, Receipt(seq, leaf_hash(raw).hex()))))
            seq += 1
        if raws:
            started = time.perf_counter()
            log_writes, root = self.log.prepare(self.size, raws)
            note = self.notary.sign(seq, root, digest) if self.notary is not None else None
            try:
                self.log.commit(log_writes, note)  # durability point
            except StorageError:
                self._log_failed = True  # nothing is acknowledged; the next group first recovers the log
                raise
            if self.on_group is not None:
                self.on_group(len(raws), time.perf_counter() - started)
            with self._head_lock:
                self.size, self.digest, self.last_time = seq, digest, now_ms
            overlay.pending.update(meta_writes(seq, digest, self.genesis))
            try:
                self.state.write(overlay.pending, sync=False)
            except StorageError:
                self._state_behind = True  # entries are durable; state catches up from the log
        return results

    def _original(self, overlay: Overlay, seq: int) -> Committed:
        """The recorded outcome of an entry, for an exact resend of its request."""
        raw = overlay.get(b"m/result/" + n8(seq))
        assert raw is not None, f"entry {seq} has no recorded outcome"
        recorded = canonical.loads(raw)
        return Committed(recorded["status"], recorded["body"], Receipt(seq, recorded["leaf"]), resent=True)

    def head(self) -> tuple[int, bytes]:
        with self._head_lock:
            return self.size, self.digest

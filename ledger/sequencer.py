"""Sequencers: where the order of writes comes from.

A :class:`Sequencer` takes proposals and hands them back ordered, in groups, each with the
time its clock read; it does not apply or store anything (like etcd-io/raft handing the
application its committed entries). The ledger's pipeline asks for the next group, applies
it and persists it. :class:`LocalSequencer` is the embedded default: one in-process queue
and the node's clock.
"""

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ledger.errors import StorageError
from ledger.proposal import Ordered, Proposal


class Sequencer(Protocol):
    def propose(self, proposal: Proposal) -> None:
        """Hand a proposal over to be ordered; raises StorageError when it cannot take it."""
        ...

    def next_group(self, limit: int) -> list[Ordered] | None:
        """Block until proposals are ordered and return up to `limit` of them, in order;
        None once the sequencer is closed and everything it took has been handed out."""
        ...

    def close(self) -> None:
        """Take no more proposals; next_group drains what is queued, then returns None."""
        ...


class LocalSequencer:
    """One queue, ordered by arrival, and the node's clock read once per group.

    A group is whatever queued while the previous one was being committed (no timer): group
    size follows load.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._queue: deque[Proposal] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def propose(self, proposal: Proposal) -> None:
        with self._cond:
            if self._closed:
                raise StorageError("the ledger is shutting down")
            self._queue.append(proposal)
            self._cond.notify()

    def next_group(self, limit: int) -> list[Ordered] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            group = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
        now_ms = int(self.clock() * 1000)
        return [Ordered(proposal, now_ms) for proposal in group]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def queued(self) -> int:
        """Proposals waiting for the next group."""
        return len(self._queue)

"""Sequencers: where the order of writes comes from.

A :class:`Sequencer` takes proposals and hands them back ordered, in groups, each with the
time its clock read; it does not apply or store anything (like etcd-io/raft handing the
application its committed entries). The ledger's pipeline asks for the next group, applies
it and persists it. :class:`LocalSequencer` is the embedded default: one in-process queue
and the node's clock. :class:`ledger.etcd_sequencer.EtcdSequencer` takes its order from an
etcd cluster, shared by several nodes.

The ledger starts its sequencer with the head it resumes from (its position: where the order
goes on; its time: no proposal is stamped behind it by the local sequencer) and itself as the
:class:`Waiters` to tell about proposals that end up ordered other than through next_group.
"""

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ledger.batch import Head
from ledger.errors import LedgerError, StorageError
from ledger.proposal import Ordered, Proposal


@dataclass(frozen=True)
class CatchUp:
    """Handed out by next_group in place of a group: the order this node still has to apply is
    gone from the sequencer (etcd compacted it). The ledger takes the entries from a peer, up to
    a head whose position is at or past `since`, then calls `resume` with that position (or with
    its own, unchanged, to be told again later) and the order goes on from there.

    `records` are the sequencer's latest node records (:mod:`ledger.applied`), raw, by node."""

    since: bytes
    records: Mapping[str, bytes]
    resume: Callable[[bytes], None]


class Waiters(Protocol):
    """Who waits for proposals' outcomes (the ledger): told when one cannot be ordered here."""

    def unordered(self, proposal: Proposal, error: LedgerError) -> None:
        """`proposal` will not come out of next_group from this proposing: its waiter gets `error`
        (which may say that it could still have been ordered: a resend learns its outcome)."""
        ...

    def ordered_before(self, proposal: Proposal, position: bytes) -> None:
        """The same signed request was already ordered (proposed by another node, or earlier):
        its outcome is the one applied at `position`, now or once the pipeline gets there."""
        ...

    def report(self) -> tuple[str, bytes]:
        """This node's name and its signed record of how far it has applied (ledger.applied),
        for a sequencer shared by several nodes to publish."""
        ...

    def reported(self, records: Mapping[str, bytes]) -> dict[str, bytes]:
        """Every node's record as the sequencer read it (raw, by node): the positions of those that
        verify, by node name (a genesis node without a valid record is absent)."""
        ...


class Sequencer(Protocol):
    def start(self, head: Head, waiters: Waiters) -> None:
        """Begin: order after head.position (the last one applied), telling `waiters` of
        proposals that will not come out of next_group."""
        ...

    def propose(self, proposal: Proposal) -> None:
        """Hand a proposal over to be ordered; raises StorageError when it cannot take it."""
        ...

    def next_group(self, limit: int) -> list[Ordered] | CatchUp | None:
        """Block until proposals are ordered and return up to `limit` of them, in order (or a
        CatchUp when the order to apply next is no longer there); None once the sequencer is
        closed and everything it took has been handed out."""
        ...

    def close(self) -> None:
        """Take no more proposals; next_group drains what is queued, then returns None."""
        ...

    def trouble(self) -> str | None:
        """Why writes cannot be ordered now, in a sentence (None: they can)."""
        ...


class LocalSequencer:
    """One queue, ordered by arrival, and the node's clock read once per group.

    A group is whatever queued while the previous one was being committed (no timer): group
    size follows load. Its time never goes back: a clock set back leaves groups at the latest
    time read (at least the head's time), so a proposal here is never behind the ledger's time
    (``apply_batch`` refuses those only when another node's clock proposed them).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._queue: deque[Proposal] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._floor_ms = 0

    def start(self, head: Head, waiters: Waiters) -> None:
        self._floor_ms = max(self._floor_ms, head.time_ms)

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
        now_ms = self._floor_ms = max(int(self.clock() * 1000), self._floor_ms)
        return [Ordered(proposal, now_ms) for proposal in group]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def trouble(self) -> str | None:
        return None

    def queued(self) -> int:
        """Proposals waiting for the next group."""
        return len(self._queue)

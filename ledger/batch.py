"""The one apply loop: ordered proposals or logged entries in, a Batch out. Pure.

:func:`apply_batch` is what the live pipeline, catch-up, ``replay`` and ``verify`` all call,
so that each reaches the same entries, state writes and digest from the same input.

Invariants:
- It reads only the state view and the head it is given (no clock, no I/O of its own, no
  unordered iteration) and writes nothing: the caller persists the returned Batch.
- Ledger time: an ordered proposal's entry gets ``max(head time, proposed time)``, so times
  never go back, whatever the clock that proposed them did.
- A proposal whose proposed time is more than the ledger's signature window behind the head
  time is refused (AuthError, reason ``clock``): the proposing node checked the signature's
  age against a clock, or at a moment, the ledger has left behind. The rule reads only the
  head, the proposal and the genesis settings, so every node refuses the same proposals. (The
  local sequencer never proposes a time behind the head: it cannot trigger there.)
- Position: the head after a batch carries the position of the last ordered proposal given
  (its sequencer's bookmark, e.g. an etcd revision), refused or not, so that the caller
  persists how far the order was applied together with what it applied.
- An ordered proposal is refused (its outcome a LedgerError, nothing appended) when the
  state machine rejects it; an exact resend of a request that already became an entry gets
  that entry's recorded outcome and appends nothing, however the copies were ordered.
- A logged entry must fit (next sequence number, time not going back) and be accepted:
  otherwise the log and the state machine disagree, and :class:`RejectedEntry` is raised.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ledger import machine
from ledger.documents import Overlay, Readable
from ledger.entry import Entry, encode, leaf_hash
from ledger.errors import AuthError, IntegrityError, InternalError, LedgerError
from ledger.layout import APPLIED_KEY, DIGEST_KEY, GENESIS_KEY, POSITION_KEY, n8
from ledger.proposal import Committed, Ordered, Receipt

log = logging.getLogger("orchestrator.ledger")

EMPTY_DIGEST = bytes(32)
Writes = dict[bytes, bytes | None]


@dataclass(frozen=True)
class Head:
    """Where the log stands: its size, the state digest after it, the last entry's time, the
    genesis leaf hash (empty before entry 0) and the sequencer position applied (empty with
    the local sequencer, whose order is not kept anywhere else)."""

    size: int = 0
    digest: bytes = EMPTY_DIGEST
    time_ms: int = 0
    genesis: bytes = b""
    position: bytes = b""

    def meta_writes(self) -> Writes:
        """The state's bookkeeping records for this head (not part of the digest)."""
        writes: Writes = {APPLIED_KEY: n8(self.size), DIGEST_KEY: self.digest, GENESIS_KEY: self.genesis}
        if self.position:
            writes[POSITION_KEY] = self.position
        return writes


@dataclass(frozen=True)
class Batch:
    before: Head
    after: Head
    raws: list[bytes]  # the new entries' bytes, sequence numbers before.size..after.size-1
    leaves: list[bytes]  # their RFC 9162 leaf hashes
    writes: Writes  # the state machine's writes for them, merged in order
    outcomes: list[Committed | LedgerError]  # one per item given, in order

    def state_writes(self) -> Writes:
        """Everything the state store must write for this batch, bookkeeping included."""
        return {**self.writes, **self.after.meta_writes()}


class RejectedEntry(IntegrityError):
    """A logged entry the state machine refuses, or that does not fit where it sits."""

    def __init__(self, seq: int, reason: str, cause: LedgerError | None = None) -> None:
        super().__init__(f"entry {seq}: {reason}")
        self.seq = seq
        self.reason = reason
        self.cause = cause


def apply_batch(view: Readable, head: Head, items: Sequence[Ordered | Entry]) -> Batch:
    """Apply ordered proposals (new) or decoded log entries (replayed) after `head`.

    Raises RejectedEntry for a logged entry that does not apply; never for a proposal.
    """
    overlay = Overlay(view)
    seq, digest, time_ms, genesis, position = head.size, head.digest, head.time_ms, head.genesis, head.position
    window_ms: int | None = None
    raws: list[bytes] = []
    leaves: list[bytes] = []
    outcomes: list[Committed | LedgerError] = []
    for item in items:
        if isinstance(item, Entry):
            entry = _logged(item, seq, time_ms)
        else:
            position = item.position or position
            recorded = machine.recorded_outcome(overlay, item.proposal.fingerprint)
            if recorded is not None:
                earlier, outcome, leaf_hex = recorded
                outcomes.append(Committed(outcome.status, outcome.body, Receipt(earlier, leaf_hex), resent=True))
                continue
            if window_ms is None:
                window_ms = int(machine.config(overlay)["signature_window"]) * 1000
            if item.proposed_ms < time_ms - window_ms:
                outcomes.append(_behind(item.proposed_ms, time_ms, window_ms))
                continue
            proposal = item.proposal
            entry_time = max(time_ms, item.proposed_ms)
            raw = encode(Entry(seq=seq, time_ms=entry_time, key_id=proposal.key_id, request=proposal.request))
            entry = Entry(seq, entry_time, proposal.key_id, proposal.request, raw=raw)
        leaf = leaf_hash(entry.raw)
        try:
            writes, outcome = machine.apply(overlay, entry, leaf)
        except LedgerError as e:
            if isinstance(item, Entry):
                raise RejectedEntry(seq, f"rejected on replay: {e.message}", e) from e
            outcomes.append(e)
            continue
        except Exception as e:  # a bug: refuse this proposal alone, keep the batch going
            if isinstance(item, Entry):
                raise
            log.exception("state machine failed on a transaction")
            outcomes.append(InternalError(f"the state machine failed: {e!r}"))
            continue
        overlay.pending.update(writes)
        digest = machine.write_set_digest(digest, seq, writes)
        if seq == 0:
            genesis = leaf
        raws.append(entry.raw)
        leaves.append(leaf)
        outcomes.append(Committed(outcome.status, outcome.body, Receipt(seq, leaf.hex())))
        seq, time_ms = seq + 1, entry.time_ms
    after = Head(seq, digest, time_ms, genesis, position)
    return Batch(head, after, raws, leaves, overlay.pending, outcomes)


def _behind(proposed_ms: int, time_ms: int, window_ms: int) -> AuthError:
    return AuthError(
        f"the node that took this request read its clock at {proposed_ms} ms, more than the signature window "
        f"({window_ms // 1000} s) behind the ledger's time ({time_ms} ms): nothing was written; sign the request "
        "again (and check that node's clock)",
        reason="clock",
    )


def _logged(entry: Entry, seq: int, time_ms: int) -> Entry:
    if entry.seq != seq:
        raise RejectedEntry(seq, f"carries sequence number {entry.seq}")
    if entry.time_ms < time_ms:
        raise RejectedEntry(seq, "time goes backwards")
    return entry

"""Catching up from a peer: entries etcd no longer holds, taken from another node and verified.

A node that finds etcd's history compacted past its position (:class:`ledger.sequencer.CatchUp`)
picks a goal among the nodes' records (:mod:`ledger.applied`): a head signed by a genesis node,
at an etcd position at or past the compaction, larger than its own log. It then takes the
entries from any peer (the peer need not be trusted: everything is checked) in chunks, and for
each chunk, before anything is written:

- each entry's RFC 9421 signature against the key in force at that entry, and the state
  machine's verdict, through the same pure :func:`ledger.batch.apply_batch` as the live order;
- the Merkle root of the log with the chunk appended: for the last chunk, equal to the goal's
  signed root, and the replayed state digest equal to its signed digest; for earlier ones,
  RFC 9162 consistency with the goal's root (a proof from the peer).

The last chunk's head takes the goal's etcd position, so the node goes on watching exactly
where the goal node was: it ends with the same log, root and digest, and applies what follows
as every node does.
"""

from collections.abc import Mapping, Sequence
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import applied, machine
from ledger.batch import Batch, Head, apply_batch
from ledger.documents import Overlay, Readable
from ledger.entry import decode, leaf_hash
from ledger.errors import IntegrityError, LedgerError
from ledger.proposal import Committed, Receipt

#: Entries taken and verified per chunk (one state and log write each).
CHUNK = 1000


class Peers(Protocol):
    """Other nodes of the ledger, read over HTTP (orchestrator/peers.py)."""

    def entries(self, start: int, end: int) -> list[bytes]:
        """Entry bytes from `start` on (at least one, at most end - start), from a node that has
        them; raises StorageError when none answers."""
        ...

    def consistency(self, first: int, second: int) -> list[bytes]:
        """An RFC 9162 consistency proof between two tree sizes; raises StorageError."""
        ...


def goal(
    records: Mapping[str, bytes], origin: str, node_keys: Mapping[str, Ed25519PublicKey], since: bytes, size: int
) -> applied.Applied | None:
    """The head to catch up to: of the records that verify, at a position at or past `since` and
    at least `size` entries, the largest (None: no node reported one)."""
    best: applied.Applied | None = None
    for raw in records.values():
        try:
            record = applied.decode(raw, origin, node_keys)
        except LedgerError:
            continue
        if record.position < since or record.size < size:
            continue
        if best is None or (record.size, record.position) > (best.size, best.position):
            best = record
    return best


def apply_entries(view: Readable, head: Head, raws: Sequence[bytes]) -> Batch:
    """The batch of logged entries taken from a peer, each signature checked with the key in force.

    Raises IntegrityError (VerificationError) naming the first entry that does not check out."""
    from ledger.verify import VerificationError, check_signature

    overlay = Overlay(view)
    before, raws_out, leaves = head, [], []
    outcomes: list[Committed | LedgerError] = []
    for raw in raws:
        seq = head.size
        try:
            entry = decode(raw)
        except IntegrityError as e:
            raise VerificationError(seq, e.message) from e
        record = machine.member(overlay, entry.key_id) if entry.request is not None else None
        check_signature(seq, entry, None if record is None else str(record["public_key"]))
        batch = apply_batch(overlay, head, [entry])  # raises RejectedEntry
        overlay.pending.update(batch.writes)
        head = batch.after
        leaf = leaf_hash(raw)
        raws_out.append(raw)
        leaves.append(leaf)
        outcomes.append(Committed(201, {}, Receipt(seq, leaf.hex())))
    return Batch(before, head, raws_out, leaves, overlay.pending, outcomes)


def describe(record: applied.Applied) -> str:
    return f"node {record.node}'s head of {record.size} entries (etcd revision {record.revision})"


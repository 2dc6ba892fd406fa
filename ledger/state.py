"""Materialized state: applying log entries to the state store, live or in replay.

State meta keys (not part of the digest): ``s/applied`` -> n8, entries applied;
``s/digest`` -> running state digest; ``s/genesis`` -> leaf hash of entry 0,
which ties a state directory to its ledger.
"""

from collections.abc import Callable

from ledger import machine
from ledger.documents import Overlay, n8
from ledger.entry import decode, leaf_hash
from ledger.errors import IntegrityError, LedgerError
from ledger.log import Log
from ledger.store import Store

APPLIED_KEY = b"s/applied"
DIGEST_KEY = b"s/digest"
GENESIS_KEY = b"s/genesis"
EMPTY_DIGEST = bytes(32)

Progress = Callable[[int, int], None]


class StateMeta:
    def __init__(self, applied: int, digest: bytes, genesis: bytes | None) -> None:
        self.applied = applied
        self.digest = digest
        self.genesis = genesis


def read_meta(store: Store) -> StateMeta:
    applied = store.get(APPLIED_KEY)
    return StateMeta(
        int.from_bytes(applied, "big") if applied is not None else 0,
        store.get(DIGEST_KEY) or EMPTY_DIGEST,
        store.get(GENESIS_KEY),
    )


def meta_writes(applied: int, digest: bytes, genesis: bytes) -> dict[bytes, bytes | None]:
    return {APPLIED_KEY: n8(applied), DIGEST_KEY: digest, GENESIS_KEY: genesis}


def apply_logged(overlay: Overlay, seq: int, raw: bytes, digest: bytes) -> bytes:
    """Apply an entry that is already in the log; returns the new digest.

    A logged entry must apply cleanly: a rejection means the log and the state
    machine disagree, which is an IntegrityError naming the entry.
    """
    entry = decode(raw)
    if entry.seq != seq:
        raise IntegrityError(f"entry {seq}: carries sequence number {entry.seq}")
    try:
        writes, _ = machine.apply(overlay, entry)
    except LedgerError as e:
        raise IntegrityError(f"entry {seq}: rejected on replay: {e.message}") from e
    overlay.pending.update(writes)
    return machine.write_set_digest(digest, seq, writes)


def catch_up(
    log: Log, store: Store, *, to: int | None = None, batch: int = 2000, progress: Progress | None = None
) -> StateMeta:
    """Apply every logged entry the state has not seen yet, in large batches.

    Raises IntegrityError if the state directory belongs to another ledger or
    is ahead of the log.
    """
    size = log.size()
    end = size if to is None else min(to, size)
    meta = read_meta(store)
    genesis = leaf_hash(log.raw(0)) if size else None
    if meta.genesis is not None and meta.genesis != genesis:
        raise IntegrityError("state directory belongs to another ledger (genesis differs); delete it and replay")
    if meta.applied > size:
        raise IntegrityError(f"state has {meta.applied} entries applied but the log holds only {size}")
    if meta.applied >= end or genesis is None:
        return meta
    digest, applied = meta.digest, meta.applied
    overlay = Overlay(store)
    for seq, raw in log.raws(applied, end):
        digest = apply_logged(overlay, seq, raw, digest)
        applied = seq + 1
        if len(overlay.pending) >= batch * 8 or applied == end:
            _flush(store, overlay, meta_writes(applied, digest, genesis))
            if progress is not None:
                progress(applied, end)
    return StateMeta(applied, digest, genesis)


def _flush(store: Store, overlay: Overlay, meta: dict[bytes, bytes | None]) -> None:
    overlay.pending.update(meta)
    store.write(overlay.pending, sync=False)
    overlay.pending = {}

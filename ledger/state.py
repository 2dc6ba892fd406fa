"""Materialized state: catching the state store up with the log, live or in replay.

The state's bookkeeping keys (``s/applied``, ``s/digest``, ``s/genesis``, ``s/position``; see
:mod:`ledger.layout`) are not part of the digest; ``s/genesis`` ties a state directory
to its ledger.

The sequencer position (how far the order was applied) is written with every state batch and
with every log batch that appends. State level with the log holds the latest one (a group that
only refused advances it in state alone); state behind the log lost at least the last log
batch's state write, so the log's position, written with that batch, is the later one.
"""

from collections.abc import Callable
from dataclasses import dataclass

from ledger.batch import EMPTY_DIGEST, Head, apply_batch
from ledger.entry import decode, leaf_hash
from ledger.errors import IntegrityError
from ledger.layout import APPLIED_KEY, DIGEST_KEY, GENESIS_KEY, LAYOUT_KEY, POSITION_KEY, STATE_LAYOUT, from_n8, n8
from ledger.log import Log
from ledger.store import Store

Progress = Callable[[int, int], None]
CHUNK = 1000  # entries applied per state write during catch-up


@dataclass(frozen=True)
class StateMeta:
    applied: int
    digest: bytes
    genesis: bytes | None
    position: bytes = b""


def read_meta(store: Store) -> StateMeta:
    applied = store.get(APPLIED_KEY)
    return StateMeta(
        from_n8(applied) if applied is not None else 0,
        store.get(DIGEST_KEY) or EMPTY_DIGEST,
        store.get(GENESIS_KEY),
        store.get(POSITION_KEY) or b"",
    )


def current_layout(store: Store) -> bool:
    """Whether the state directory was built in this version's layout (an empty one is)."""
    layout = store.get(LAYOUT_KEY)
    return (from_n8(layout) if layout is not None else 1) == STATE_LAYOUT or store.get(APPLIED_KEY) is None


def catch_up(log: Log, store: Store, *, to: int | None = None, progress: Progress | None = None) -> Head:
    """Apply every logged entry the state has not seen yet, in chunks; the head reached.

    A state directory built in an older layout (:data:`ledger.layout.STATE_LAYOUT`) is emptied
    first, in one batch, and rebuilt from the log: state is derived, and an interrupted rebuild
    starts again from an empty state.

    Raises IntegrityError if the state directory belongs to another ledger or is ahead of
    the log, or if a logged entry does not apply.
    """
    size = log.size()
    end = size if to is None else min(to, size)
    meta = read_meta(store)
    if meta.applied and not current_layout(store):
        store.write({key: None for key, _ in store.scan(b"")}, sync=True)
        meta = read_meta(store)
    if not meta.applied:
        store.write({LAYOUT_KEY: n8(STATE_LAYOUT)}, sync=False)
    genesis = leaf_hash(log.raw(0)) if size else None
    if meta.genesis is not None and meta.genesis != genesis:
        raise IntegrityError("state directory belongs to another ledger (genesis differs); delete it and replay")
    if meta.applied > size:
        raise IntegrityError(f"state has {meta.applied} entries applied but the log holds only {size}")
    last_time = decode(log.raw(meta.applied - 1)).time_ms if meta.applied else 0
    position = meta.position if meta.applied == size else log.position()
    head = Head(meta.applied, meta.digest, last_time, meta.genesis or b"", position)
    chunk = []
    for seq, raw in log.raws(head.size, end):
        chunk.append(decode(raw))
        if len(chunk) == CHUNK or seq == end - 1:
            batch = apply_batch(store, head, chunk)
            store.write(batch.state_writes(), sync=False)
            head, chunk = batch.after, []
            if progress is not None:
                progress(head.size, end)
    return head

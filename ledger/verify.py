"""Checking a whole ledger, entry by entry, as an auditor does (`verify` and `audit`).

:func:`verify` reads entries from a :class:`Source` (a local data dir or a
running node) and checks, in order: canonical encoding, sequence numbers and
times, each request's RFC 9421 signature and content digest against the
membership in force at that entry, then applies the entry with the state
machine (which checks roles, time windows, nonces and the domain rules). It
rebuilds the Merkle tree from the leaves and compares it with the stored nodes
where the source has them, checks the checkpoint's signature, root and state
digest, optionally proves consistency with an earlier trusted checkpoint, and
compares the source's materialized state with the replay where it has one.
The first failure raises :class:`VerificationError` naming the entry or part.
"""

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import checkpoint, ed25519, httpsig, keys, machine, merkle
from ledger.entry import Entry, decode
from ledger.errors import IntegrityError, LedgerError
from ledger.state import APPLIED_KEY, DIGEST_KEY, EMPTY_DIGEST, GENESIS_KEY, Progress
from ledger.store import Store


class VerificationError(IntegrityError):
    """The ledger does not check out; `where` is an entry sequence number or a part name."""

    default_title = "Verification failed"

    def __init__(self, where: int | str, reason: str) -> None:
        self.where = where
        self.reason = reason
        label = f"entry {where}" if isinstance(where, int) else where
        super().__init__(f"{label}: {reason}")


class Source(Protocol):
    #: A running node may grow while it is read; a stopped one must end at its checkpoint.
    live: bool

    def checkpoint(self) -> str: ...

    def stored_leaf(self, seq: int) -> bytes | None:
        """The stored Merkle leaf hash of an entry, or None when the source cannot say."""
        ...

    def raws(self, start: int, end: int) -> Iterator[tuple[int, bytes]]: ...

    def size(self) -> int: ...

    def stored_nodes(self) -> Iterator[tuple[bytes, bytes]] | None:
        """Every stored Merkle node (key, hash), or None when the source cannot list them."""
        ...

    def state(self) -> Store | None:
        """The source's materialized state, or None."""
        ...

    def consistency(self, first: int, second: int) -> list[bytes]: ...


@dataclass(frozen=True)
class Report:
    entries: int
    signers: int
    tree_size: int
    root: bytes
    state_digest: bytes
    seconds: float
    checkpoint: str
    state_note: str = ""

    def summary(self) -> str:
        import base64

        text = (
            f"ok: {self.entries} entries, {self.signers} signers, tree size {self.tree_size}, "
            f"root {base64.b64encode(self.root).decode()}, state digest {self.state_digest.hex()}, "
            f"{self.seconds:.2f} s"
        )
        return text + (f" ({self.state_note})" if self.state_note else "")


class _Replay:
    """A state view for replay: a plain dict (apply only needs point reads)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


def _key_for(view: _Replay) -> Callable[[str], ed25519.VerifyKey | None]:
    def resolve(key_id: str) -> ed25519.VerifyKey | None:
        record = machine.member(view, key_id)
        if record is None:
            return None
        return ed25519.verify_key(record["public_key"])

    return resolve


def verify(source: Source, *, trusted: str | None = None, progress: Progress | None = None) -> Report:
    """Verify everything the source holds; raise VerificationError at the first failure."""
    started = time.monotonic()
    note = source.checkpoint()
    try:
        claimed = checkpoint.parse_body(note.partition("\n\n")[0] + "\n")
    except IntegrityError as e:
        raise VerificationError("checkpoint", e.message) from e
    size = claimed.size
    log_size = source.size()
    if log_size > size and not source.live:
        raise VerificationError(
            "checkpoint", f"covers {size} entries but the log holds {log_size}: entries beyond the last checkpoint"
        )
    if log_size < size:
        raise VerificationError(
            log_size, f"log is truncated: the checkpoint covers {size} entries, the log holds {log_size}"
        )
    view = _Replay()
    resolve = _key_for(view)
    digest = EMPTY_DIGEST
    leaves: list[bytes] = []
    signers: set[str] = set()
    last_time = 0
    origin, node_public = "", None
    mismatch: int | None = None  # first entry whose bytes differ from its stored leaf hash
    checks = _SignatureChecks()
    try:
        for seq, raw in _guarded(source.raws(0, size)):
            leaf = merkle.leaf_hash(raw)
            stored_leaf = source.stored_leaf(seq)
            if mismatch is None and stored_leaf is not None and stored_leaf != leaf:
                mismatch = seq
            try:
                entry = decode(raw)
            except IntegrityError as e:
                raise VerificationError(seq, e.message) from e
            try:
                last_time = _check_entry(entry, seq, last_time)
                if entry.request is not None:
                    checks.submit(seq, entry, resolve(entry.key_id))
                writes, _ = machine.apply(view, entry)
                checks.collect(signers)
            except LedgerError as e:
                checks.collect(signers, before=seq)  # an earlier bad signature is the first failure
                if mismatch is not None and mismatch < seq:
                    raise _altered(mismatch) from e  # the earlier change is the cause
                if isinstance(e, VerificationError):
                    raise
                raise VerificationError(seq, f"rejected by the state machine: {e.message}") from e
            if seq == 0:
                assert entry.genesis is not None
                origin = entry.genesis["origin"]
                node_public = keys.public_from_b64(entry.genesis["node_key"])
            view.data.update(writes)
            digest = machine.write_set_digest(digest, seq, writes)
            leaves.append(leaf)
            if progress is not None and (seq % 1000 == 0 or seq == size - 1):
                progress(seq + 1, size)
        checks.collect(signers, before=size)
    except VerificationError as e:
        if isinstance(e.where, int) and mismatch is not None and mismatch < e.where:
            raise _altered(mismatch) from e
        raise
    finally:
        checks.close()
    if len(leaves) != size:
        raise VerificationError(len(leaves), f"entry {len(leaves)} is missing from the log")
    assert node_public is not None
    nodes = merkle.integrate(0, leaves, lambda key: None)
    tree = merkle.Tree(nodes.get)
    root = tree.root(size)
    if mismatch is not None and _signed_root(note, origin, node_public) != root:
        raise _altered(mismatch)  # else the entries are as signed and the stored tree node is wrong
    stored = source.stored_nodes()
    if stored is not None:
        _check_nodes(stored, nodes, log_size)
    _check_checkpoint(note, origin, node_public, root, digest, size)
    if trusted is not None:
        _check_trusted(source, trusted, origin, node_public, tree, size, root)
    state_note = ""
    state = source.state()
    if state is not None:
        state_note = _check_state(state, view, digest, size, leaves[0])
    return Report(size, len(signers), size, root, digest, time.monotonic() - started, note, state_note)


class _SignatureChecks:
    """Signature checks on worker threads, consumed in entry order.

    libsodium releases the GIL, so two threads check signatures on the second
    core while the main thread applies entries. Each check uses the key in force
    when its entry was reached (resolved by the main thread, in order); a key
    id's public key never changes once registered, only its roles and status,
    which the state machine checks. The first failure, in entry order, wins.
    """

    WINDOW = 1024  # checks in flight at most

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify-signature")
        self.pending: deque[tuple[int, Future[str]]] = deque()

    def submit(self, seq: int, entry: Entry, key: ed25519.VerifyKey | None) -> None:
        self.pending.append((seq, self.pool.submit(_check_signature, seq, entry, key)))

    def collect(self, signers: set[str], before: int | None = None) -> None:
        """Consume finished checks (all those below `before`, waiting for them); raise the first failure."""
        while self.pending:
            seq, future = self.pending[0]
            must_wait = (before is not None and seq < before) or len(self.pending) > self.WINDOW
            if not must_wait and not future.done():
                return
            if before is not None and seq >= before and not future.done():
                return
            self.pending.popleft()
            signers.add(future.result())  # raises the entry's VerificationError

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _check_signature(seq: int, entry: Entry, key: ed25519.VerifyKey | None) -> str:
    """The entry's RFC 9421 signature against the key in force; returns the key id."""
    assert entry.request is not None
    try:
        signer = httpsig.verify_request(entry.request, lambda key_id: key if key_id == entry.key_id else None)
    except LedgerError as e:
        raise VerificationError(seq, f"signature: {e.message}") from e
    if signer.key_id != entry.key_id:
        raise VerificationError(seq, "signed by a different key than the entry names")
    return entry.key_id


def _check_entry(entry: Entry, seq: int, last_time: int) -> int:
    """Sequence, time and kind of one entry; returns its time."""
    if entry.seq != seq:
        raise VerificationError(seq, f"carries sequence number {entry.seq}")
    if entry.time_ms < last_time:
        raise VerificationError(seq, "time goes backwards")
    if seq == 0:
        if entry.genesis is None:
            raise VerificationError(0, "entry 0 is not a genesis entry")
    elif entry.request is None:
        raise VerificationError(seq, "only entry 0 may be a genesis entry")
    return entry.time_ms


def _altered(seq: int) -> VerificationError:
    return VerificationError(seq, "entry bytes differ from those appended (stored leaf hash and checkpoint disagree)")


def _signed_root(note: str, origin: str, public: Ed25519PublicKey | None) -> bytes | None:
    if public is None:
        return None
    try:
        return checkpoint.open_note(note, origin, public).root
    except IntegrityError:
        return None


def _guarded(raws: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
    """The source's entries, with a gap or read failure reported at the entry it hits."""
    seq = 0
    try:
        for item in raws:
            yield item
            seq = item[0] + 1
    except IntegrityError as e:
        raise VerificationError(seq, e.message) from e


def _check_checkpoint(note: str, origin: str, public: Ed25519PublicKey, root: bytes, digest: bytes, size: int) -> None:
    try:
        signed = checkpoint.open_note(note, origin, public)
    except IntegrityError as e:
        raise VerificationError("checkpoint", e.message) from e
    if signed.root != root:
        raise VerificationError("checkpoint", f"root does not match the entries (tree size {size})")
    if signed.state_digest != digest:
        raise VerificationError("checkpoint", "state digest does not match the replay of the entries")


def _check_nodes(stored: Iterator[tuple[bytes, bytes]], computed: dict[bytes, bytes | None], log_size: int) -> None:
    seen = 0
    for key, value in stored:
        level, index = key[1], int.from_bytes(key[2:], "big")
        if (index + 1) << level > log_size:
            raise VerificationError("tree", f"stored node {level}/{index} lies beyond the log")
        if computed.get(key) != value:
            first_leaf = index << level
            raise VerificationError(
                "tree", f"stored node {level}/{index} (entries {first_leaf}..) does not match the entries"
            )
        seen += 1
    if seen != len(computed):
        raise VerificationError("tree", f"{len(computed) - seen} Merkle nodes are missing from the log")


def _check_trusted(
    source: Source, trusted: str, origin: str, public: Ed25519PublicKey, tree: merkle.Tree, size: int, root: bytes
) -> None:
    try:
        old = checkpoint.open_note(trusted, origin, public)
    except IntegrityError as e:
        raise VerificationError("trusted checkpoint", e.message) from e
    if old.size > size:
        raise VerificationError("trusted checkpoint", f"covers {old.size} entries, more than the ledger's {size}")
    if old.size and tree.root(old.size) != old.root:
        raise VerificationError(
            "trusted checkpoint", f"the ledger's first {old.size} entries do not match it: history was rewritten"
        )
    if 0 < old.size:
        try:
            merkle.verify_consistency(old.size, size, old.root, root, source.consistency(old.size, size))
        except IntegrityError as e:
            raise VerificationError("trusted checkpoint", f"consistency proof: {e.message}") from e


def _check_state(state: Store, replay: _Replay, digest: bytes, size: int, genesis_leaf: bytes) -> str:
    if state.get(GENESIS_KEY) not in (None, genesis_leaf):
        raise VerificationError("state", "the state directory belongs to another ledger")
    applied_raw = state.get(APPLIED_KEY)
    applied = int.from_bytes(applied_raw, "big") if applied_raw is not None else 0
    if applied > size:
        raise VerificationError("state", f"the state has {applied} entries applied, more than the log's {size}")
    if applied < size:
        return f"state lags the log by {size - applied} entries; it catches up at start-up or with replay"
    if state.get(DIGEST_KEY) != digest:
        raise VerificationError("state", "the state digest differs from the replay")
    expected = {k: v for k, v in replay.data.items() if v is not None}
    count = 0
    for key, value in state.scan(b""):
        if key.startswith(b"s/"):
            continue
        if expected.get(key) != value:
            raise VerificationError("state", f"key {key[:60]!r} differs from the replay")
        count += 1
    if count != len(expected):
        raise VerificationError("state", f"{len(expected) - count} keys of the replay are missing from the state")
    return ""

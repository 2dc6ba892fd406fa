"""Checking a whole ledger, entry by entry, as an auditor does (`verify` and `audit`).

:func:`verify` reads entries from a :class:`Source` (a local data dir or a
running node) and checks, in order: canonical encoding, sequence numbers and
times, each request's RFC 9421 signature and content digest against the
membership in force at that entry, then applies the entry with the state
machine (which checks roles, time windows, nonces and the domain rules). It
rebuilds the Merkle tree from the leaves and compares it with the stored tiles
(or a data dir's old-layout nodes) where the source has them, checks the checkpoint's signature, root and state
digest, optionally proves consistency with an earlier trusted checkpoint, and
compares the source's materialized state with the replay where it has one.
The first failure raises :class:`VerificationError` naming the entry or part.
"""

import multiprocessing
import os
import signal
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import checkpoint, cosignature, ed25519, httpsig, keys, machine, membership, merkle
from ledger.batch import Head, RejectedEntry, apply_batch
from ledger.entry import Entry, decode
from ledger.errors import IntegrityError, LedgerError, StorageError
from ledger.layout import (
    APPLIED_KEY,
    DIGEST_KEY,
    EDGE_KEY,
    GENESIS_KEY,
    LEGACY_TREE_PREFIX,
    META_PREFIX,
    TILE_PREFIX,
    VERSION_PREFIX,
    from_n8,
)
from ledger.state import Progress, current_layout
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

    def kept_checkpoint(self) -> str | None:
        """A checkpoint the node signed and kept outside its log (a data dir's checkpoint file),
        checked like a trusted one; None when the source has none."""
        ...

    def witnessed_checkpoint(self) -> str | None:
        """The newest checkpoint a quorum of witnesses cosigned, when the source keeps it apart
        from :meth:`checkpoint` (a data dir's ``witnessed`` file); None otherwise."""
        ...


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
    #: Who cosigned the checkpoint accepted with --witness/--quorum, and its size ("" without).
    witnessed: str = ""

    def summary(self) -> str:
        import base64

        text = (
            f"ok: {self.entries} entries, {self.signers} signers, tree size {self.tree_size}, "
            f"root {base64.b64encode(self.root).decode()}, state digest {self.state_digest.hex()}, "
            f"{self.seconds:.2f} s"
        )
        text += f"; {self.witnessed}" if self.witnessed else ""
        return text + (f" ({self.state_note})" if self.state_note else "")


class _Replay:
    """A state view for replay: a plain dict (apply only needs point reads)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


def _public_key(view: _Replay, key_id: str) -> str | None:
    """The base64 public key registered for key_id in the replayed state, if any."""
    record = machine.member(view, key_id)
    return None if record is None else str(record["public_key"])


def verify(
    source: Source,
    *,
    trusted: str | None = None,
    progress: Progress | None = None,
    processes: int | None = None,
    witnesses: Sequence[cosignature.WitnessKey] = (),
    quorum: int = 0,
    all_nodes: bool = False,
) -> Report:
    """Verify everything the source holds; raise VerificationError at the first failure.

    In four steps: the entries (replayed, signatures checked), the tree, the checkpoint (and
    any trusted, kept or witnessed one), the state. `processes` sets the signature-checking
    worker processes (0: two threads instead); by default ledgers of 4096 entries or more get
    one per CPU but one. With a `quorum`, the witnessed checkpoint (the source's, else its
    checkpoint) must carry that many valid cosignatures by distinct `witnesses`, and be a tree
    of the ledger verified. With `all_nodes`, the checkpoint must carry a valid signature by
    every node key of the genesis (a several-node ledger's nodes all signed that tree).
    """
    started = time.monotonic()
    note, size, log_size = _claimed(source)
    replayed = _check_entries(source, size, progress, processes)
    tree, root = _check_tree(source, replayed, note, log_size)
    _check_checkpoint(note, replayed.origin, replayed.node_public, root, replayed.head.digest, size)
    if all_nodes:
        try:
            checkpoint.open_note_by_all(note, replayed.origin, replayed.node_public)
        except IntegrityError as e:
            raise VerificationError("checkpoint", e.message) from e
    if trusted is not None:
        _check_trusted(source, trusted, replayed.origin, replayed.node_public, tree, size, root)
    kept = source.kept_checkpoint()
    if kept is not None:
        _check_trusted(source, kept, replayed.origin, replayed.node_public, tree, size, root, part="checkpoint file")
    witnessed = ""
    if quorum:
        witnessed = _check_witnessed(
            source, note, witnesses, quorum, replayed.origin, replayed.node_public, tree, size, root
        )
    state_note = _check_source_state(source, replayed)
    digest = replayed.head.digest
    return Report(
        size, len(replayed.signers), size, root, digest, time.monotonic() - started, note, state_note, witnessed
    )


@dataclass
class _Replayed:
    """What replaying the entries established: the state, the head, the leaves, who signed."""

    view: "_Replay"
    head: Head
    leaves: list[bytes]
    signers: set[str]
    origin: str
    node_public: list[Ed25519PublicKey]  # the node keys: a checkpoint signed by any of them counts


def _claimed(source: Source) -> tuple[str, int, int]:
    """The source's checkpoint note, the size it claims, and the log's size; they must fit."""
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
    return note, size, log_size


def _check_entries(source: Source, size: int, progress: Progress | None, processes: int | None) -> _Replayed:
    """Step 1: every entry in order: encoding, sequence and time, signature (beside, in workers),
    then the state machine's verdict through apply_batch, as the live node applied it."""
    view = _Replay()
    head = Head()
    leaves: list[bytes] = []
    signers: set[str] = set()
    last_time = 0
    origin, node_public = "", None
    checks = _SignatureChecks(size, processes)
    try:
        for seq, raw in _guarded(source.raws(0, size)):
            leaf = merkle.leaf_hash(raw)
            try:
                entry = decode(raw)
            except IntegrityError as e:
                raise VerificationError(seq, e.message) from e
            try:
                last_time = _check_entry(entry, seq, last_time)
                if entry.request is not None:
                    checks.submit(seq, raw, _public_key(view, entry.key_id))
                batch = apply_batch(view, head, [entry])
                checks.collect(signers)
            except LedgerError as e:
                checks.collect(signers, before=seq)  # an earlier bad signature is the first failure
                mismatch = _first_mismatch(source, leaves)
                if mismatch is not None:
                    raise _altered(mismatch) from e  # the earlier change is the cause
                if isinstance(e, VerificationError):
                    raise
                reason = e.cause.message if isinstance(e, RejectedEntry) and e.cause is not None else e.message
                raise VerificationError(seq, f"rejected by the state machine: {reason}") from e
            if seq == 0:
                origin, node_public = _genesis_identity(entry)
            view.data.update(batch.writes)
            head = batch.after
            leaves.append(leaf)
            if progress is not None and (seq % 1000 == 0 or seq == size - 1):
                progress(seq + 1, size)
        checks.collect(signers, before=size)
    except VerificationError as e:
        mismatch = _first_mismatch(source, leaves[: e.where]) if isinstance(e.where, int) else None
        if mismatch is not None:
            raise _altered(mismatch) from e
        raise
    finally:
        checks.close()
    if len(leaves) != size or node_public is None:
        raise VerificationError(len(leaves), f"entry {len(leaves)} is missing from the log")
    return _Replayed(view, head, leaves, signers, origin, node_public)


def _check_tree(source: Source, replayed: _Replayed, note: str, log_size: int) -> tuple[merkle.Tree, bytes]:
    """Step 2: the Merkle tree rebuilt from the leaves, against every node the source stored."""
    leaves = replayed.leaves
    nodes = merkle.integrate(0, leaves, lambda key: None)
    tree = merkle.Tree(nodes.get)
    root = tree.root(len(leaves))
    if _signed_root(note, replayed.origin, replayed.node_public) != root:
        mismatch = _first_mismatch(source, leaves)
        if mismatch is not None:
            raise _altered(mismatch)  # else the entries are as signed and the stored tree node is wrong
    stored = source.stored_nodes()
    if stored is not None:
        _check_nodes(stored, nodes, log_size)
    return tree, root


def _check_source_state(source: Source, replayed: _Replayed) -> str:
    """Step 4: the source's materialized state against the replay (a note when it lags)."""
    state = source.state()
    if state is None:
        return ""
    try:
        return _check_state(state, replayed.view, replayed.head.digest, replayed.head.size, replayed.leaves[0])
    except VerificationError:
        raise
    except (IntegrityError, StorageError) as e:  # the state LevelDB is damaged or unreadable
        raise VerificationError("state", e.message) from e


class _SignatureChecks:
    """Signature checks off the main thread, in batches, consumed in entry order.

    The main thread resolves each entry's key (the membership in force when the entry is
    reached, in order) and queues (seq, entry bytes, public key); a full batch goes to a
    worker, which decodes the entries and checks their signatures. A key id's public key never
    changes once registered, only its roles and status, which the state machine checks.

    Big ledgers use worker processes: a check is mostly Python (parsing, the signature base,
    the digest) around libsodium, and in another process none of it competes with the main
    thread's apply for the GIL. Small ones use two threads, which start instantly. The first
    failure in entry order wins, whichever worker finds it.
    """

    BATCH = 256  # entries per task
    WINDOW = 16  # tasks in flight at most
    PROCESS_THRESHOLD = 4096  # entries from which worker processes pay for their start-up

    def __init__(self, entries: int, processes: int | None = None) -> None:
        if processes is None:
            # One core stays with the main thread's apply (measured: more workers only oversubscribe).
            processes = max(1, (os.cpu_count() or 1) - 1) if entries >= self.PROCESS_THRESHOLD else 0
        self.pool: Executor
        if processes > 0:
            # fork: the workers run one pure function and touch nothing of the parent's (no LevelDB,
            # no logging), so its other threads do not matter; spawn and forkserver would run the
            # caller's __main__ again in every worker. Start them all now, before the replay grows.
            context = multiprocessing.get_context("fork")
            self.pool = ProcessPoolExecutor(max_workers=processes, mp_context=context, initializer=_worker_init)
            with warnings.catch_warnings():  # Python 3.12+ warns about any fork of a threaded process
                warnings.simplefilter("ignore", DeprecationWarning)
                self.pool.submit(int).result()
        else:
            self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify-signature")
        self.batch: list[tuple[int, bytes, str | None]] = []
        self.pending: deque[tuple[int, Future[list[tuple[int, str]]]]] = deque()  # (first seq, task)
        self.done: deque[tuple[int, str]] = deque()  # checked (seq, key id or failure), not yet consumed

    def submit(self, seq: int, raw: bytes, public_key: str | None) -> None:
        self.batch.append((seq, raw, public_key))
        if len(self.batch) >= self.BATCH:
            self._send()

    def _send(self) -> None:
        if self.batch:
            self.pending.append((self.batch[0][0], self.pool.submit(_check_batch, self.batch)))
            self.batch = []

    def collect(self, signers: set[str], before: int | None = None) -> None:
        """Consume finished checks; with `before`, wait for every check below it. Raises the
        first failure in entry order (among those below `before`, when given)."""
        if before is not None:
            self._send()
        while True:
            while self.done:
                seq, outcome = self.done[0]
                if before is not None and seq >= before:
                    return
                self.done.popleft()
                if outcome.startswith("!"):
                    raise VerificationError(seq, outcome[1:])
                signers.add(outcome)
            if not self.pending:
                return
            first, task = self.pending[0]
            must_wait = (before is not None and first < before) or len(self.pending) > self.WINDOW
            if not must_wait and not task.done():
                return
            self.pending.popleft()
            self.done.extend(task.result())

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _worker_init() -> None:
    """A Ctrl-C reaches the whole process group: the parent handles it and stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _check_batch(batch: list[tuple[int, bytes, str | None]]) -> list[tuple[int, str]]:
    """Check a batch of entries' signatures: (seq, key id), or (seq, "!" + reason) on failure."""
    results = []
    for seq, raw, public_key in batch:
        try:
            results.append((seq, check_signature(seq, decode(raw), public_key)))
        except VerificationError as e:
            results.append((seq, "!" + e.reason))
        except IntegrityError as e:  # undecodable: the main thread reports it at this entry too
            results.append((seq, "!" + e.message))
    return results


def _genesis_identity(entry: Entry) -> tuple[str, list[Ed25519PublicKey]]:
    """The ledger's origin and node keys (a checkpoint signed by any of them counts), from its genesis."""
    try:
        genesis = entry.genesis or {}
        return str(genesis["origin"]), [keys.public_from_b64(k) for k in membership.node_keys(genesis).values()]
    except (KeyError, TypeError, ValueError) as e:
        raise VerificationError(0, f"malformed genesis: {e!r}") from e


def check_signature(seq: int, entry: Entry, public_key: str | None) -> str:
    """The entry's RFC 9421 signature against the key in force; returns the key id."""
    if entry.request is None:
        raise VerificationError(seq, "only entry 0 may be a genesis entry")
    key = None if public_key is None else ed25519.verify_key(public_key)
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


def _first_mismatch(source: Source, leaves: list[bytes]) -> int | None:
    """The first entry whose leaf hash differs from the one the source stored when it appended it.

    Asked only once something failed: a changed entry is then named as the cause, rather than
    whatever later check its change happened to trip.
    """
    for seq, leaf in enumerate(leaves):
        stored = source.stored_leaf(seq)
        if stored is not None and stored != leaf:
            return seq
    return None


def _altered(seq: int) -> VerificationError:
    return VerificationError(seq, "entry bytes differ from those appended (stored leaf hash and checkpoint disagree)")


def _signed_root(note: str, origin: str, public: list[Ed25519PublicKey] | None) -> bytes | None:
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


def _check_checkpoint(
    note: str, origin: str, public: list[Ed25519PublicKey], root: bytes, digest: bytes, size: int
) -> None:
    try:
        signed = checkpoint.open_note(note, origin, public)
    except IntegrityError as e:
        raise VerificationError("checkpoint", e.message) from e
    if signed.root != root:
        raise VerificationError("checkpoint", f"root does not match the entries (tree size {size})")
    if signed.state_digest != digest:
        raise VerificationError("checkpoint", "state digest does not match the replay of the entries")


def _check_nodes(stored: Iterator[tuple[bytes, bytes]], computed: dict[bytes, bytes | None], log_size: int) -> None:
    """The stored tree against the one rebuilt from the entries: every stored tile (or, in the old
    layout, every node) equal to the rebuilt one, and none missing."""
    tree = merkle.Tree(computed.get)
    seen, legacy = 0, 0
    for key, value in stored:
        if key[:1] == LEGACY_TREE_PREFIX:
            _check_legacy_node(key, value, tree, log_size)
            legacy += 1
            continue
        if key == EDGE_KEY:
            if computed.get(key) != value:
                raise VerificationError("tree", "the stored right edge of the tree does not match the entries")
            seen += 1
            continue
        if len(key) != 10 or key[:1] != TILE_PREFIX:
            raise VerificationError("tree", f"stored key {key[:20]!r} is not a Merkle tile key")
        _check_tile(key[1], int.from_bytes(key[2:], "big"), value, computed.get(key))
        seen += 1
    if legacy:
        expected = 2 * log_size - log_size.bit_count()  # perfect subtrees of a tree of log_size leaves
        if legacy != expected:
            raise VerificationError("tree", f"{expected - legacy} Merkle nodes are missing from the log")
    elif seen != len(computed):
        raise VerificationError("tree", f"{len(computed) - seen} Merkle tiles are missing from the log")


def _check_tile(level: int, index: int, value: bytes, expected: bytes | None) -> None:
    """One stored tile against the rebuilt one, naming the first node that differs."""
    name = f"tile {level}/{index}"
    try:
        rows = merkle.tile_rows(value)
    except IntegrityError as e:
        raise VerificationError("tree", f"stored {name}: {e.message}") from e
    want = merkle.tile_rows(expected)
    for row, (got, good) in enumerate(zip(rows, want, strict=True)):
        if got == good:
            continue
        at = next((i for i in range(0, min(len(got), len(good)), merkle.HASH) if got[i : i + 32] != good[i : i + 32]),
                  min(len(got), len(good)))
        node_level, node_index = 8 * level + row, (index << (merkle.HEIGHT - row)) + at // merkle.HASH
        node = f"stored node {node_level}/{node_index} (in {name}, entries {node_index << node_level}..)"
        if at >= len(good):
            raise VerificationError("tree", f"{node} lies beyond the log")
        if at >= len(got):
            raise VerificationError("tree", f"{node} is missing from the log")
        raise VerificationError("tree", f"{node} does not match the entries")


def _check_legacy_node(key: bytes, value: bytes, tree: merkle.Tree, log_size: int) -> None:
    if len(key) != 10:
        raise VerificationError("tree", f"stored key {key[:20]!r} is not a Merkle node key")
    level, index = key[1], int.from_bytes(key[2:], "big")
    if (index + 1) << level > log_size:
        raise VerificationError("tree", f"stored node {level}/{index} lies beyond the log")
    if tree.node(level, index) != value:
        raise VerificationError(
            "tree", f"stored node {level}/{index} (entries {index << level}..) does not match the entries"
        )


def _check_trusted(
    source: Source,
    trusted: str,
    origin: str,
    public: list[Ed25519PublicKey],
    tree: merkle.Tree,
    size: int,
    root: bytes,
    part: str = "trusted checkpoint",
) -> None:
    try:
        old = checkpoint.open_note(trusted, origin, public)
    except IntegrityError as e:
        raise VerificationError(part, e.message) from e
    if old.size > size:
        raise VerificationError(part, f"covers {old.size} entries, more than the ledger's {size}")
    if old.size and tree.root(old.size) != old.root:
        raise VerificationError(part, f"the ledger's first {old.size} entries do not match it: history was rewritten")
    if 0 < old.size:
        try:
            merkle.verify_consistency(old.size, size, old.root, root, source.consistency(old.size, size))
        except IntegrityError as e:
            raise VerificationError(part, f"consistency proof: {e.message}") from e


def _check_witnessed(
    source: Source,
    note: str,
    witnesses: Sequence[cosignature.WitnessKey],
    quorum: int,
    origin: str,
    public: list[Ed25519PublicKey],
    tree: merkle.Tree,
    size: int,
    root: bytes,
) -> str:
    """The witnessed checkpoint: its cosignatures (a quorum), then, if it is not the checkpoint
    verified, that it is a tree of this ledger. Returns who cosigned it, for the report."""
    kept = source.witnessed_checkpoint()
    candidate = note if kept is None else kept
    part = "checkpoint" if kept is None else "witnessed checkpoint"
    try:
        found = cosignature.require(candidate, witnesses, quorum)
    except IntegrityError as e:
        raise VerificationError(part, e.message) from e
    if kept is not None:
        _check_trusted(source, kept, origin, public, tree, size, root, part=part)
    cosigned = checkpoint.parse_body(candidate.partition("\n\n")[0] + "\n").size
    return f"tree size {cosigned} cosigned by {', '.join(sorted(found))}"


def _check_state(state: Store, replay: _Replay, digest: bytes, size: int, genesis_leaf: bytes) -> str:
    if state.get(GENESIS_KEY) not in (None, genesis_leaf):
        raise VerificationError("state", "the state directory belongs to another ledger")
    applied_raw = state.get(APPLIED_KEY)
    applied = from_n8(applied_raw) if applied_raw is not None else 0
    if applied > size:
        raise VerificationError("state", f"the state has {applied} entries applied, more than the log's {size}")
    if applied < size:
        return f"state lags the log by {size - applied} entries; it catches up at start-up or with replay"
    if state.get(DIGEST_KEY) != digest:
        raise VerificationError("state", "the state digest differs from the replay")
    expected = {k: v for k, v in replay.data.items() if v is not None}
    note = ""
    if not current_layout(state):  # built before document versions were kept: compare what it holds
        expected = {k: v for k, v in expected.items() if not k.startswith(VERSION_PREFIX)}
        note = "state is of an older layout (no document versions); the node rebuilds it when it next opens"
    count = 0
    for key, value in state.scan(b""):
        if key.startswith(META_PREFIX):
            continue
        if expected.get(key) != value:
            raise VerificationError("state", f"key {key[:60]!r} differs from the replay")
        count += 1
    if count != len(expected):
        raise VerificationError("state", f"{len(expected) - count} keys of the replay are missing from the state")
    return note

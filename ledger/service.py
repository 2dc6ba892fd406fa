"""The ledger as the API sees it, and the only door to it: authenticate, write, read.

:class:`Ledger` owns the data dir's stores and the pipeline thread that turns what its
sequencer orders into committed entries:

    write(request) -> Proposal -> Sequencer -> apply_batch -> Committer -> outcome

Authentication happens here (signature, key, role, window, nonce, authority); ordering is
the sequencer's (it is handed in, never built here); applying is ``apply_batch``'s; persisting
is the committer's. A refusal after the signature verified is remembered with its nonce, so
the same signed bytes can never take effect later (:mod:`ledger.nonces`).
"""

import base64
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Container, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import (
    applied,
    catchup,
    checkpoint,
    checkpoint_file,
    ed25519,
    httpsig,
    keys,
    machine,
    membership,
    merkle,
    note,
    query,
    receipt,
    routes,
    tiles,
)
from ledger.authority import Authorities
from ledger.batch import Batch, Head, apply_batch
from ledger.committer import Committer, Notary
from ledger.config import LedgerConfig
from ledger.entry import SignedRequest, decode
from ledger.errors import (
    AuthError,
    IntegrityError,
    InternalError,
    LedgerError,
    NotFoundError,
    StorageError,
    UnsupportedMediaError,
    ValidationError,
)
from ledger.layout import nonce_key
from ledger.log import Log
from ledger.nonces import NonceCache, refusable, replay
from ledger.proposal import Committed, Ordered, Proposal, Receipt
from ledger.sequencer import CatchUp, LocalSequencer, Sequencer
from ledger.state import catch_up, read_meta
from ledger.store import LevelStore, MemoryStore, Store
from ledger.witnessing import Witnessing

log = logging.getLogger("orchestrator.ledger")


@dataclass(frozen=True)
class Moved:
    """One committed batch that appended entries, as those who wait for the ledger to change see it."""

    #: The log size after it.
    size: int
    #: Its state writes (key -> value, None for a deletion), already in the state store. Read only.
    writes: Mapping[bytes, bytes | None]

    def added_under(self, watched: Container[bytes]) -> dict[bytes, list[bytes]]:
        """Which of the watched read prefixes (:meth:`Ledger.read_prefixes`) it added a key under,
        each with the positions of the documents concerned."""
        return query.added_under(self.writes, watched)

    def may_match(self, coll: str, prefixes: tuple[bytes, ...], positions: list[bytes]) -> bool:
        """Whether a document at one of those positions may now match the query reading ``prefixes``
        (False only when the batch created each of them without all the query's keys)."""
        return query.may_match(coll, prefixes, self.writes, positions)


@dataclass(frozen=True)
class Version:
    """One version of a document: the entry that wrote it (sequence number, ledger time in Unix
    milliseconds, signer, ``METHOD /path``) and the document as that entry left it."""

    seq: int
    time_ms: int
    key_id: str
    request: str
    document: bytes  # canonical JSON


#: Told of each committed batch, on the pipeline thread, after its writers' futures are resolved:
#: it must be quick and must not block (hand the news to another thread and return).
Watcher = Callable[[Moved], None]


class Ledger:
    def __init__(
        self,
        config: LedgerConfig,
        log_store: Store,
        state_store: Store,
        *,
        sequencer: Sequencer,
        node_key: Ed25519PrivateKey,
        nonce_store: Store | None = None,
        clock: Callable[[], float] = time.time,
        on_group: Callable[[int, float], None] | None = None,
        checkpoint_path: Path | None = None,
        peers: "Callable[[str, Ed25519PrivateKey], catchup.Peers] | None" = None,
    ) -> None:
        """Catch state up with the log; nothing runs until :meth:`start`. `peers` makes, from this
        node's name and key, the other nodes to take entries from when the sequencer no longer
        holds them (several nodes only)."""
        self.config = config
        self.clock = clock
        if Log(log_store).upgrade():
            log.info("rebuilt the Merkle tree of %s as tiles from its entries (old node layout)", config.data_dir)
        self.log = checkpoint_file.open_log(log_store, checkpoint_path)  # refuses a log shorter than signed
        self.state = state_store
        if self.log.size() == 0:
            raise StorageError(f"{config.data_dir} holds no ledger; run `orchestrator init` first")
        self.node_key = node_key
        head = catch_up(self.log, state_store)
        settings = machine.config(state_store)
        self.origin = str(settings["origin"])
        mine = keys.public_b64(self.node_key)
        named = [name for name, public in membership.node_keys(settings).items() if public == mine]
        if not named:
            raise StorageError(f"the node key is not one of the ledger's genesis node keys ({config.node_key_file})")
        #: This node's name among the genesis node keys (the origin on a single-node ledger).
        self.node_name = named[0]
        #: The genesis node keys, by name: whose records and checkpoint signatures count.
        self._node_b64 = membership.node_keys(settings)
        self.node_publics = {name: keys.public_from_b64(public) for name, public in self._node_b64.items()}
        self.peers = None if peers is None else peers(self.node_name, node_key)
        self._report: tuple[Head, bytes] | None = None  # the last record made, for its head
        self._cosigned: dict[str, dict[str, note.Signature]] = {}  # note text -> node -> its signature line
        self.window = int(settings["signature_window"])
        self.sequencer = sequencer
        self.committer = Committer(self.log, state_store, Notary(self.origin, node_key), on_group=on_group)
        self.nonces = NonceCache(self.window, nonce_store, now_s=int(clock()))
        self.authorities = None if config.public_urls is None else Authorities.of_urls(config.public_urls)
        #: Why the last log write failed, until one succeeds (readiness reads it).
        self.write_error: str | None = None
        self._head = head
        self._head_lock = threading.Lock()
        self._waiting: dict[bytes, Future[Committed]] = {}  # fingerprint -> the future of its proposal
        self._earlier: list[tuple[bytes, Proposal]] = []  # ordered before, at or before that position
        self._earlier_lock = threading.Lock()
        self._watchers: tuple[Watcher, ...] = ()
        self._thread: threading.Thread | None = None
        #: Collects witness cosignatures off the write path, once attached (:meth:`witness`).
        self.witnessing: Witnessing | None = None
        self._ensure_checkpoint()

    @classmethod
    def open(cls, config: LedgerConfig, *, sequencer: Sequencer | None = None, **kwargs: Any) -> "Ledger":
        """Open the data dir's stores and start the ledger (unless a sequencer is given: an
        EtcdSequencer on config.etcd when it names endpoints, else a LocalSequencer).

        Raises StorageError if the data dir is missing or in use."""
        if not config.log_dir.exists():
            raise StorageError(f"{config.data_dir} holds no ledger; run `orchestrator init` first")
        opened: list[LevelStore] = []
        try:
            opened.append(LevelStore(config.log_dir, create=False, paranoid=True))
            opened.append(LevelStore(config.state_dir))
            opened.append(LevelStore(config.nonces_dir))
            try:
                node_key = keys.load_private_key(config.node_key_file)
            except (OSError, ValueError) as e:
                raise StorageError(f"cannot read the node key {config.node_key_file}: {e}") from e
            clock = kwargs.get("clock", time.time)
            ledger = cls(
                config, opened[0], opened[1], nonce_store=opened[2], node_key=node_key,
                sequencer=sequencer if sequencer is not None else _sequencer(config, clock),
                checkpoint_path=config.checkpoint_file, **kwargs,
            )
        except BaseException:
            for store in opened:
                store.close()
            raise
        return ledger.start()

    @classmethod
    def in_memory(
        cls, config: LedgerConfig, genesis_raw: bytes, node_key: Ed25519PrivateKey, **kwargs: Any
    ) -> "Ledger":
        """A started ledger over memory stores holding just a genesis entry (for unit tests)."""
        log_ = Log(MemoryStore())
        log_.append(0, [genesis_raw])
        clock = kwargs.get("clock", time.time)
        kwargs.setdefault("sequencer", LocalSequencer(clock))
        return cls(config, log_.store, MemoryStore(), node_key=node_key, nonce_store=MemoryStore(), **kwargs).start()

    def start(self) -> "Ledger":
        """Start the pipeline thread (once)."""
        if self._thread is None:
            self.sequencer.start(self._current(), self)
            self._thread = threading.Thread(target=self._run, name="ledger-pipeline", daemon=True)
            self._thread.start()
        return self

    def witness(self, witnessing: Witnessing) -> "Ledger":
        """Attach and start the witnessing: each commit notifies it (an event, nothing more), and
        :meth:`checkpoint` serves the newest checkpoint it has a quorum of cosignatures for."""
        self.witnessing = witnessing
        witnessing.start()
        return self

    def close(self) -> None:
        """Stop taking writes, commit what was ordered, and close the stores."""
        self.sequencer.close()
        if self._thread is not None:
            self._thread.join()
        if self.witnessing is not None:
            self.witnessing.close()
        for future in list(self._waiting.values()):
            if not future.done():
                future.set_exception(StorageError("the ledger shut down before this write was ordered"))
        self.log.store.close()
        self.state.close()
        if self.nonces.journal is not None:
            self.nonces.journal.close()

    def watch(self, watcher: Watcher) -> None:
        """Call ``watcher`` once per committed batch that appended entries, on the pipeline thread,
        once the batch is in the log and in state (so a read issued after it sees the batch)."""
        self._watchers = (*self._watchers, watcher)

    def _ensure_checkpoint(self) -> None:
        """Sign a checkpoint for the current size if the stored one is missing or older."""
        note = self.log.checkpoint()
        head = self._head
        if note is not None and checkpoint.parse_body(note.partition("\n\n")[0] + "\n").size == head.size:
            return
        self.log.commit({}, self.committer.notary.sign(head.size, self.log.tree().root(head.size), head.digest))

    # -- authentication ------------------------------------------------------

    def authenticate(self, request: SignedRequest, role: str | None = None) -> httpsig.Signer:
        """Verify the signature, then the key's status and role, the time window and the
        authority. Raises AuthError, ForbiddenError, MisdirectedError or ValidationError.

        Claims no nonce: :meth:`read` and :meth:`write` do, and remember refusals."""
        signer, record = self._verified(request)
        self._check(request, signer, record, role)
        return signer

    def _verified(
        self, request: SignedRequest, nodes: bool = False
    ) -> tuple[httpsig.Signer, dict[str, Any] | None]:
        """`nodes`: also take the genesis node keys by their names, as auditors (a peer reading the
        entries to catch up), when no member holds that key id."""
        records: dict[str, dict[str, Any] | None] = {}  # the membership record is read once per request

        def public_key(key_id: str) -> ed25519.VerifyKey | None:
            records[key_id] = record = machine.member(self.state, key_id)
            if record is None and nodes and key_id in self._node_b64:
                records[key_id] = record = {"public_key": self._node_b64[key_id], "roles": ["auditor"],
                                            "revoked": False}
            return None if record is None else ed25519.verify_key(record["public_key"])

        try:
            signer = httpsig.verify_request(request, public_key)
        except AuthError as e:
            if e.reason == "unknown_key":
                # Unverifiable, but it must not pass once the key is registered: remember it too.
                params = httpsig.signature_params(request)
                self.nonces.refuse(params.key_id, params.nonce, params.fingerprint, e, int(self.clock()),
                                   verified=False)
            raise
        record = records[signer.key_id] if signer.key_id in records else machine.member(self.state, signer.key_id)
        return signer, record

    def _check(
        self, request: SignedRequest, signer: httpsig.Signer, record: dict[str, Any] | None, role: str | None
    ) -> None:
        machine.check_member(record, signer.key_id, role)
        httpsig.check_window(signer.params, int(self.clock()), self.window)
        if self.authorities is not None:
            self.authorities.check(request.target)

    def read(self, request: SignedRequest, role: str | None = None) -> httpsig.Signer:
        """Authenticate a read and use up its nonce. Raises as :meth:`authenticate` does."""
        signer, record = self._verified(request, nodes=len(self._node_b64) > 1)
        params = signer.params
        if self.state.get(nonce_key(params.key_id, params.nonce)) is not None:
            raise replay(params.key_id, params.nonce)
        self.nonces.claim(params.key_id, params.nonce, params.fingerprint, params.created, int(self.clock()),
                          resend=False)
        self._check(request, signer, record, role)
        return signer

    def write(self, request: SignedRequest, media_type: str = "application/json") -> "Future[Committed]":
        """Authenticate a write and hand it to the sequencer; the future resolves once it is
        durable (or refused). An exact resend of a write in flight shares its future.

        Raises NotFoundError (no such write endpoint), the errors of :meth:`authenticate`,
        ValidationError (a query parameter a write does not take), UnsupportedMediaError, or the
        refusal this same signed request got before."""
        route, _ = routes.route_of(request.method, request.path)
        signer, record = self._verified(request)
        params = signer.params
        self.nonces.claim(params.key_id, params.nonce, params.fingerprint, params.created, int(self.clock()),
                          resend=True)
        try:
            self._check(request, signer, record, route.role)
            routes.check_write_params(request.method, request.target)
            if media_type != "application/json":
                raise UnsupportedMediaError(f"Content-Type must be application/json, not {media_type or 'absent'!r}")
        except LedgerError as e:
            self._refused(params, e)
            raise
        proposal = Proposal(httpsig.loggable(request, signer), signer.key_id, params.nonce, params.fingerprint)
        mine: Future[Committed] = Future()
        future = self._waiting.setdefault(params.fingerprint, mine)
        if future is not mine:
            return _resent(future)  # the same signed write is in flight: it gets that one's outcome
        if self._answer_from_records(proposal, known_only=True):
            return future  # applied here already (another node ordered a copy): nothing to order again
        try:
            self.sequencer.propose(proposal)
        except LedgerError:
            self._waiting.pop(params.fingerprint, None)
            raise
        return future

    def _refused(self, params: httpsig.SignatureParams, error: LedgerError) -> None:
        if refusable(error):
            self.nonces.refuse(params.key_id, params.nonce, params.fingerprint, error, int(self.clock()))

    # -- the pipeline ----------------------------------------------------------

    def _run(self) -> None:
        while (group := self.sequencer.next_group(self.config.max_group)) is not None:
            if isinstance(group, CatchUp):
                self._catch_up(group)
            else:
                self._commit(group)

    def _commit(self, group: list[Ordered]) -> None:
        try:
            if self.committer.needs_recovery:
                head = self.committer.recover()
                with self._head_lock:
                    self._head = head
            batch = apply_batch(self.state, self._head, group)
            self.committer.commit(batch)
        except LedgerError as e:
            if isinstance(e, StorageError):
                self.write_error = e.message
            self._resolve_all(group, e)
            return
        except Exception as e:  # a bug must not kill the pipeline thread
            log.exception("commit failed")
            self._resolve_all(group, InternalError(f"internal error while committing: {e!r}"))
            return
        if batch.raws:
            self.write_error = None
        now_s = int(self.clock())
        for ordered, outcome in zip(group, batch.outcomes, strict=True):
            proposal = ordered.proposal
            if isinstance(outcome, LedgerError) and refusable(outcome):
                self.nonces.refuse(proposal.key_id, proposal.nonce, proposal.fingerprint, outcome, now_s)
        # Refusals are remembered before the head moves: ordered_before answers from them once it has.
        with self._head_lock:
            self._head = batch.after
        if batch.raws and self.witnessing is not None:
            self.witnessing.notify()
        for ordered, outcome in zip(group, batch.outcomes, strict=True):
            proposal = ordered.proposal
            future = self._waiting.pop(proposal.fingerprint, None)
            if future is None or future.done():
                continue
            if isinstance(outcome, LedgerError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        if batch.raws and self._watchers:
            moved = Moved(batch.after.size, batch.writes)
            for watcher in self._watchers:
                try:
                    watcher(moved)
                except Exception:  # a watcher's bug must not kill the pipeline thread
                    log.exception("a watcher of the ledger failed")
        self._settle_earlier()

    # -- catching up from a peer (ledger.catchup) --------------------------------------

    def _catch_up(self, behind: CatchUp) -> None:
        """Take the entries the sequencer lost from a peer, verified, then resume its order from the
        position of the head reached (or from ours, to be asked again later, when that failed)."""
        position = self._current().position
        try:
            position = self._take_from_peers(behind)
        except LedgerError as e:
            log.warning("catching up from a peer failed: %s", e.message)
        except Exception:  # a bug must not kill the pipeline thread
            log.exception("catching up from a peer failed")
        finally:
            behind.resume(position)

    def _take_from_peers(self, behind: CatchUp) -> bytes:
        head = self._current()
        goal = catchup.goal(behind.records, self.origin, self.node_publics, behind.since, head.size)
        if goal is None:
            raise StorageError("no node has reported a head past etcd's compaction yet")
        if self.peers is None:
            raise StorageError("no peer to take entries from (--peer)")
        signed = goal.checkpoint
        log.warning("catching up from a peer: entries %d..%d, to %s", head.size, goal.size, catchup.describe(goal))
        started = time.monotonic()
        while True:
            if self.committer.needs_recovery:
                head = self.committer.recover()
                with self._head_lock:
                    self._head = head
            if head.size >= goal.size:
                break
            raws = self.peers.entries(head.size, min(goal.size, head.size + catchup.CHUNK))
            batch = catchup.apply_entries(self.state, head, raws)
            _, root = self.log.prepare(head.size, batch.raws)
            size = batch.after.size
            if size == goal.size:
                if root != signed.root or batch.after.digest != signed.state_digest:
                    raise IntegrityError(f"the entries taken from a peer do not give {catchup.describe(goal)}: "
                                         "root or state digest differ")
                batch = dataclasses.replace(batch, after=dataclasses.replace(batch.after, position=goal.position))
            else:
                merkle.verify_consistency(size, goal.size, root, signed.root, self.peers.consistency(size, goal.size))
            self._commit_caught_up(batch)
            head = batch.after
        if head.size != goal.size or head.digest != signed.state_digest or \
                self.log.tree().root(head.size) != signed.root:
            raise IntegrityError(f"this node's log is not a prefix of {catchup.describe(goal)}")
        if head.position < goal.position:
            self._commit_caught_up(Batch(head, dataclasses.replace(head, position=goal.position), [], [], {}, []))
        log.warning("caught up from a peer to %d entries in %.1f s", goal.size, time.monotonic() - started)
        return goal.position

    def _commit_caught_up(self, batch: Batch) -> None:
        self.committer.commit(batch)
        with self._head_lock:
            self._head = batch.after
        if batch.raws and self.witnessing is not None:
            self.witnessing.notify()
        for fingerprint, future in list(self._waiting.items()):  # our own proposals among them
            recorded = machine.recorded_outcome(self.state, fingerprint)
            if recorded is not None and self._waiting.pop(fingerprint, None) is future and not future.done():
                seq, outcome, leaf_hex = recorded
                future.set_result(Committed(outcome.status, outcome.body, Receipt(seq, leaf_hex)))
        if batch.raws and self._watchers:
            moved = Moved(batch.after.size, batch.writes)
            for watcher in self._watchers:
                try:
                    watcher(moved)
                except Exception:
                    log.exception("a watcher of the ledger failed")
        self._settle_earlier()

    # -- what the sequencer tells (ledger.sequencer.Waiters) ----------------------------

    def report(self) -> tuple[str, bytes]:
        """This node's signed record of its head (ledger.applied), made again only when it moved."""
        head = self._current()
        made = self._report
        if made is None or made[0] != head:
            signed = self.committer.notary.sign(head.size, self.log.tree().root(head.size), head.digest)
            made = self._report = (head, applied.encode(self.origin, self.node_name, head.size, head.position,
                                                        signed, self.node_key))
        return self.node_name, made[1]

    def reported(self, records: Mapping[str, bytes]) -> dict[str, bytes]:
        """Verify the nodes' records; keep the other nodes' checkpoint signatures; every genesis
        node's position (empty for one without a valid record)."""
        positions = dict.fromkeys(self.node_publics, b"")
        for name, raw in records.items():
            try:
                record = applied.decode(raw, self.origin, self.node_publics)
            except LedgerError as e:
                log.warning("ignoring the etcd record of node %r: %s", name, e.message)
                continue
            if record.node != name:
                continue
            positions[name] = record.position
            if name != self.node_name:
                text = note.parse(record.note).text
                self._cosigned.setdefault(text, {})[name] = record.line
        while len(self._cosigned) > 64:  # the oldest notes go first (dicts keep insertion order)
            del self._cosigned[next(iter(self._cosigned))]
        return positions

    def _with_node_signatures(self, text: str) -> str:
        """A checkpoint note with the other nodes' signature lines for the same body added."""
        others = self._cosigned.get(note.parse(text).text)
        if not others:
            return text
        parsed = note.parse(text)
        return parsed.with_signatures(others[name] for name in sorted(others)).encode()


    def unordered(self, proposal: Proposal, error: LedgerError) -> None:
        """The sequencer could not order this proposal: its waiter gets the error."""
        future = self._waiting.pop(proposal.fingerprint, None)
        if future is not None and not future.done():
            future.set_exception(error)

    def ordered_before(self, proposal: Proposal, position: bytes) -> None:
        """The same signed request was ordered already, at or before `position`: once applied
        there, its waiter gets what it became (the recorded outcome, or the refusal remembered
        with its nonce), unless the pipeline resolved it on the way.

        Whoever pops the waiter resolves it (this, or the pipeline applying it), once."""
        with self._earlier_lock:
            self._earlier.append((position, proposal))
        self._settle_earlier()

    def _settle_earlier(self) -> None:
        """Answer the waiters of proposals ordered before, up to the position applied."""
        if not self._earlier:
            return
        with self._head_lock:
            applied = self._head.position
        with self._earlier_lock:
            due = [proposal for position, proposal in self._earlier if position <= applied]
            self._earlier = [(position, proposal) for position, proposal in self._earlier if position > applied]
        for proposal in due:
            self._answer_from_records(proposal)

    def _answer_from_records(self, proposal: Proposal, *, known_only: bool = False) -> bool:
        """Answer the proposal's waiter with what it became on this node: its recorded outcome, or
        the refusal remembered with its nonce, else (unless `known_only`) that it is not known.
        Whether it was answered (or someone else answered it first).

        The pipeline writes the outcome to state and remembers a refusal before it pops the
        waiters of what it applied: a waiter registered after that pop finds the outcome here."""
        recorded = machine.recorded_outcome(self.state, proposal.fingerprint)
        refusal = None if recorded is not None else \
            self.nonces.refusal(proposal.key_id, proposal.nonce, proposal.fingerprint)
        if known_only and recorded is None and refusal is None:
            return False
        future = self._waiting.pop(proposal.fingerprint, None)
        if future is None or future.done():
            return True
        if recorded is not None:
            seq, outcome, leaf_hex = recorded
            future.set_result(Committed(outcome.status, outcome.body, Receipt(seq, leaf_hex), resent=True))
            return True
        future.set_exception(refusal if refusal is not None else StorageError(
            "this signed request was ordered before, but what became of it is no longer known on this node: "
            "sign the request again"))
        return True

    def _resolve_all(self, group: list[Ordered], error: LedgerError) -> None:
        for ordered in group:
            future = self._waiting.pop(ordered.proposal.fingerprint, None)
            if future is not None and not future.done():
                future.set_exception(error)

    # -- reads ---------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        """Log size and the state digest after it, as one consistent pair."""
        head = self._current()
        return head.size, head.digest

    def _current(self) -> Head:
        with self._head_lock:
            return self._head

    def order_trouble(self) -> str | None:
        """Why this node's sequencer cannot order writes now (None: it can)."""
        return self.sequencer.trouble()

    def state_lag(self) -> int:
        """Log entries the state store has not applied yet (0 when caught up)."""
        return self._current().size - read_meta(self.state).applied

    def document(self, coll: str, uuid: str, at: int | None = None) -> bytes:
        """A document now, or as it was right after entry ``at``. Raises NotFoundError (unknown
        collection or document, or none by then) or ValidationError (``at`` not in the log)."""
        if at is None:
            return query.get_document(self.state, coll, uuid)
        return query.document_at(self.state, coll, uuid, self._entry_in_log(at))

    def find(
        self, coll: str, filters: Mapping[str, str], *, limit: int, after: str | None, at: int | None = None
    ) -> query.Page:
        """A page of a collection now, or as it was right after entry ``at``; raises as
        :func:`ledger.query.find` does, or ValidationError (``at`` not in the log)."""
        if at is None:
            return query.find(self.state, coll, filters, limit=limit, after=after)
        return query.find_at(self.state, coll, filters, seq=self._entry_in_log(at), limit=limit, after=after)

    def history(self, coll: str, uuid: str, at: int | None = None) -> list[Version]:
        """Every version of a document, oldest first, each with the entry that wrote it (up to
        entry ``at``, if given). Raises as :meth:`document` does."""
        until = self._current().size - 1 if at is None else self._entry_in_log(at)
        found = []
        for seq, document in query.versions(self.state, coll, uuid, until=until):
            entry = decode(self.log.raw(seq))
            request = entry.request
            line = "genesis" if request is None else f"{request.method} {request.path}"
            found.append(Version(seq, entry.time_ms, entry.key_id, line, document))
        return found

    def _entry_in_log(self, seq: int) -> int:
        """seq, if it is an entry of the log; raises ValidationError otherwise."""
        size = self._current().size
        if not 0 <= seq < size:
            raise ValidationError(f"at={seq}: no such entry; the log holds entries 0..{size - 1}")
        return seq

    def read_prefixes(self, coll: str, filters: Mapping[str, str]) -> tuple[bytes, ...]:
        """The key prefixes :meth:`find` reads for these filters: a document can only start to match
        in a batch that adds a key under one of them (:meth:`Moved.added_under`). Raises as find does."""
        return query.read_prefixes(coll, filters)

    def members(self) -> list[bytes]:
        """Every membership record (canonical JSON with its key id), in key id order."""
        return query.members(self.state)

    def member(self, key_id: str) -> bytes:
        """One membership record; raises NotFoundError."""
        return query.member(self.state, key_id)

    def checkpoint(self) -> str:
        """The checkpoint note to show: with witnesses, the newest one a quorum of them cosigned
        (with every cosignature collected for it), until there is one the latest signed one."""
        if self.witnessing is not None:
            served = self.witnessing.served()
            if served is not None:
                return self._with_node_signatures(served)
        return self._with_node_signatures(self.signed_checkpoint())

    def signed_checkpoint(self) -> str:
        """The latest checkpoint note the node signed (no cosignatures)."""
        note = self.log.checkpoint()
        if note is None:
            raise IntegrityError("the log holds no checkpoint")
        return note

    def witness_report(self) -> dict[str, Any] | None:
        """The witnesses' states, the quorum and the witnessed size; None without witnesses."""
        return None if self.witnessing is None else self.witnessing.report()

    def vkey(self) -> str:
        return checkpoint.vkey(self.origin, self.node_key.public_key())

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """(seq, entry bytes) for start <= seq < end, within the log."""
        return list(self.log.raws(start, min(end, self._current().size)))

    def entry(self, seq: int) -> bytes:
        """One entry's bytes; raises IntegrityError when it is not in the log."""
        if not 0 <= seq < self._current().size:
            raise IntegrityError(f"entry {seq} is not in the log")
        return self.log.raw(seq)

    def inclusion(self, seq: int, tree_size: int) -> dict[str, Any]:
        """RFC 9162 inclusion proof of entry seq in the tree of tree_size entries (base64 hashes)."""
        tree = self.log.tree()
        proof = tree.inclusion(seq, tree_size)
        return {
            "seq": seq,
            "tree_size": tree_size,
            "leaf_hash": _b64(tree.node(0, seq)),
            "root": _b64(tree.root(tree_size)),
            "proof": [_b64(p) for p in proof],
        }

    def receipt(self, seq: int, note: str | None = None) -> str:
        """The C2SP tlog-proof@v1 receipt of entry seq (ledger/receipt.py) under the given checkpoint
        note, by default the one :meth:`checkpoint` serves, or the latest signed one when that does
        not hold the entry yet. Raises IntegrityError if seq is not in the log."""
        if note is None:
            note = self.checkpoint()
            if checkpoint_file.note_size(note) <= seq:
                note = self.signed_checkpoint()
        size = checkpoint_file.note_size(note)
        if not 0 <= seq < size:
            raise IntegrityError(f"entry {seq} is not in the tree of {size} entries")
        proof = self.log.tree().inclusion(seq, size)
        return receipt.TlogProof(self.log.raw(seq), seq, tuple(proof), note).encode()

    def tile(self, tile: tiles.TilePath) -> bytes:
        """A hash tile or entry bundle of the current tree (ledger/tiles.py); raises NotFoundError
        when the tree does not hold all of it, EntryTooLargeError for a bundle that cannot be encoded."""
        size = self._current().size
        if tile.level is not None:
            return tiles.hash_tile(self.log.tree(), tile, size)
        if not tiles.covered(tile, size):
            raise NotFoundError(f"no entry bundle {tile.format()} in a tree of {size} entries")
        start = tile.index * tiles.WIDTH
        return tiles.entry_bundle([raw for _, raw in self.log.raws(start, start + tile.width)])

    def cosigned_after(self, seq: int) -> "Future[str] | None":
        """A future of the first witnessed checkpoint note holding entry seq; None without witnesses."""
        return None if self.witnessing is None else self.witnessing.covering(seq)

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        """RFC 9162 consistency proof between the trees of first and second entries (base64)."""
        tree = self.log.tree()
        return {
            "first": first,
            "second": second,
            "first_root": _b64(tree.root(first)),
            "second_root": _b64(tree.root(second)),
            "proof": [_b64(p) for p in tree.consistency(first, second)],
        }


def _sequencer(config: LedgerConfig, clock: Callable[[], float]) -> Sequencer:
    if not config.etcd:
        return LocalSequencer(clock)
    from ledger.etcd_sequencer import EtcdSequencer  # gRPC only for a node that uses etcd

    return EtcdSequencer(config.etcd, clock=clock, retain=config.etcd_retain)


def _resent(first: "Future[Committed]") -> "Future[Committed]":
    """A future of the outcome of a write already in flight, marked as a resend's answer."""
    resend: Future[Committed] = Future()

    def settle(done: "Future[Committed]") -> None:
        error = done.exception()
        if error is not None:
            resend.set_exception(error)
        else:
            resend.set_result(dataclasses.replace(done.result(), resent=True))

    first.add_done_callback(settle)
    return resend


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

"""Collecting witness cosignatures on the node's checkpoints, off the write path.

The pipeline thread only calls :meth:`Witnessing.notify` after a commit (it sets an event).
A coordinator thread turns that into a *target*, the latest signed checkpoint, at most once per
``interval`` seconds; one thread per witness sends the target it finds to its witness (the
C2SP add-checkpoint call, :mod:`ledger.tlog_witness`): ``old`` is the size that witness is
known to hold (0 at first; a 409 answer tells it, and the call is made again at once) with the
RFC 9162 consistency proof from there. A witness that cannot be reached or refuses is retried
with a growing delay (up to ``retry_max`` seconds), each time with the latest target.

Cosignatures are kept per checkpoint (the few newest sizes). The *witnessed* note is the newest
checkpoint that at least ``quorum`` witnesses cosigned, with every cosignature collected for
it; it is what :meth:`Witnessing.served` returns (the node serves it at GET /ledger/checkpoint)
and it is kept in ``DATA_DIR/witnessed`` (atomically replaced), so that it outlives a restart
and `orchestrator verify` can check it offline. Only cosignatures that verify against the
configured witness key are kept. Reading :meth:`served` takes no lock (one reference).
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ledger import checkpoint_file, cosignature, note, tlog_witness
from ledger.errors import IntegrityError, LedgerError

log = logging.getLogger("orchestrator.witnessing")

#: Seconds between two targets at least: at most a few witness rounds a second.
INTERVAL_S = 0.25
#: The most seconds a failing witness waits before it is tried again.
RETRY_MAX_S = 30.0
#: Checkpoint sizes whose cosignatures are kept while waiting for a quorum.
KEPT_SIZES = 32
#: Waiters for a witnessed note (receipts) held before the cancelled ones are dropped.
MAX_WAITERS = 1024


@dataclass(frozen=True)
class WitnessConfig:
    """A witness to ask: the URL of its submission prefix and its key."""

    url: str
    key: cosignature.WitnessKey

    @classmethod
    def parse(cls, text: str) -> "WitnessConfig":
        """URL=VKEY; raises ValueError."""
        url, sep, vkey = text.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise ValueError(f"expected URL=VKEY with an http(s) URL, got {text[:80]!r}")
        try:
            return cls(url.rstrip("/"), cosignature.parse_vkey(vkey))
        except IntegrityError as e:
            raise ValueError(e.message) from None


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


class Unreachable(Exception):
    """The witness could not be asked (connection refused, timeout...)."""


#: Sends an add-checkpoint body to a URL and returns the answer; raises Unreachable.
Post = Callable[[str, bytes], Reply]


@dataclass
class WitnessStatus:
    """What is known of one witness (read by /readyz and /metrics)."""

    name: str
    url: str
    #: "pending" (not asked yet), "ok" (cosigned the last checkpoint sent), "refused", "down".
    state: str = "pending"
    #: The size of the latest checkpoint it cosigned for this node (this process's life).
    cosigned_size: int | None = None
    detail: str | None = None
    failures: dict[str, int] = field(default_factory=dict)
    #: Calls that got a valid cosignature.
    cosignatures: int = 0
    #: CPU seconds this witness's thread spent in its calls (proofs, requests, checks).
    cpu_seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "url": self.url, "state": self.state, "cosigned_size": self.cosigned_size,
                "detail": self.detail, "failures": dict(self.failures), "cosignatures": self.cosignatures,
                "cpu_seconds": round(self.cpu_seconds, 6)}


@dataclass(frozen=True)
class Target:
    note: str
    text: str
    size: int


def _target(signed_note: str) -> Target:
    parsed = note.parse(signed_note)
    return Target(signed_note, parsed.text, note.parse_checkpoint(parsed.text).size)


class Witnessing:
    def __init__(
        self,
        witnesses: Sequence[WitnessConfig],
        quorum: int,
        *,
        latest: Callable[[], str],
        consistency: Callable[[int, int], list[bytes]],
        root: Callable[[int], bytes],
        post: Post,
        path: Path | None = None,
        interval: float = INTERVAL_S,
        retry_max: float = RETRY_MAX_S,
    ) -> None:
        """`latest` gives the node's latest signed checkpoint note, `consistency` and `root` read its
        tree; `path` keeps the witnessed note. Raises IntegrityError if the kept note is not the node's
        tree (the log was replaced), ValueError for a quorum out of range."""
        if not 1 <= quorum <= len(witnesses):
            raise ValueError(f"the witness quorum must be between 1 and {len(witnesses)}, not {quorum}")
        self.witnesses = list(witnesses)
        self.quorum = quorum
        self.latest = latest
        self.consistency = consistency
        self.root = root
        self.post = post
        self.path = path
        self.interval = interval
        self.retry_max = retry_max
        self.status = {w.key.name: WitnessStatus(w.key.name, w.url) for w in self.witnesses}
        self._held: dict[str, int | None] = {w.key.name: None for w in self.witnesses}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._commits = threading.Event()
        self._closed = False
        self._target: Target | None = None
        self._cosigned: dict[int, tuple[Target, dict[str, note.Signature]]] = {}
        self._served: str | None = None
        self._served_size = -1
        self._waiters: list[tuple[int, Future[str]]] = []
        self._persist = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._load()

    # -- the witnessed note -----------------------------------------------------------------

    def served(self) -> str | None:
        """The newest checkpoint note with a quorum of cosignatures, or None."""
        return self._served

    def served_size(self) -> int | None:
        return None if self._served is None else self._served_size

    def covering(self, seq: int) -> "Future[str]":
        """A future of the first witnessed note whose tree holds entry seq."""
        future: Future[str] = Future()
        with self._lock:
            if self._served is not None and self._served_size > seq:
                future.set_result(self._served)
            else:
                if len(self._waiters) >= MAX_WAITERS:  # witnesses away: drop those that gave up waiting
                    self._waiters = [(s, f) for s, f in self._waiters if not f.cancelled()]
                self._waiters.append((seq, future))
        return future

    def _load(self) -> None:
        if self.path is None:
            return
        kept = checkpoint_file.CheckpointFile(self.path).read()
        if kept is None:
            return
        try:
            parsed = note.parse(kept)
            head = note.parse_checkpoint(parsed.text)
        except IntegrityError as e:
            raise IntegrityError(f"{self.path}: {e.message}") from e
        if head.size > 0 and self.root(head.size) != head.root:
            raise IntegrityError(
                f"{self.path} holds a witnessed checkpoint of size {head.size} that is not this log's tree: "
                "the log was altered or replaced"
            )
        own = [s for s in parsed.signatures if s.name == head.origin]
        target = Target(note.Note(parsed.text, tuple(own)).encode(), parsed.text, head.size)
        try:
            found = cosignature.valid(parsed, [w.key for w in self.witnesses])
        except IntegrityError as e:
            raise IntegrityError(f"{self.path}: {e.message}") from e
        lines = {s.name: s for s in parsed.signatures if s.name in found}
        for name in lines:
            self._held[name] = head.size
        self._cosigned[head.size] = (target, lines)
        if len(lines) >= self.quorum:
            self._served, self._served_size = kept, head.size

    def _record(self, target: Target, name: str, line: note.Signature) -> None:
        """Keep a verified cosignature; publish (and keep on disk) a newer or fuller witnessed note."""
        with self._lock:
            kept = self._cosigned.setdefault(target.size, (target, {}))
            if kept[0].text != target.text:  # cannot happen for one log: the tree at a size is fixed
                return
            kept[1][name] = line
            for size in sorted(self._cosigned)[:-KEPT_SIZES]:
                del self._cosigned[size]
            best = max((s for s, (_, lines) in self._cosigned.items() if len(lines) >= self.quorum), default=None)
            if best is None or best < self._served_size:
                return
            best_target, lines = self._cosigned[best]
            served = note.parse(best_target.note).with_signatures(lines.values()).encode()
            if served == self._served:
                return
            self._served, self._served_size = served, best
            ready = [(s, f) for s, f in self._waiters if s < best]
            self._waiters = [(s, f) for s, f in self._waiters if s >= best]
        self._keep(served, best)
        for _, future in ready:
            if future.set_running_or_notify_cancel():  # False: the waiter gave up (it was cancelled)
                future.set_result(served)

    def _keep(self, served: str, size: int) -> None:
        if self.path is None:
            return
        with self._persist:
            if self._served_size != size or self._served != served:
                return  # a newer one was published meanwhile: it will be written
            try:
                checkpoint_file.write_atomically(self.path, served.encode())
            except LedgerError as e:
                log.error("cannot keep the witnessed checkpoint: %s", e.message)

    # -- threads ----------------------------------------------------------------------------

    def start(self) -> "Witnessing":
        if not self._threads:
            self._threads.append(threading.Thread(target=self._coordinate, name="witness-rounds", daemon=True))
            for witness in self.witnesses:
                self._threads.append(
                    threading.Thread(target=self._work, args=(witness,), name=f"witness-{witness.key.name}",
                                     daemon=True)
                )
            for thread in self._threads:
                thread.start()
            self.notify()
        return self

    def notify(self) -> None:
        """A commit happened (called by the pipeline thread: sets an event, nothing more)."""
        self._commits.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._changed.notify_all()
        self._commits.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _coordinate(self) -> None:
        while True:
            self._commits.wait()
            self._commits.clear()
            if self._closed:
                return
            try:
                target = _target(self.latest())
            except LedgerError as e:
                log.error("cannot read the latest checkpoint to witness: %s", e.message)
                target = None
            if target is not None:
                with self._lock:
                    if self._target is None or target.size > self._target.size:
                        self._target = target
                        self._changed.notify_all()
            time.sleep(self.interval)  # at most one round per interval

    def _work(self, witness: WitnessConfig) -> None:
        """One witness's loop: a newer target when healthy; after a failure, the latest target
        once the retry delay is over."""
        sent: Target | None = None
        delay = 0.0
        while True:
            with self._lock:
                retry_at = time.monotonic() + delay if delay else None
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    if self._target is not None:
                        if retry_at is None and (sent is None or self._target.size > sent.size):
                            break
                        if retry_at is not None and now >= retry_at:
                            break
                    self._changed.wait(None if retry_at is None else retry_at - now)
                target = self._target
            started = time.thread_time()
            ok = self._ask(witness, target)
            self.status[witness.key.name].cpu_seconds += time.thread_time() - started
            sent = target
            delay = 0.0 if ok else min(self.retry_max, max(0.5, delay * 2))
            if not ok:
                log.warning("witness %s: %s", witness.key.name, self.status[witness.key.name].detail)

    def _ask(self, witness: WitnessConfig, target: Target) -> bool:
        """Send the target to the witness (again after a 409); True once it cosigned it."""
        name = witness.key.name
        status = self.status[name]
        old = self._held[name] or 0
        for _ in range(3):
            if old > target.size:
                return self._failed(status, "refused", f"it holds a checkpoint of size {old}, beyond this log's "
                                    f"{target.size}: this node's log is shorter than a tree it cosigned")
            try:
                proof = [] if old in (0, target.size) else self.consistency(old, target.size)
                reply = self.post(witness.url + tlog_witness.PATH, tlog_witness.request_body(old, proof, target.note))
            except Unreachable as e:
                return self._failed(status, "down", f"unreachable: {e}")
            except LedgerError as e:
                return self._failed(status, "down", f"cannot build the request: {e.message}")
            if reply.status == 409 and reply.content_type.split(";")[0].strip() == tlog_witness.SIZE_TYPE:
                try:
                    old = tlog_witness.parse_size(reply.body)
                except LedgerError as e:
                    return self._failed(status, "refused", f"409 with {e.message}")
                self._held[name] = old
                continue
            if reply.status != 200:
                text = reply.body.decode(errors="replace").strip()[:300]
                return self._failed(status, "refused", f"answered {reply.status}: {text}")
            return self._accept(witness, target, reply.body)
        return self._failed(status, "refused", "kept answering 409 (another client moves it on?)")

    def _accept(self, witness: WitnessConfig, target: Target, body: bytes) -> bool:
        name = witness.key.name
        status = self.status[name]
        try:
            lines = note.parse("x\n\n" + body.decode()).signatures  # the answer is signature lines
            ours = [s for s in lines if s.name == name and s.key_id == witness.key.key_id]
            for line in ours:
                cosignature.check(target.text, line, witness.key)
        except (LedgerError, UnicodeDecodeError) as e:
            message = e.message if isinstance(e, LedgerError) else str(e)
            return self._failed(status, "refused", f"answered a cosignature that does not verify: {message}")
        if not ours:
            return self._failed(status, "refused", "answered 200 without a cosignature by its key")
        self._held[name] = target.size
        status.state, status.cosigned_size, status.detail = "ok", target.size, None
        status.cosignatures += 1
        self._record(target, name, ours[-1])
        return True

    def _failed(self, status: WitnessStatus, state: str, detail: str) -> bool:
        status.state, status.detail = state, detail
        status.failures[state] = status.failures.get(state, 0) + 1
        return False

    def report(self) -> dict[str, object]:
        """The witnesses' states, the quorum and the witnessed size (for /readyz)."""
        return {
            "quorum": self.quorum,
            "witnessed_size": self.served_size(),
            "witnesses": [self.status[w.key.name].as_json() for w in self.witnesses],
        }

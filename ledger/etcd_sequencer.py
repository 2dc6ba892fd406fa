"""EtcdSequencer: the order of writes from an etcd cluster that several ledger nodes share.

Proposing: a node puts each authenticated write under ``<prefix><fingerprint>`` (see
:mod:`ledger.etcd_codec`), created only if absent (a transaction comparing create_revision
with 0), with the node's clock reading in the value. Proposals queued at once go in one etcd
transaction (a nested transaction per proposal, up to ``max_txn`` of them), since one Raft
entry per write is what limits etcd. A key that already exists means the same signed request
was ordered before, through this node or another: the ledger is told where
(:meth:`ledger.sequencer.Waiters.ordered_before`) and answers with what it became.

Ordering: every node watches the prefix from the position it has applied, in revision order
and, within a transaction, in etcd's order of its puts, and hands the proposals out as
:class:`Ordered` with their position (:func:`ledger.etcd_codec.position`). It never hands out a
position twice or skips one: a watch that breaks resumes on the next endpoint from the last
position handed out. Values that are not proposals are skipped, identically on every node.

Losing etcd: a transaction that fails is retried on the next endpoint until its proposals
have waited ``order_timeout_s``; then they are refused (503, "may still be ordered": it is
ambiguous, and a resend of the same signed bytes learns the outcome). While etcd has been
unreachable for longer than that, new proposals are refused at once, and :meth:`trouble` says
why; a probe clears it when a linearizable read succeeds again.

Reporting and compaction: about once a second the node's signed record of how far it has applied
(:mod:`ledger.applied`) goes under ``n/<node>`` beside the proposals, and every node's record is
read back (the ledger verifies them: checkpoint signatures, peers to catch up to). Every
``compact_s`` seconds each node also deletes the proposals that every node has applied and
compacts etcd's history up to there, so etcd's size stays bounded; several nodes doing so at
once is harmless (each only removes what all have applied). A node whose record is more than
``retain`` revisions behind etcd's current revision (or that has none) no longer holds this
back: it is left behind and, once back, finds its history compacted. Then the watch hands out a
:class:`ledger.sequencer.CatchUp`: the ledger takes the missing entries from a peer, verifies
them, and resumes the order from the position of the peer head it reached.

Everything etcd-facing runs on one asyncio loop in a thread of its own (gRPC through aetcd's
generated stubs); :meth:`propose` and :meth:`next_group` are called from other threads.
"""

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aetcd import rpc

from ledger import etcd_codec
from ledger.batch import Head
from ledger.errors import IntegrityError, OrderingError
from ledger.etcd_codec import endpoint
from ledger.proposal import Ordered, Proposal
from ledger.sequencer import CatchUp, Waiters

log = logging.getLogger("orchestrator.etcd")

#: Ordered proposals held for the pipeline before the watch stream is left to wait.
MAX_BUFFERED = 20_000
#: Seconds a watch behind our own puts may report nothing before it is opened elsewhere.
STALE_WATCH_S = 3.0
#: etcd's default --max-txn-ops is 128: deletions go in transactions of at most this many.
DELETE_TXN = 100
#: Seconds between two catch-up attempts that found no peer to catch up from.
CATCH_UP_RETRY_S = 2.0

#: gRPC channel options: a watch from far back brings large responses (the 4 MB default fails).
GRPC_OPTIONS = (
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
)


@dataclass
class _Queued:
    proposal: Proposal
    proposed_ms: int
    deadline: float  # time.monotonic() after which it is refused rather than retried
    value: bytes = field(default=b"")


class _Restart(Exception):
    """The watch must be opened again (on the next endpoint)."""


class Compacted(Exception):
    """etcd's history no longer holds the revisions this node still has to apply."""


class EtcdSequencer:
    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        clock: Callable[[], float] = time.time,
        order_timeout_s: float = 5.0,
        rpc_timeout_s: float = 3.0,
        max_txn: int = 64,
        max_txn_bytes: int = 1 << 20,
        concurrency: int = 4,
        report_s: float = 1.0,
        compact_s: float = 5.0,
        retain: int = 100_000,
    ) -> None:
        """`retain`: etcd revisions of history kept for a node that lags or is down (0: compact
        nothing); past them it is left behind and catches up from a peer when back."""
        if not endpoints:
            raise ValueError("an etcd sequencer needs at least one endpoint")
        self.endpoints = [endpoint(e) for e in endpoints]  # raises ValueError
        self.clock = clock
        self.order_timeout_s = order_timeout_s
        self.rpc_timeout_s = rpc_timeout_s
        self.max_txn = max_txn
        self.max_txn_bytes = max_txn_bytes
        self.concurrency = concurrency
        self.report_s = report_s
        self.compact_s = compact_s
        self.retain = retain
        self.prefix = b""
        self.nodes_prefix = b""
        self._records: dict[str, bytes] = {}  # every node's raw record, as last read
        self._positions: dict[str, bytes] = {}  # every genesis node's verified position (EMPTY: none)
        self._compacted = 0  # the revision this node last compacted at (or found compacted)
        self._waiters: Waiters | None = None
        self._queue: deque[_Queued] = deque()
        self._queue_lock = threading.Lock()
        self._ordered: deque[Ordered | CatchUp] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._position = (0, 0)  # the last position handed out (or applied, at start)
        self._put_at = 0  # the endpoint proposals go to
        self._watch_at = 0  # the endpoint the watch reads from
        self._trouble: str | None = None  # why writes cannot be ordered now
        self._watch_trouble: str | None = None
        self._fatal: str | None = None
        self._down_since: float | None = None
        self._put_revision = 0  # the latest revision at which a put of ours was created
        self._seen_revision = 0  # the latest revision the watch has reported
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._channels: dict[str, Any] = {}

    # -- the Sequencer protocol --------------------------------------------------------

    def start(self, head: Head, waiters: Waiters) -> None:
        """Watch from the head's position, under the prefix of the head's ledger."""
        if self._thread is not None:
            return
        if not head.genesis:
            raise IntegrityError("an etcd sequencer starts from a ledger that has a genesis")
        self.prefix = etcd_codec.prefix(head.genesis)
        self.nodes_prefix = etcd_codec.nodes_prefix(head.genesis)
        self._position = etcd_codec.parse_position(head.position)
        self._waiters = waiters
        self._thread = threading.Thread(target=self._run, name="etcd-sequencer", daemon=True)
        self._thread.start()
        self._ready.wait()

    def propose(self, proposal: Proposal) -> None:
        if self._closed:
            raise OrderingError("the ledger is shutting down")
        down = self._down_since
        if self._fatal is not None:
            raise OrderingError(f"this node cannot order writes: {self._fatal}")
        if down is not None and time.monotonic() - down > self.order_timeout_s:
            raise OrderingError(f"{self._trouble}; nothing was written: retry later")
        queued = _Queued(proposal, int(self.clock() * 1000), time.monotonic() + self.order_timeout_s)
        with self._queue_lock:
            self._queue.append(queued)
            if self._wake_pending:
                return
            self._wake_pending = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    def next_group(self, limit: int) -> list[Ordered] | CatchUp | None:
        with self._cond:
            while not self._ordered and not self._closed:
                self._cond.wait()
            if not self._ordered:
                return None
            first = self._ordered[0]
            if isinstance(first, CatchUp):
                self._ordered.popleft()
                return first
            group: list[Ordered] = []
            while self._ordered and len(group) < limit:
                item = self._ordered[0]
                if isinstance(item, CatchUp):
                    break
                group.append(item)
                self._ordered.popleft()
            return group

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None:
            try:
                loop.call_soon_threadsafe(stopped.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=10)

    def trouble(self) -> str | None:
        """Why this node cannot order writes now (None: it can)."""
        return self._fatal or self._trouble or self._watch_trouble

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._ready.set()
        tasks = [asyncio.create_task(self._proposer()) for _ in range(self.concurrency)]
        tasks.append(asyncio.create_task(self._watcher()))
        tasks.append(asyncio.create_task(self._prober()))
        tasks.append(asyncio.create_task(self._reporter()))
        if self.retain > 0:
            tasks.append(asyncio.create_task(self._compactor()))
        try:
            await self._stopped.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with self._queue_lock:
                left = list(self._queue)
                self._queue.clear()
            for queued in left:
                self._unordered(queued, "the ledger shut down before this write was proposed")
            for channel in self._channels.values():
                await channel.close()

    def _channel(self, at: str) -> Any:
        channel = self._channels.get(at)
        if channel is None:
            channel = self._channels[at] = rpc.insecure_channel(at, options=GRPC_OPTIONS)
        return channel

    def _unordered(self, queued: _Queued, reason: str) -> None:
        if self._waiters is not None:
            self._waiters.unordered(queued.proposal, OrderingError(reason))

    # -- proposing --------------------------------------------------------------------

    def _take(self) -> list[_Queued]:
        """Up to max_txn queued proposals whose values fit max_txn_bytes (at least one)."""
        taken: list[_Queued] = []
        size = 0
        with self._queue_lock:
            while self._queue and len(taken) < self.max_txn:
                queued = self._queue[0]
                if not queued.value:
                    queued.value = etcd_codec.encode(queued.proposal, queued.proposed_ms)
                if taken and size + len(queued.value) > self.max_txn_bytes:
                    break
                taken.append(self._queue.popleft())
                size += len(queued.value)
            if not self._queue:
                self._wake_pending = False
        return taken

    async def _proposer(self) -> None:
        assert self._wake is not None
        while True:
            batch = self._take()
            if not batch:
                self._wake.clear()
                batch = self._take()
                if not batch:
                    await self._wake.wait()
                    continue
            await self._put(batch)

    def _txn(self, batch: list[_Queued]) -> Any:
        ops = []
        for queued in batch:
            key = etcd_codec.key(self.prefix, queued.proposal)
            absent = rpc.Compare(key=key, target=rpc.Compare.CompareTarget.CREATE,
                                 result=rpc.Compare.CompareResult.EQUAL, create_revision=0)
            put = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=queued.value))
            there = rpc.RequestOp(request_range=rpc.RangeRequest(key=key, keys_only=True))
            ops.append(rpc.RequestOp(request_txn=rpc.TxnRequest(compare=[absent], success=[put], failure=[there])))
        return rpc.TxnRequest(success=ops)

    async def _put(self, batch: list[_Queued]) -> None:
        """Put the batch in one transaction, retrying on the next endpoint until each proposal
        is ordered or has waited too long."""
        backoff = 0.05
        while batch:
            at_index = self._put_at
            at = self.endpoints[at_index % len(self.endpoints)]
            try:
                response = await rpc.KVStub(self._channel(at)).Txn(self._txn(batch), timeout=self.rpc_timeout_s)
            except rpc.AioRpcError as e:
                if e.code() == rpc.StatusCode.INVALID_ARGUMENT:  # too large, too many operations
                    if len(batch) > 1:
                        half = len(batch) // 2
                        await self._put(batch[:half])
                        batch = batch[half:]
                        continue
                    self._unordered(batch[0], f"the etcd cluster refused this write: {e.details()}")
                    return
                self._down(at_index, f"the etcd cluster cannot order writes ({at}: {_why(e)})")
                now = time.monotonic()
                for queued in batch:
                    if queued.deadline <= now:
                        self._unordered(queued, f"{self._trouble}; this write was not ordered within "
                                                f"{self.order_timeout_s:g} s and may still be: resend the same "
                                                "signed request to learn its outcome")
                batch = [q for q in batch if q.deadline > now]
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            self._up()
            created = False
            for queued, result in zip(batch, response.responses, strict=True):
                sub = result.response_txn
                if sub.succeeded:
                    created = True
                    continue
                kvs = sub.responses[0].response_range.kvs
                revision = kvs[0].mod_revision if kvs else response.header.revision
                if self._waiters is not None:
                    self._waiters.ordered_before(queued.proposal, etcd_codec.position(revision, etcd_codec.WHOLE))
            if created:
                self._put_revision = max(self._put_revision, response.header.revision)
            return

    def _down(self, at_index: int, reason: str) -> None:
        if self._put_at == at_index:
            self._put_at = at_index + 1
        self._trouble = reason
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("%s", reason)

    def _up(self) -> None:
        if self._down_since is not None:
            log.warning("the etcd cluster orders writes again")
        self._trouble = None
        self._down_since = None

    async def _prober(self) -> None:
        """While etcd is down, a linearizable read every half second tells when it is back."""
        while True:
            await asyncio.sleep(0.5)
            if self._down_since is None:
                continue
            at_index = self._put_at
            at = self.endpoints[at_index % len(self.endpoints)]
            try:
                await rpc.KVStub(self._channel(at)).Range(
                    rpc.RangeRequest(key=self.prefix, range_end=_end(self.prefix), count_only=True),
                    timeout=self.rpc_timeout_s)
            except rpc.AioRpcError as e:
                self._down(at_index, f"the etcd cluster cannot order writes ({at}: {_why(e)})")
                continue
            self._up()

    # -- ordering ---------------------------------------------------------------------

    async def _watcher(self) -> None:
        backoff = 0.05
        while True:
            at_index = self._watch_at
            at = self.endpoints[at_index % len(self.endpoints)]
            try:
                await self._watch(at)
            except Compacted as e:
                await self._catch_up(int(e.args[0]))
                continue
            except (rpc.AioRpcError, _Restart) as e:
                reason = _why(e) if isinstance(e, rpc.AioRpcError) else str(e)
                self._watch_trouble = f"the etcd watch is reconnecting ({at}: {reason})"
                log.warning("%s", self._watch_trouble)
                if self._watch_at == at_index:
                    self._watch_at = at_index + 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            except IntegrityError as e:
                self._fatal = e.message
                log.error("%s", self._fatal)
                return
            backoff = 0.05

    async def _watch(self, at: str) -> None:
        revision, count = self._position
        channel = self._channel(at)
        current = await rpc.KVStub(channel).Range(
            rpc.RangeRequest(key=self.prefix, range_end=_end(self.prefix), count_only=True),
            timeout=self.rpc_timeout_s)
        if current.header.revision < revision:
            raise IntegrityError(
                f"the etcd cluster at {at} is at revision {current.header.revision}, before this node's position "
                f"(revision {revision}): it is not the cluster that ordered this ledger")
        create = rpc.WatchCreateRequest(
            key=self.prefix, range_end=_end(self.prefix), start_revision=max(revision, 1),
            filters=[rpc.WatchCreateRequest.FilterType.NODELETE])
        stopped = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(create_request=create)
            await stopped.wait()

        call = rpc.WatchStub(channel).Watch(requests())
        stale = asyncio.Event()
        watchdog = asyncio.create_task(self._watchdog(call, stale))
        last_revision, index = revision, count
        try:
            async for response in _responses(call, stale):
                if response.compact_revision:
                    raise Compacted(response.compact_revision)
                if response.canceled:
                    raise _Restart(f"watch canceled: {response.cancel_reason or 'no reason given'}")
                self._watch_trouble = None
                self._seen_revision = max(self._seen_revision, response.header.revision)
                ordered: list[Ordered] = []
                for event in response.events:
                    kv = event.kv
                    if kv.mod_revision != last_revision:
                        last_revision, index = kv.mod_revision, 0
                    index += 1
                    if (last_revision, index) <= self._position:
                        continue  # applied (or handed out) already
                    self._position = (last_revision, index)
                    item = self._decoded(kv)
                    if item is not None:
                        proposal, proposed_ms = item
                        ordered.append(Ordered(proposal, proposed_ms, etcd_codec.position(last_revision, index)))
                if ordered:
                    with self._cond:
                        self._ordered.extend(ordered)
                        self._cond.notify()
                while len(self._ordered) > MAX_BUFFERED and not self._closed:
                    await asyncio.sleep(0.01)  # the pipeline is behind: let the stream wait
            raise _Restart("the watch stream ended")
        finally:
            stopped.set()
            watchdog.cancel()
            call.cancel()

    async def _catch_up(self, compacted: int) -> None:
        """Hand the pipeline a CatchUp (after whatever it still has to apply) and wait until it
        resumes the order, from a peer's head or, having found none, from where it was."""
        self._watch_trouble = (f"etcd's history was compacted at revision {compacted}, past this node's position "
                               f"(revision {self._position[0]}): catching up from a peer")
        log.warning("%s", self._watch_trouble)
        loop = asyncio.get_running_loop()
        resumed: asyncio.Future[bytes] = loop.create_future()
        try:
            self._records = await self._read_records()
        except rpc.AioRpcError:
            pass

        def resume(position: bytes) -> None:  # called on the pipeline thread
            def settle() -> None:
                if not resumed.done():
                    resumed.set_result(position)
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:  # the loop has stopped
                pass

        with self._cond:
            self._ordered.append(CatchUp(etcd_codec.position(compacted, 0), dict(self._records), resume))
            self._cond.notify()
        position = etcd_codec.parse_position(await resumed)
        if position > self._position:
            self._position = position
            log.warning("caught up from a peer: the etcd order goes on from revision %d", position[0])
        else:
            await asyncio.sleep(CATCH_UP_RETRY_S)

    # -- reporting and compaction ----------------------------------------------------

    async def _read_records(self) -> dict[str, bytes]:
        at = self.endpoints[self._put_at % len(self.endpoints)]
        response = await rpc.KVStub(self._channel(at)).Range(
            rpc.RangeRequest(key=self.nodes_prefix, range_end=_end(self.nodes_prefix)), timeout=self.rpc_timeout_s)
        found = {}
        for kv in response.kvs:
            name = bytes(kv.key[len(self.nodes_prefix):])
            try:
                found[name.decode()] = bytes(kv.value)
            except UnicodeDecodeError:
                continue
        return found

    async def _reporter(self) -> None:
        """Put this node's record when it changed, read everyone's, about every report_s seconds."""
        waiters = self._waiters
        assert waiters is not None
        last = b""
        while True:
            await asyncio.sleep(self.report_s)
            try:
                name, record = await asyncio.to_thread(waiters.report)
                if record != last:
                    at = self.endpoints[self._put_at % len(self.endpoints)]
                    await rpc.KVStub(self._channel(at)).Put(
                        rpc.PutRequest(key=etcd_codec.node_key(self.nodes_prefix, name), value=record),
                        timeout=self.rpc_timeout_s)
                    last = record
                self._records = await self._read_records()
                self._positions = await asyncio.to_thread(waiters.reported, self._records)
            except rpc.AioRpcError as e:
                log.debug("reporting to etcd failed: %s", _why(e))
            except Exception:  # a bug must not stop the reports for good
                log.exception("reporting to etcd failed")

    def compaction_target(self, current: int, positions: Mapping[str, bytes]) -> int:
        """The revision etcd may compact at: the lowest revision applied by the nodes that are
        within `retain` revisions of `current` (0: none)."""
        floor = current - self.retain
        kept = [r for r in (etcd_codec.parse_position(p)[0] for p in positions.values()) if r >= floor]
        return min(kept) if kept else 0

    async def _compactor(self) -> None:
        while True:
            await asyncio.sleep(self.compact_s)
            try:
                await self._compact()
            except rpc.AioRpcError as e:
                log.debug("compacting etcd failed: %s", _why(e))
            except Exception:
                log.exception("compacting etcd failed")

    async def _compact(self) -> None:
        """Delete the proposals every (kept) node has applied; compact the history below them."""
        positions = self._positions
        if not positions:
            return
        at = self.endpoints[self._put_at % len(self.endpoints)]
        kv = rpc.KVStub(self._channel(at))
        current = await kv.Range(rpc.RangeRequest(key=self.prefix, range_end=_end(self.prefix), count_only=True),
                                 timeout=self.rpc_timeout_s)
        target = self.compaction_target(current.header.revision, positions)
        if target <= self._compacted:
            return
        deleted = 0
        while True:
            below = await kv.Range(rpc.RangeRequest(key=self.prefix, range_end=_end(self.prefix), keys_only=True,
                                                    max_mod_revision=target - 1, limit=DELETE_TXN),
                                   timeout=self.rpc_timeout_s)
            if not below.kvs:
                break
            await kv.Txn(rpc.TxnRequest(success=[
                rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=item.key)) for item in below.kvs]),
                timeout=self.rpc_timeout_s)
            deleted += len(below.kvs)
        try:
            await kv.Compact(rpc.CompactionRequest(revision=target), timeout=self.rpc_timeout_s)
        except rpc.AioRpcError as e:
            if e.code() != rpc.StatusCode.OUT_OF_RANGE:  # compacted there or later already (by another node)
                raise
        self._compacted = target
        log.info("etcd compacted at revision %d (%d proposals deleted)", target, deleted)

    def _decoded(self, kv: Any) -> tuple[Proposal, int] | None:
        """The proposal a created key holds; None (skipped, on every node alike) for anything else."""
        if kv.version != 1:
            return None
        try:
            proposal, proposed_ms = etcd_codec.decode(kv.value)
        except IntegrityError as e:
            log.warning("skipping etcd key %r at revision %d: %s", kv.key[:80], kv.mod_revision, e.message)
            return None
        if etcd_codec.key(self.prefix, proposal) != kv.key:
            log.warning("skipping etcd key %r at revision %d: not its fingerprint", kv.key[:80], kv.mod_revision)
            return None
        return proposal, proposed_ms

    async def _watchdog(self, call: Any, stale: asyncio.Event) -> None:
        """A watch behind a revision our own puts reached, that has reported nothing new for
        3 s, is stale (its member may be cut off from the others): restart it elsewhere."""
        seen, since = self._seen_revision, time.monotonic()
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if self._seen_revision >= self._put_revision or self._seen_revision != seen:
                seen, since = self._seen_revision, now
            elif now - since > STALE_WATCH_S:
                log.warning("the etcd watch is behind this node's own puts: reconnecting")
                stale.set()
                call.cancel()
                return


async def _responses(call: Any, stale: asyncio.Event) -> AsyncIterator[Any]:
    """The watch call's responses; _Restart once the watchdog has cancelled it."""
    try:
        async for response in call:
            yield response
    except asyncio.CancelledError:
        if stale.is_set():
            raise _Restart("the watch fell behind this node's own puts") from None
        raise
    except rpc.AioRpcError as e:
        if stale.is_set():
            raise _Restart("the watch fell behind this node's own puts") from e
        raise


def _end(prefix: bytes) -> bytes:
    """The range end covering every key that starts with prefix."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _why(error: Any) -> str:
    try:
        return f"{error.code().name}: {error.details()}"
    except Exception:
        return repr(error)

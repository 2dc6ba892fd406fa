"""The write pipeline's seams: a Ledger driven by a sequencer that orders proposals as the test
chooses, and apply_batch's verdicts on that order (in-process, memory stores)."""

import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from signing import Signer

from ledger import etcd_codec, keys
from ledger.batch import Head, apply_batch
from ledger.config import LedgerConfig
from ledger.entry import SignedRequest, decode, encode
from ledger.errors import AuthError, UnknownReferenceError
from ledger.genesis import genesis_entry
from ledger.layout import POSITION_KEY
from ledger.merkle import leaf_hash
from ledger.proposal import Committed, Ordered, Proposal, Receipt
from ledger.service import Ledger
from ledger.state import catch_up
from ledger.store import MemoryStore


class ChosenOrder:
    """A sequencer that holds proposals until the test releases them, in the order it names."""

    def __init__(self) -> None:
        self.held: list[Proposal] = []
        self._released: list[list[Ordered]] = []
        self._cond = threading.Condition()
        self._closed = False

    def start(self, head: Head, waiters: Any) -> None:
        pass

    def trouble(self) -> str | None:
        return None

    def propose(self, proposal: Proposal) -> None:
        with self._cond:
            self.held.append(proposal)
            self._cond.notify_all()

    def wait_for(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.held) >= count, timeout=10)

    def release(self, order: list[int], duplicate: int | None = None) -> None:
        """Order the held proposals as `order` (indexes), one group; `duplicate` orders one twice,
        as if a second copy had reached the sequencer through another node."""
        group = [Ordered(self.held[i], int(time.time() * 1000)) for i in order]
        if duplicate is not None:
            group.append(Ordered(self.held[duplicate], int(time.time() * 1000)))
        with self._cond:
            self._released.append(group)
            self._cond.notify_all()

    def next_group(self, limit: int) -> list[Ordered] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._released or self._closed)
            return self._released.pop(0) if self._released else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _genesis(signer: Signer) -> tuple[bytes, Any]:
    public = keys.public_b64(load_pem_private_key(signer.key_pem, None))  # type: ignore[arg-type]
    members = [{"key_id": signer.key_id, "public_key": public, "roles": ["admin", "analytics", "viewer"]}]
    node = keys.new_private_key()
    genesis = genesis_entry("test/pipeline", keys.public_b64(node), members, 300, int(time.time() * 1000))
    return encode(genesis), node


def _outcome(future: "Future[Committed]") -> Committed | Exception:
    try:
        return future.result(timeout=10)
    except Exception as e:
        return e


def test_the_ledger_applies_what_its_sequencer_ordered_in_that_order() -> None:
    signer = Signer(keys.private_pem(keys.new_private_key()), "alice")
    genesis, node = _genesis(signer)
    sequencer = ChosenOrder()
    ledger = Ledger.in_memory(LedgerConfig(), genesis, node, sequencer=sequencer)
    try:
        problem = str(uuid.uuid4())
        add_problem = signer.sign("POST", "/problem", json={"uuid": problem, "workflow": str(uuid.uuid4()),
                                                              "test_dataset": [], "size_train_dataset": 1})
        add_data = signer.sign("POST", "/data", json={"uuid": str(uuid.uuid4()), "problems": problem})
        second_problem = signer.sign("POST", "/problem", json={"uuid": str(uuid.uuid4()), "workflow":
                                                                 str(uuid.uuid4()), "test_dataset": [],
                                                                 "size_train_dataset": 1})
        futures = [ledger.write(r) for r in (add_problem, add_data, second_problem)]
        sequencer.wait_for(3)
        # The data comes first: its problem does not exist yet, so it is refused; the problems
        # are accepted in the chosen order; the second problem's copy ordered again is answered
        # with its first outcome and appends nothing.
        sequencer.release([1, 2, 0], duplicate=2)
        data, second, first = (_outcome(f) for f in (futures[1], futures[2], futures[0]))
        assert isinstance(data, UnknownReferenceError), data
        assert isinstance(second, Committed) and second.receipt.seq == 1
        assert isinstance(first, Committed) and first.receipt.seq == 2
        assert ledger.head()[0] == 3
        logged = [decode(raw) for _, raw in ledger.entries(0, 3)]
        assert [e.request.path if e.request else None for e in logged] == [None, "/problem", "/problem"]
        assert logged[1].request is not None and logged[1].request.body == second_problem.body
    finally:
        ledger.close()
    # Replay of that log from scratch reaches the same digest.
    assert catch_up(ledger.log, MemoryStore()).digest == ledger.head()[1]


class SharedOrder(ChosenOrder):
    """Orders as etcd does for several nodes: each proposal at a revision of its own, and a copy
    of one ordered already (through this node or another) is not ordered again: the ledger is
    told the revision of the first, as a whole (etcd says where the key is, not its place in
    its transaction)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: Any = None
        self.revisions: dict[bytes, int] = {}

    def start(self, head: Head, waiters: Any) -> None:
        self.waiters = waiters

    def propose(self, proposal: Proposal) -> None:
        revision = self.revisions.get(proposal.fingerprint)
        if revision is not None:
            self.waiters.ordered_before(proposal, etcd_codec.position(revision, etcd_codec.WHOLE))
            return
        super().propose(proposal)

    def order_from_another_node(self, proposal: Proposal) -> None:
        revision = self.revisions[proposal.fingerprint] = len(self.revisions) + 2
        with self._cond:
            self._released.append([Ordered(proposal, int(time.time() * 1000), etcd_codec.position(revision, 1))])
            self._cond.notify_all()


def test_a_write_resent_to_a_node_that_applied_the_copy_another_node_ordered_gets_its_answer() -> None:
    signer = Signer(keys.private_pem(keys.new_private_key()), "alice")
    genesis, node = _genesis(signer)
    sequencer = SharedOrder()
    ledger = Ledger.in_memory(LedgerConfig(), genesis, node, sequencer=sequencer)
    try:
        problem = str(uuid.uuid4())
        accepted = signer.sign("POST", "/problem", json={"uuid": problem, "workflow": str(uuid.uuid4()),
                                                          "test_dataset": [], "size_train_dataset": 1})
        refused = signer.sign("POST", "/data", json={"uuid": str(uuid.uuid4()), "problems": str(uuid.uuid4())})
        for request in (refused, accepted):
            sequencer.order_from_another_node(_proposal(request, "alice"))
        deadline = time.monotonic() + 10
        while ledger.head()[0] < 2:  # this node applied both (the refused one appends nothing)
            assert time.monotonic() < deadline, "the ordered copies were not applied"
            time.sleep(0.01)
        # Nothing comes after them in the order: the answers must not wait for more writes.
        answer = _outcome(ledger.write(accepted))
        assert isinstance(answer, Committed), answer
        assert answer.status == 201
        assert answer.receipt == Receipt(1, leaf_hash(ledger.entry(1)).hex())
        try:  # its refusal, at once (remembered with its nonce) or through the future
            again: Committed | Exception = _outcome(ledger.write(refused))
        except UnknownReferenceError as e:
            again = e
        assert isinstance(again, UnknownReferenceError), again
        assert ledger.head()[0] == 2
    finally:
        ledger.close()


def _proposal(request: SignedRequest, key_id: str) -> Proposal:
    from ledger import httpsig

    params = httpsig.signature_params(request)
    return Proposal(request, key_id, params.nonce, params.fingerprint)


def test_apply_batch_is_pure_and_dedupes_exact_resends() -> None:
    signer = Signer(keys.private_pem(keys.new_private_key()), "alice")
    genesis, _ = _genesis(signer)
    state = MemoryStore()
    head = apply_batch(state, Head(), [decode(genesis)]).after
    state.write(apply_batch(state, Head(), [decode(genesis)]).state_writes(), sync=False)
    request = signer.sign("POST", "/problem", json={"uuid": str(uuid.uuid4()), "workflow": str(uuid.uuid4()),
                                                     "test_dataset": [], "size_train_dataset": 1})
    proposal = _proposal(request, "alice")
    now = int(time.time() * 1000)
    before = list(state.scan(b""))
    batch = apply_batch(state, head, [Ordered(proposal, now), Ordered(proposal, now + 5)])
    again = apply_batch(state, head, [Ordered(proposal, now), Ordered(proposal, now + 5)])
    assert list(state.scan(b"")) == before  # nothing written: the caller persists the batch
    assert (batch.raws, batch.writes, batch.after) == (again.raws, again.writes, again.after)
    first, resent = batch.outcomes
    assert isinstance(first, Committed) and isinstance(resent, Committed)
    assert len(batch.raws) == 1 and resent.resent and resent.receipt == first.receipt
    assert batch.after.size == head.size + 1 and batch.after.time_ms >= head.time_ms


def test_a_proposal_more_than_the_window_behind_the_ledger_time_is_refused_and_positions_carry() -> None:
    signer = Signer(keys.private_pem(keys.new_private_key()), "alice")
    genesis, _ = _genesis(signer)
    state = MemoryStore()
    first_batch = apply_batch(state, Head(), [decode(genesis)])
    state.write(first_batch.state_writes(), sync=False)
    head = first_batch.after

    def problem() -> Proposal:
        return _proposal(signer.sign("POST", "/problem", json={"uuid": str(uuid.uuid4()), "workflow":
                                                                str(uuid.uuid4()), "test_dataset": [],
                                                                "size_train_dataset": 1}), "alice")

    now = int(time.time() * 1000)
    window_ms = 300 * 1000
    batch = apply_batch(state, head, [
        Ordered(problem(), now + 60_000, b"p1"),  # a clock a minute ahead moves ledger time
        Ordered(problem(), now + 60_000 - window_ms, b"p2"),  # exactly the window behind: accepted
        Ordered(problem(), now + 60_000 - window_ms - 1, b"p3"),  # one ms more: refused
    ])
    first, second, third = batch.outcomes
    assert isinstance(first, Committed) and isinstance(second, Committed)
    assert isinstance(third, AuthError) and third.reason == "clock" and "behind" in third.message
    assert len(batch.raws) == 2 and batch.after.time_ms == now + 60_000
    assert batch.after.position == b"p3"  # a refusal still moves the position
    assert batch.after.meta_writes()[POSITION_KEY] == b"p3"


def test_the_local_sequencer_never_stamps_behind_the_head_it_starts_from() -> None:
    from ledger.sequencer import LocalSequencer

    clock_s = [1000.0]
    sequencer = LocalSequencer(lambda: clock_s[0])
    sequencer.start(Head(time_ms=5_000_000), None)  # type: ignore[arg-type]
    proposal = Proposal(SignedRequest("POST", "http://x/problem", {}, b"{}"), "alice", "n", b"f")
    sequencer.propose(proposal)
    group = sequencer.next_group(10)
    assert group is not None and group[0].proposed_ms == 5_000_000  # the clock read 1,000,000
    clock_s[0] = 6000.0
    sequencer.propose(proposal)
    group = sequencer.next_group(10)
    assert group is not None and group[0].proposed_ms == 6_000_000
    clock_s[0] = 10.0  # set back: the groups keep the latest time
    sequencer.propose(proposal)
    group = sequencer.next_group(10)
    assert group is not None and group[0].proposed_ms == 6_000_000


def test_catch_up_resumes_from_the_later_of_the_log_and_state_positions() -> None:
    from ledger.log import Log

    signer = Signer(keys.private_pem(keys.new_private_key()), "alice")
    genesis, _ = _genesis(signer)
    log = Log(MemoryStore())
    log.append(0, [genesis])
    state = MemoryStore()
    head = catch_up(log, state)
    proposal = _proposal(signer.sign("POST", "/problem", json={"uuid": str(uuid.uuid4()), "workflow":
                                                                str(uuid.uuid4()), "test_dataset": [],
                                                                "size_train_dataset": 1}), "alice")
    batch = apply_batch(state, head, [Ordered(proposal, int(time.time() * 1000), b"r2")])
    log.commit(log.prepare(batch.before.size, batch.raws, batch.after.position)[0])
    # The state write of that batch was lost: the log's position is the one to resume from.
    assert catch_up(log, state).position == b"r2"
    # A later group that only refused moved the position in state alone: state's is the later one.
    state.write({POSITION_KEY: b"r3"}, sync=False)
    assert catch_up(log, state).position == b"r3"

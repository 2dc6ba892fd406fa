"""The write pipeline's seams: a Ledger driven by a sequencer that orders proposals as the test
chooses, and apply_batch's verdicts on that order (in-process, memory stores)."""

import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from signing import Signer

from ledger import keys
from ledger.batch import Head, apply_batch
from ledger.config import LedgerConfig
from ledger.entry import SignedRequest, decode, encode
from ledger.errors import UnknownReferenceError
from ledger.genesis import genesis_entry
from ledger.proposal import Committed, Ordered, Proposal
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

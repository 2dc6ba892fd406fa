"""EtcdSequencer against three real etcd members on loopback, with in-process ledgers over memory
stores sharing one genesis: the order comes from etcd, each ledger applies it itself."""

import time
import uuid
from concurrent.futures import Future

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from etcd_cluster import Etcd, etcd  # noqa: F401 (the fixture)
from signing import Signer

from ledger import keys
from ledger.config import LedgerConfig
from ledger.entry import SignedRequest, encode
from ledger.errors import OrderingError
from ledger.etcd_sequencer import EtcdSequencer
from ledger.genesis import genesis_entry
from ledger.proposal import Committed
from ledger.service import Ledger
from ledger.store import MemoryStore


def _genesis(signer: Signer) -> tuple[bytes, object]:
    public = keys.public_b64(load_pem_private_key(signer.key_pem, None))  # type: ignore[arg-type]
    node = keys.new_private_key()
    members = [{"key_id": signer.key_id, "public_key": public, "roles": ["admin"]}]
    genesis = genesis_entry("test/etcd", keys.public_b64(node), members, 300, int(time.time() * 1000))
    return encode(genesis), node


def _problem(signer: Signer) -> SignedRequest:
    return signer.sign("POST", "/problem", json={"uuid": str(uuid.uuid4()), "workflow": str(uuid.uuid4()),
                                                 "test_dataset": [], "size_train_dataset": 1})


def _level(ledgers: list[Ledger], timeout_s: float = 20) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        heads = {ledger.head() for ledger in ledgers}
        if len(heads) == 1:
            return heads.pop()
        time.sleep(0.05)
    raise AssertionError(f"the ledgers did not reach the same head: {[ledger.head() for ledger in ledgers]}")


def _results(futures: list["Future[Committed]"]) -> list[Committed]:
    return [future.result(timeout=30) for future in futures]


def test_two_ledgers_apply_the_same_order_and_a_resend_through_the_other_gets_the_first_outcome(
    etcd: Etcd,  # noqa: F811
) -> None:
    signer = Signer(keys.private_pem(keys.new_private_key()), "alice")
    genesis, node = _genesis(signer)
    a = Ledger.in_memory(LedgerConfig(), genesis, node, sequencer=EtcdSequencer(etcd.urls))
    b = Ledger.in_memory(LedgerConfig(), genesis, node, sequencer=EtcdSequencer(etcd.urls[::-1]))
    try:
        requests = [_problem(signer) for _ in range(120)]
        futures = [(a, b)[i % 2].write(request) for i, request in enumerate(requests)]
        results = _results(futures)
        again = _results([b.write(requests[0]), a.write(requests[1])])  # each through the other node
        assert [r.receipt for r in again] == [results[0].receipt, results[1].receipt]
        assert [r.body for r in again] == [results[0].body, results[1].body]
        size, digest = _level([a, b])
        assert size == 121 and sorted(r.receipt.seq for r in results) == list(range(1, 121))
        assert a.entries(0, size) == b.entries(0, size)
        # The same signed write sent to both at once: one entry, the same answer on both.
        twice = _problem(signer)
        both = _results([a.write(twice), b.write(twice)])
        assert both[0].receipt == both[1].receipt and both[0].body == both[1].body
        assert _level([a, b])[0] == 122
    finally:
        a.close()
        b.close()


def test_a_ledger_reopened_resumes_from_its_position_without_applying_twice(etcd: Etcd) -> None:  # noqa: F811
    signer = Signer(keys.private_pem(keys.new_private_key()), "alice")
    genesis, node = _genesis(signer)
    a = Ledger.in_memory(LedgerConfig(), genesis, node, sequencer=EtcdSequencer(etcd.urls))
    b = Ledger.in_memory(LedgerConfig(), genesis, node, sequencer=EtcdSequencer(etcd.urls))
    try:
        _results([a.write(_problem(signer)) for _ in range(20)])
        _level([a, b])
        a_log, a_state = a.log.store, a.state
        a.close()
        # b goes on alone, a write that a refuses is ordered too (an unknown key id would not be
        # proposed at all; a duplicate problem uuid is refused in apply).
        body = {"uuid": str(uuid.uuid4()), "workflow": str(uuid.uuid4()), "test_dataset": [], "size_train_dataset": 1}
        _results([b.write(signer.sign("POST", "/problem", json=body))])
        with pytest.raises(Exception, match="already exists"):
            b.write(signer.sign("POST", "/problem", json=body)).result(timeout=30)
        _results([b.write(_problem(signer)) for _ in range(10)])
        assert isinstance(a_log, MemoryStore) and isinstance(a_state, MemoryStore)
        a = Ledger(LedgerConfig(), a_log, a_state, node_key=node, nonce_store=MemoryStore(),  # type: ignore[arg-type]
                   sequencer=EtcdSequencer(etcd.urls)).start()
        size, _ = _level([a, b])
        assert size == 1 + 20 + 1 + 10
        assert a.entries(0, size) == b.entries(0, size)
    finally:
        a.close()
        b.close()


def test_without_etcd_writes_are_refused_with_503_and_the_reason_is_told(etcd: Etcd) -> None:  # noqa: F811
    signer = Signer(keys.private_pem(keys.new_private_key()), "alice")
    genesis, node = _genesis(signer)
    a = Ledger.in_memory(LedgerConfig(), genesis, node,
                         sequencer=EtcdSequencer(etcd.urls, order_timeout_s=1.0, rpc_timeout_s=0.5))
    try:
        _results([a.write(_problem(signer))])
        assert a.order_trouble() is None
        etcd.stop_all()
        with pytest.raises(OrderingError, match="may still be"):
            a.write(_problem(signer)).result(timeout=30)
        trouble = a.order_trouble()
        assert trouble is not None and "etcd" in trouble
        with pytest.raises(OrderingError, match="etcd cluster cannot order writes"):
            a.write(_problem(signer))  # refused at once now: etcd has been gone longer than the timeout
        assert a.head()[0] == 2 and a.members()  # reads go on
        etcd.start_all()
        deadline = time.monotonic() + 30
        while a.order_trouble() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert a.order_trouble() is None
        assert _results([a.write(_problem(signer))])[0].receipt.seq >= 2
    finally:
        a.close()

"""The writer's failure paths, in-process over memory stores: nothing acknowledged is lost,
nothing rejected is half-written, and state always catches up with the log."""

import time
import uuid

import pytest
from signing import Signer

from ledger import keys
from ledger.config import LedgerConfig
from ledger.entry import encode
from ledger.errors import ConflictError, StorageError
from ledger.genesis import genesis_entry
from ledger.sequencer import LocalSequencer
from ledger.service import Ledger
from ledger.state import read_meta
from ledger.store import MemoryStore

ROLES = ["admin", "analytics", "compute", "viewer"]


@pytest.fixture
def signer() -> Signer:
    return Signer(keys.private_pem(keys.new_private_key()), "alice")


def _ledger(signer: Signer, clock=time.time) -> Ledger:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    public = keys.public_b64(load_pem_private_key(signer.key_pem, None))  # type: ignore[arg-type]
    members = [{"key_id": "alice", "public_key": public, "roles": ROLES}]
    node = keys.new_private_key()
    genesis = genesis_entry("test/ledger", keys.public_b64(node), members, 300, int(clock() * 1000))
    return Ledger.in_memory(LedgerConfig(), encode(genesis), node, clock=clock)


def _problem_request(signer: Signer, problem: str | None = None):
    body = {"uuid": problem or str(uuid.uuid4()), "workflow": str(uuid.uuid4()), "test_dataset": [],
            "size_train_dataset": 1}
    return signer.sign("POST", "/problem", json=body)


def _write(ledger: Ledger, request):
    return ledger.write(request).result(timeout=10)


def test_state_write_failure_keeps_the_entry_and_state_catches_up(signer: Signer) -> None:
    ledger = _ledger(signer)
    state: MemoryStore = ledger.state  # type: ignore[assignment]
    state.fail_writes = OSError("disk full")
    committed = _write(ledger, _problem_request(signer))
    assert committed.receipt.seq == 1  # durable in the log: acknowledged
    assert read_meta(state).applied == 1  # state lags behind the log
    state.fail_writes = None
    _write(ledger, _problem_request(signer))  # the next group catches state up first
    assert read_meta(state).applied == 3
    assert ledger.head()[0] == 3
    problem = committed.body["new_problem"]["uuid"]
    assert ledger.document("problem", problem)


def test_log_write_failure_rejects_and_changes_nothing(signer: Signer) -> None:
    ledger = _ledger(signer)
    log_store: MemoryStore = ledger.log.store  # type: ignore[assignment]
    size, digest = ledger.head()
    log_store.fail_writes = OSError("I/O error")
    request = _problem_request(signer)
    with pytest.raises(StorageError):
        _write(ledger, request)
    assert ledger.head() == (size, digest) and ledger.log.size() == size
    assert read_meta(ledger.state).applied == size
    log_store.fail_writes = None
    # The same signed request goes through once the disk is back: nothing of it was recorded.
    assert _write(ledger, request).receipt.seq == size


def test_restart_after_crash_between_log_and_state_loses_nothing(signer: Signer) -> None:
    ledger = _ledger(signer)
    state: MemoryStore = ledger.state  # type: ignore[assignment]
    state.fail_writes = OSError("crash before the state write")
    committed = _write(ledger, _problem_request(signer))
    ledger.sequencer.close()
    state.fail_writes = None
    reopened = Ledger(LedgerConfig(), ledger.log.store, state, node_key=ledger.node_key, sequencer=LocalSequencer())
    assert reopened.head() == ledger.head()
    assert reopened.document("problem", committed.body["new_problem"]["uuid"])


def test_rejection_in_a_group_does_not_disturb_the_others(signer: Signer) -> None:
    ledger = _ledger(signer)
    problem = str(uuid.uuid4())
    requests = [_problem_request(signer, problem) for _ in range(5)]
    futures = [ledger.write(r) for r in requests]
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result(timeout=10).receipt.seq)
        except ConflictError as e:
            outcomes.append(e.message)
    assert outcomes[0] == 1
    assert all(f"problem {problem} already exists" == o for o in outcomes[1:])
    assert ledger.head()[0] == 2

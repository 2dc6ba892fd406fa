"""A node clock stepped forward and then corrected does not freeze the ledger (in-process,
through the HTTP app, with the node's clock under the test's control)."""

import time
import uuid

import falcon.testing
from signing import Signer

from api.app import create_app
from ledger import keys
from ledger.config import LedgerConfig
from ledger.entry import decode, encode
from ledger.genesis import genesis_entry
from ledger.service import Ledger
from ledger.store import MemoryStore
from ledger.verify import verify

DAY = 86400


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _problem(client: falcon.testing.TestClient, signer: Signer, created: float) -> falcon.testing.Result:
    body = {"uuid": str(uuid.uuid4()), "workflow": str(uuid.uuid4()), "test_dataset": [], "size_train_dataset": 1}
    signed = signer.sign("POST", "/problem", json=body, created=created)
    return client.simulate_post("/problem", body=signed.body, headers=signed.headers, host="ledger.test")


def test_writes_resume_once_a_clock_stepped_forward_is_set_back() -> None:
    signer = Signer(keys.private_pem(keys.new_private_key()), "alice")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    public = keys.public_b64(load_pem_private_key(signer.key_pem, None))  # type: ignore[arg-type]
    node = keys.new_private_key()
    genesis = genesis_entry("test/clock", keys.public_b64(node), [{"key_id": "alice", "public_key": public,
                                                                   "roles": ["admin"]}], 300, int(time.time() * 1000))
    clock = Clock()
    ledger = Ledger.in_memory(LedgerConfig(), encode(genesis), node, clock=clock)
    client = falcon.testing.TestClient(create_app(ledger))
    try:
        assert _problem(client, signer, time.time()).status_code == 201
        clock.offset = DAY  # the node's clock jumps a day ahead, and so does its client's
        ahead = _problem(client, signer, time.time() + DAY)
        assert ahead.status_code == 201, ahead.text
        clock.offset = 0  # corrected: fresh signatures carry the right time again
        for _ in range(3):
            fresh = _problem(client, signer, time.time())
            assert fresh.status_code == 201, fresh.text
        # Times in the log never go back: the entries after the correction keep the latest time.
        times = [decode(raw).time_ms for _, raw in ledger.entries(0, ledger.head()[0])]
        assert times == sorted(times) and times[-1] == times[2] >= (time.time() + DAY - 60) * 1000
        # A signature created more than the window before the node's clock is still refused.
        stale = _problem(client, signer, time.time() - 400)
        assert stale.status_code == 401 and "ago" in stale.json["description"]
        size = ledger.head()[0]
    finally:
        ledger.close()
    # Replay and verification agree with what the live run decided.
    log_store, state = ledger.log.store, ledger.state
    assert isinstance(log_store, MemoryStore) and isinstance(state, MemoryStore)
    report = verify(_Source(ledger))
    assert report.entries == size == 6


class _Source:
    """The closed in-memory ledger as a verification source."""

    live = False

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def checkpoint(self) -> str:
        return self.ledger.checkpoint()

    def stored_leaf(self, seq: int) -> bytes | None:
        return None

    def raws(self, start: int, end: int):  # type: ignore[no-untyped-def]
        return self.ledger.log.raws(start, end)

    def size(self) -> int:
        return self.ledger.log.size()

    def stored_nodes(self) -> None:
        return None

    def state(self) -> None:
        return None

    def consistency(self, first: int, second: int) -> list[bytes]:
        return self.ledger.log.tree().consistency(first, second)

    def kept_checkpoint(self) -> None:
        return None

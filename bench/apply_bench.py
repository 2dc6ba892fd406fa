"""apply µs per entry, by write kind: the state machine, its state writes and the digest.

A ledger is built in-process in phases, one write kind per phase (each phase a contiguous range
of the log): registered keys, problems, data, algos, claims, learndone, predictions, claims and
preddone, then data again (now extending an algo's chain). Each write is the typical small one:

- /nodes: a new key with one role; /problem: one test data, train batches of 1;
- /data: one uuid for one problem (first with no algo: no learnuplet; then with one algo: one);
- /algo: one algo for a problem with one train data (one learnuplet);
- /worker, /learndone (done, with perfs), /prediction (one data), /preddone (done).

Then the log is replayed into a fresh LevelDB state as `replay` does (apply_batch over chunks,
each chunk's state written in one batch), timing each phase apart: apply, digest, leaf hash
and the state write, per entry. The ceiling measured in the same run is reading and decoding
the same entries (what catch-up does before applying). Each figure is the best of a few rounds.
"""

import base64
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
import orjson
from common import Row, init, new_uuid, signed_request

from ledger.batch import Head, apply_batch
from ledger.config import LedgerConfig
from ledger.entry import decode
from ledger.log import Log
from ledger.service import Ledger
from ledger.state import CHUNK
from ledger.store import LevelStore


@dataclass
class Phase:
    kind: str
    start: int
    end: int


def _submit(ledger: Ledger, requests_: list) -> None:
    futures = [ledger.write(request) for request in requests_]
    for future in futures:
        future.result()


def build_workflow(n: int) -> tuple[Path, list[Phase]]:
    """A ledger of about 10n entries in phases of n of one kind each; its dir and the phases."""
    data = Path(tempfile.mkdtemp(prefix="bench-apply-")) / "data"
    init(data)
    key = (data / "keys" / "admin.pem").read_bytes()
    ledger = Ledger.open(LedgerConfig(data_dir=data))
    phases: list[Phase] = []

    def phase(kind: str, requests_: list) -> None:
        start = ledger.head()[0]
        for i in range(0, len(requests_), 500):
            _submit(ledger, requests_[i : i + 500])
        phases.append(Phase(kind, start, ledger.head()[0]))

    def post(path: str, body: object) -> object:
        return signed_request(key, "admin", "POST", path, body)

    try:
        nodes = []
        for i in range(n):
            public = base64.b64encode(bytes(nacl.signing.SigningKey.generate().verify_key)).decode()
            nodes.append(post("/nodes", {"key_id": f"node-{i}", "public_key": public, "roles": ["viewer"]}))
        phase("/nodes", nodes)
        problems = [new_uuid() for _ in range(n)]
        tests = [new_uuid() for _ in range(n)]
        workflow = new_uuid()
        phase("/problem", [
            post("/problem", {"uuid": p, "workflow": workflow, "test_dataset": [t], "size_train_dataset": 1})
            for p, t in zip(problems, tests, strict=True)
        ])
        phase("/data", [post("/data", {"uuid": new_uuid(), "problems": p}) for p in problems])
        algos = [new_uuid() for _ in range(n)]
        phase("/algo", [
            post("/algo", {"uuid": a, "name": "logistic-regression", "problem": p})
            for a, p in zip(algos, problems, strict=True)
        ])
        learn = [ledger.find("learnuplet", {"algo": a}, limit=1, after=None).documents[0] for a in algos]
        learn_docs = [orjson.loads(raw) for raw in learn]
        worker = new_uuid()
        phase("/worker", [post(f"/worker/learnuplet/{doc['uuid']}", {"worker": worker}) for doc in learn_docs])
        phase("/learndone", [
            post(f"/learndone/{doc['uuid']}", {"status": "done", "perf": 0.5 + i / (4 * n), "train_perf": [0.9],
                                               "test_perf": [0.8]})
            for i, doc in enumerate(learn_docs)
        ])
        phase("/prediction", [post("/prediction", {"data": [new_uuid()], "problem": p}) for p in problems])
        preds = [
            orjson.loads(ledger.find("preduplet", {"problem": p}, limit=1, after=None).documents[0]) for p in problems
        ]
        phase("/worker", [post(f"/worker/preduplet/{doc['uuid']}", {"worker": worker}) for doc in preds])
        phase("/preddone", [
            post(f"/preddone/{doc['uuid']}", {"status": "done", "prediction_storage_uuid": new_uuid()})
            for doc in preds
        ])
        phase("/data, extending a chain", [post("/data", {"uuid": new_uuid(), "problems": p}) for p in problems])
    finally:
        ledger.close()
    return data, phases


def measure(data: Path, phases: list[Phase]) -> dict[str, tuple[float, float, int]]:
    """Per kind: (apply µs per entry, read+decode µs per entry, entries), replaying into a fresh state."""
    config = LedgerConfig(data_dir=data)
    log_store = LevelStore(config.log_dir, create=False)
    state = LevelStore(Path(tempfile.mkdtemp(prefix="bench-apply-state-")))
    log = Log(log_store)
    totals: dict[str, list[float]] = {}
    try:
        head = Head()
        genesis = [decode(log.raw(0))]
        batch = apply_batch(state, head, genesis)
        state.write(batch.state_writes(), sync=False)
        head = batch.after
        for phase in phases:
            assert phase.start == head.size, (phase, head.size)
            started = time.perf_counter()
            entries = [decode(raw) for _, raw in log.raws(phase.start, phase.end)]
            decoded = time.perf_counter() - started
            applied = 0.0
            for i in range(0, len(entries), CHUNK):
                started = time.perf_counter()
                batch = apply_batch(state, head, entries[i : i + CHUNK])
                state.write(batch.state_writes(), sync=False)
                applied += time.perf_counter() - started
                head = batch.after
            total = totals.setdefault(phase.kind, [0.0, 0.0, 0])
            total[0] += applied
            total[1] += decoded
            total[2] += len(entries)
    finally:
        state.close()
        log_store.close()
    return {kind: (t[0] / t[2] * 1e6, t[1] / t[2] * 1e6, int(t[2])) for kind, t in totals.items()}


def apply_rows(n: int, rounds: int = 5) -> list[Row]:
    """One row per write kind: the best over rounds of the per-entry apply time, beside read+decode's.

    Best, not median: these are CPU-bound loops of tens of milliseconds on a shared machine, where
    other processes only ever add time (as timeit takes its minimum)."""
    data, phases = build_workflow(n)
    runs = [measure(data, phases) for _ in range(rounds)]
    rows = []
    for kind in runs[0]:
        applied = min(run[kind][0] for run in runs)
        decoded = min(run[kind][1] for run in runs)
        rows.append(Row(f"apply µs per entry ({kind})", applied, decoded, "us", "<= 100 us (ceiling: read+decode)"))
    return rows


"""Crashes: SIGKILL at random moments, of the server under concurrent write load and of
`orchestrator replay`, and what must hold after each.

After every kill of the server and its restart:
- every write that was acknowledged (2xx with a receipt) is there: its receipt's log entry is
  that very request (key, path, body), and its documents are in state with the right fields;
- the log holds nothing else than acknowledged writes and writes that were in flight at the kill;
- nothing unacknowledged is half-present: a /data write of several uuids is wholly there or
  wholly absent, and every learnuplet chain is consistent (ranks, statuses, model_start, and
  the train data it covers equals the problem's registered train data, in order);
- after a clean stop, `orchestrator verify --data-dir` passes and a replay into fresh state
  gives the state digest GET /ledger/head reported.

After every kill of `orchestrator replay`: replaying again, or starting the server, gives the
same state and digest as before, and verify passes.

A regression test also covers restarts themselves: the serve command must not open LevelDB
before gunicorn forks its worker, or the worker's LevelDB never compacts and its writes stall
for good after a few restarts.

    ORCHESTRATOR_FULL=1 python -m pytest -q -s tests/reliability/test_crash.py
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from conftest import report, scale
from ledger_checks import (
    Server,
    entry_body,
    entry_path,
    free_port,
    init_ledger,
    log_entries,
    new_uuid,
    replay,
    stop_verify_replay,
    verify,
)

FINISHED = ("done", "failed")
SEED = int(os.environ.get("ORCHESTRATOR_SEED", time.time_ns() % 1_000_000))


def _key(key_id: str, path: str, body: Any) -> tuple[str, str, str]:
    return key_id, path, json.dumps(body, sort_keys=True)


@dataclass
class Record:
    """What the load sent and what it was told, across every round."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[int, tuple[str, str, Any]] = field(default_factory=dict)  # receipt seq -> (key, path, body)
    in_flight: list[tuple[str, str, Any]] = field(default_factory=list)  # no answer: the kill came first
    errors: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    problems: dict[str, dict] = field(default_factory=dict)
    algos: dict[str, str] = field(default_factory=dict)  # algo -> problem
    datas: list[tuple[list[str], str]] = field(default_factory=list)
    claims: dict[str, str] = field(default_factory=dict)  # uplet -> worker
    learned: dict[str, dict] = field(default_factory=dict)  # learnuplet -> reported body
    predicted: dict[str, str] = field(default_factory=dict)  # preduplet -> prediction_storage_uuid
    trained: set[str] = field(default_factory=set)  # problems with a done learnuplet
    round_in_flight: int = 0
    round_acked: int = 0


class Load:
    """Several threads writing problems, data, algos, claims, reports and predictions until the kill."""

    def __init__(self, server: Any, record: Record, rng: random.Random) -> None:
        self.server, self.record, self.rng = server, record, rng
        self.killed = threading.Event()

    def post(self, client: Any, path: str, body: Any, allowed: tuple[int, ...] = ()) -> Any:
        """POST; the answer's JSON when acknowledged, None otherwise. Raises _Stop once killed."""
        try:
            response = client.post(path, body)
        except requests.RequestException as e:
            with self.record.lock:
                if self.killed.is_set():
                    self.record.in_flight.append((client.key_id, path, body))
                    self.record.round_in_flight += 1
                else:
                    self.record.errors.append(f"POST {path}: {e!r}")
            raise _Stop from e
        with self.record.lock:
            self.record.statuses[(path.split("/")[1], response.status_code)] += 1
            if 200 <= response.status_code < 300:
                seq = response.json()["receipt"]["seq"]
                if seq in self.record.acked:
                    self.record.errors.append(f"two acknowledged writes share receipt seq {seq}")
                self.record.acked[seq] = (client.key_id, path, body)
                self.record.round_acked += 1
                return response.json()
            if response.status_code not in allowed:
                self.record.errors.append(f"POST {path} {json.dumps(body)}: {response.status_code} {response.text}")
                raise _Stop
        return None

    def get(self, client: Any, path: str, **params: str) -> Any:
        try:
            response = client.get(path, **params)
        except requests.RequestException as e:
            if not self.killed.is_set():
                with self.record.lock:
                    self.record.errors.append(f"GET {path}: {e!r}")
            raise _Stop from e
        if response.status_code != 200:
            with self.record.lock:
                self.record.errors.append(f"GET {path}: {response.status_code} {response.text}")
            raise _Stop
        return response.json()

    # -- the writers ------------------------------------------------------------------------

    def problems(self) -> None:
        admin = self.server.client("admin")
        while not self.killed.is_set():
            uuid, test = new_uuid(), [new_uuid()]
            body = {"uuid": uuid, "workflow": new_uuid(), "test_dataset": test, "size_train_dataset": 2}
            if self.post(admin, "/problem", body) is not None:
                with self.record.lock:
                    self.record.problems[uuid] = body
                # Its test data: registered for it, excluded from its training.
                if self.post(self.server.client("viewer"), "/data", {"uuid": test, "problems": uuid}) is not None:
                    with self.record.lock:
                        self.record.datas.append((test, uuid))
            time.sleep(self.rng.uniform(0.05, 0.3))

    def recent_problem(self) -> str | None:
        with self.record.lock:
            known = list(self.record.problems)[-6:]
        return self.rng.choice(known) if known else None

    def data(self) -> None:
        viewer = self.server.client("viewer")
        while not self.killed.is_set():
            problem = self.recent_problem()
            if problem is None:
                time.sleep(0.02)
                continue
            uuids = [new_uuid() for _ in range(3)]
            if self.post(viewer, "/data", {"uuid": uuids, "problems": problem}) is not None:
                with self.record.lock:
                    self.record.datas.append((uuids, problem))

    def algos(self) -> None:
        analytics = self.server.client("analytics")
        while not self.killed.is_set():
            with self.record.lock:
                counts = Counter(self.record.algos.values())
                open_problems = [p for p in list(self.record.problems)[-6:] if counts[p] < 2]
            if not open_problems:
                time.sleep(0.05)
                continue
            problem, uuid = self.rng.choice(open_problems), new_uuid()
            if self.post(analytics, "/algo", {"uuid": uuid, "name": "crash", "problem": problem}) is not None:
                with self.record.lock:
                    self.record.algos[uuid] = problem
            time.sleep(self.rng.uniform(0.02, 0.2))

    def compute(self, key_id: str) -> Callable[[], None]:
        def run() -> None:
            client = self.server.client(key_id)
            while not self.killed.is_set():
                worked = False
                for uplet in self.get(client, "/learnuplet", status="todo", limit="10")["learnuplets"]:
                    worker = new_uuid()
                    if self.post(client, f"/worker/learnuplet/{uplet['uuid']}", {"worker": worker}, (409,)) is None:
                        continue  # the other compute key claimed it first
                    with self.record.lock:
                        self.record.claims[uplet["uuid"]] = worker
                    status = "done" if self.rng.random() < 0.8 else "failed"
                    body: dict[str, Any] = {"status": status}
                    if status == "done":
                        body.update(
                            perf=round(self.rng.random(), 6),
                            train_perf=[round(self.rng.random(), 6) for _ in uplet["train_data"]],
                            test_perf=[round(self.rng.random(), 6) for _ in uplet["test_data"]],
                        )
                    if self.post(client, f"/learndone/{uplet['uuid']}", body) is not None:
                        with self.record.lock:
                            self.record.learned[uplet["uuid"]] = body
                            if status == "done":
                                self.record.trained.add(uplet["problem"])
                    worked = True
                for uplet in self.get(client, "/preduplet", status="todo", limit="10")["preduplets"]:
                    worker, storage = new_uuid(), new_uuid()
                    if self.post(client, f"/worker/preduplet/{uplet['uuid']}", {"worker": worker}, (409,)) is None:
                        continue
                    with self.record.lock:
                        self.record.claims[uplet["uuid"]] = worker
                    body = {"status": "done", "prediction_storage_uuid": storage}
                    if self.post(client, f"/preddone/{uplet['uuid']}", body) is not None:
                        with self.record.lock:
                            self.record.predicted[uplet["uuid"]] = storage
                    worked = True
                if not worked:
                    time.sleep(0.03)

        return run

    def predictions(self) -> None:
        viewer = self.server.client("viewer")
        while not self.killed.is_set():
            with self.record.lock:
                trained = sorted(self.record.trained)
            if not trained:
                time.sleep(0.05)
                continue
            body = {"data": [new_uuid() for _ in range(self.rng.randint(1, 2))], "problem": self.rng.choice(trained)}
            self.post(viewer, "/prediction", body)
            time.sleep(self.rng.uniform(0.05, 0.2))

    def run_until_killed(self, kill_after: float) -> None:
        """Start the writers, SIGKILL the server after kill_after seconds, wait for them to stop."""
        jobs = [
            self.problems,
            self.data,
            self.data,
            self.data,
            self.algos,
            self.compute("compute"),
            self.compute("compute2"),
            self.predictions,
        ]
        threads = [threading.Thread(target=self.until_stopped(job), daemon=True) for job in jobs]
        for thread in threads:
            thread.start()
        time.sleep(kill_after)
        self.killed.set()  # from here on, a request without an answer was in flight at the kill
        self.server.stop(signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a writer did not stop after the kill"

    def until_stopped(self, job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except _Stop:
                pass
            except Exception as e:  # a failed check in a writer fails the test, not just the thread
                with self.record.lock:
                    self.record.errors.append(f"{job.__name__}: {e!r}")

        return run


class _Stop(Exception):
    pass


# -- the checks after a restart ---------------------------------------------------------------


def check_log(server: Any, record: Record, since: int, in_flight_since: int) -> tuple[int, int]:
    """Entries since `since`: each acknowledged write is at its receipt's seq, and every entry is
    an acknowledged or in-flight write. Returns how many entries were of each kind."""
    head = server.head()
    assert all(seq < head["size"] for seq in record.acked), "an acknowledged receipt lies beyond the log"
    entries = {e["seq"]: e for e in log_entries(server.client("auditor"), since)}
    assert sorted(entries) == list(range(since, head["size"]))
    expected = {seq: write for seq, write in record.acked.items() if seq >= since}
    for seq, (key_id, path, body) in expected.items():
        entry = entries[seq]
        assert (entry["key"], entry_path(entry), entry_body(entry)) == (key_id, path, body), (
            f"receipt seq {seq} is not the acknowledged write {key_id} POST {path} {body}: {entry}"
        )
    in_flight = Counter(_key(*write) for write in record.in_flight[in_flight_since:])
    for seq, entry in entries.items():
        if seq in expected:
            continue
        key = _key(entry["key"], entry_path(entry), entry_body(entry))
        assert in_flight[key] > 0, f"entry {seq} is neither an acknowledged nor an in-flight write: {entry}"
        in_flight[key] -= 1
    return len(expected), len(entries) - len(expected)


def check_state(server: Any, record: Record) -> None:
    """Acknowledged documents are present with their fields; nothing is half-present; chains hold."""
    reader = server.client("everything")
    docs = {
        coll: {d["uuid"]: d for d in reader.find_all(coll, page=5000)}
        for coll in ("problem", "algo", "data", "learnuplet", "preduplet")
    }
    for uuid, body in record.problems.items():
        doc = docs["problem"].get(uuid)
        assert doc is not None and {k: doc[k] for k in body} == body, f"acknowledged problem {uuid}: {doc}"
    for uuid, problem in record.algos.items():
        assert uuid in docs["algo"] and docs["algo"][uuid]["problem"] == problem, f"acknowledged algo {uuid}"
    for uuids, problem in record.datas:
        for uuid in uuids:
            assert uuid in docs["data"] and docs["data"][uuid]["problems"] == [problem], f"acknowledged data {uuid}"
    for _, path, body in record.in_flight:
        if path == "/data":
            present = [u in docs["data"] for u in body["uuid"]]
            assert all(present) or not any(present), f"in-flight /data {body['uuid']} is half-present: {present}"
    for uplet, worker in record.claims.items():
        doc = docs["learnuplet"].get(uplet) or docs["preduplet"].get(uplet)
        assert doc is not None and doc["worker"] == worker and doc["status"] != "todo", f"acknowledged claim {uplet}"
    for uplet, body in record.learned.items():
        doc = docs["learnuplet"][uplet]
        assert doc["status"] == body["status"] and doc["timestamp_done"] is not None, f"acknowledged report {uplet}"
        if body["status"] == "done":
            assert doc["perf"] == body["perf"]
            assert [doc["train_perf"][u] for u in doc["train_data"]] == body["train_perf"]
    for uplet, storage in record.predicted.items():
        assert docs["preduplet"][uplet]["prediction_storage_uuid"] == storage, f"acknowledged report {uplet}"
    check_chains(docs)


def check_chains(docs: dict[str, dict[str, dict]]) -> None:
    """Every algo's learnuplets: ranks 0..n-1; rank k+1 waits exactly while rank k is unfinished;
    model_start is null exactly while waiting; a finished one carries its report; and the train
    data they cover is the problem's train data in registration order. Preduplets use a model of
    a done learnuplet of their problem."""
    data_order = list(docs["data"])  # ledger order
    by_algo: dict[str, list[dict]] = {}
    for doc in docs["learnuplet"].values():
        by_algo.setdefault(doc["algo"], []).append(doc)
    for algo, problem in ((a, d["problem"]) for a, d in docs["algo"].items()):
        chain = sorted(by_algo.pop(algo, []), key=lambda d: d["rank"])
        assert [d["rank"] for d in chain] == list(range(len(chain))), f"algo {algo}: ranks {[d['rank'] for d in chain]}"
        test = set(docs["problem"][problem]["test_dataset"])
        train = [u for u in data_order if problem in docs["data"][u]["problems"] and u not in test]
        assert [u for d in chain for u in d["train_data"]] == train, f"algo {algo}: train data not covered in order"
        for before, after in zip(chain, chain[1:], strict=False):
            assert (after["status"] == "waiting") == (before["status"] not in FINISHED), (
                f"algo {algo}: rank {after['rank']} is {after['status']} after a {before['status']} rank"
            )
        for doc in chain:
            assert (doc["model_start"] is None) == (doc["status"] == "waiting"), doc
            assert (doc["worker"] is None) == (doc["status"] in ("waiting", "todo")), doc
            if doc["status"] in FINISHED:
                assert doc["timestamp_done"] is not None, doc
            if doc["status"] == "done":
                assert doc["perf"] is not None and sorted(doc["train_perf"]) == sorted(doc["train_data"]), doc
    assert not by_algo, f"learnuplets of unknown algos: {sorted(by_algo)}"
    models = {d["model_end"]: d["problem"] for d in docs["learnuplet"].values() if d["status"] == "done"}
    for doc in docs["preduplet"].values():
        assert models.get(doc["model"]) == doc["problem"], f"preduplet {doc['uuid']} uses no done model of its problem"


def test_sigkill_under_concurrent_write_load(fresh_server: Any) -> None:
    server, record, rng = fresh_server, Record(), random.Random(SEED)
    kills = scale(3, 20)
    checked = durable_in_flight = 0
    for kill in range(kills):
        since, in_flight_since = server.head()["size"], len(record.in_flight)
        record.round_in_flight = record.round_acked = 0
        Load(server, record, rng).run_until_killed(rng.uniform(0.3, 2.0))
        assert not record.errors, f"{len(record.errors)} failures before the kill, first: {record.errors[:3]}"
        assert record.round_acked > 0, "no write was acknowledged before the kill"
        server.start()
        acked, unacked = check_log(server, record, since, in_flight_since)
        checked, durable_in_flight = checked + acked, durable_in_flight + unacked
        check_state(server, record)
        head = server.head()
        stop_verify_replay(server, head)
        server.start()
        assert server.head() == head
        print(
            f"kill {kill + 1}/{kills}: log size {head['size']}, {record.round_acked} acknowledged and "
            f"{record.round_in_flight} unanswered this round",
            flush=True,
        )
    report(
        "crash: SIGKILL under write load",
        kills_survived=kills,
        acknowledged_writes_checked=len(record.acked),
        receipts_checked_against_log=checked,
        unanswered_at_kills=len(record.in_flight),
        unanswered_found_in_log=durable_in_flight,
        log_size=server.head()["size"],
        claims=len(record.claims),
        reports=len(record.learned) + len(record.predicted),
        seed=SEED,
    )


# -- killing `orchestrator replay` ------------------------------------------------------------


def _big_ledger(server: Any, writes: int) -> None:
    """A ledger whose replay takes a while: every /data write makes learnuplets for four algos."""
    admin, analytics = server.client("admin"), server.client("analytics")
    problems = []
    for _ in range(2):
        problem = new_uuid()
        body = {"uuid": problem, "workflow": new_uuid(), "test_dataset": [new_uuid()], "size_train_dataset": 5}
        assert admin.post("/problem", body).status_code == 201
        for _ in range(4):
            assert analytics.post("/algo", {"uuid": new_uuid(), "name": "big", "problem": problem}).status_code == 201
        problems.append(problem)

    def write(i: int) -> None:
        answer = server.client("viewer").post(
            "/data", {"uuid": [new_uuid() for _ in range(40)], "problems": problems[i % 2]}
        )
        assert answer.status_code == 201, answer.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(writes)))


def _start_replay(data_dir: Path) -> tuple[subprocess.Popen, float]:
    """Start `orchestrator replay`; return it once it is rebuilding (state.rebuild exists), and when."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "replay", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    while not (data_dir / "state.rebuild").exists() and process.poll() is None:
        time.sleep(0.002)
    return process, time.monotonic() - started


def test_sigkill_during_replay(fresh_server: Any) -> None:
    server, rng = fresh_server, random.Random(SEED)
    _big_ledger(server, scale(150, 300))
    head = server.head()
    sample = [d["uuid"] for d in server.client("viewer").find_all("learnuplet")][::97]
    server.stop()
    data_dir = server.data_dir
    # A first, complete replay: its digest, and how long its rebuild takes.
    process, _ = _start_replay(data_dir)
    rebuilding = time.monotonic()
    out, _ = process.communicate(timeout=300)
    rebuild = time.monotonic() - rebuilding
    assert process.returncode == 0 and head["state_digest"] in out, out
    kills, mid_replay = scale(3, 20), 0
    for kill in range(kills):
        # Kill at a random moment of the rebuild (every third time: of the whole command).
        process, began = _start_replay(data_dir)
        if kill % 3 == 2:
            time.sleep(max(0.0, rng.uniform(0, began + rebuild) - began))
        else:
            time.sleep(rng.uniform(0, 0.9 * rebuild))
        process.kill()
        code = process.wait(timeout=30)
        if code == -signal.SIGKILL and (data_dir / "state.rebuild").exists():
            mid_replay += 1
        if kill % 2 == 0:  # replay again: the digest is the same
            assert replay(data_dir, fresh=False) == head["state_digest"]
        else:  # or start the server on whatever the kill left: it catches up to the same state
            server.start()
            assert server.head() == head
            reader = server.client("viewer")
            for uuid in sample:
                assert reader.get(f"/learnuplet/{uuid}").status_code == 200
            server.stop()
        verify(data_dir)
    report(
        "crash: SIGKILL during replay",
        kills_survived=kills,
        kills_mid_rebuild=mid_replay,
        log_size=head["size"],
        rebuild_seconds=round(rebuild, 2),
        seed=SEED,
    )


# -- restarts must leave LevelDB able to compact ------------------------------------------------


def test_writes_keep_flowing_after_many_restarts(tmp_path: Path) -> None:
    """Each restart turns the log's write-ahead file into a level-0 table; once there are four, the
    next open schedules a compaction. If the serve command opened LevelDB before gunicorn forks
    (to check the lock), LevelDB's background thread would start in the master and the forked
    worker would inherit the belief that it runs: no compaction ever again, and writes stall for
    good once a memtable fills (and a clean stop never ends). Found by the disk-trouble suite."""
    data_dir = tmp_path / "data"
    init_ledger(data_dir)
    server = Server(data_dir, free_port())
    problem = new_uuid()
    for restart in range(6):
        server.start()
        if restart == 0:
            body = {"uuid": problem, "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
            assert server.client("admin").post("/problem", body).status_code == 201
        for _ in range(5):
            answer = server.client("viewer").post("/data", {"uuid": [new_uuid()], "problems": problem})
            assert answer.status_code == 201, answer.text
        server.stop(signal.SIGKILL)

    # About 10 MB of state writes: the memtables that fill must be flushed by compactions.
    def write(i: int) -> int:
        client = server.client("viewer")
        client.timeout = 60  # a stalled writer shows up as a timeout, not as a slow test
        answer = client.post("/data", {"uuid": [new_uuid() for _ in range(150)], "problems": problem})
        return int(answer.status_code)

    server.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            statuses = Counter(pool.map(write, range(100)))
        assert statuses == {201: 100}, statuses
        head = server.head()
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    stop_verify_replay(server, head)  # the clean stop must end (it waits for compactions)
    report("crash: restarts keep compactions", restarts=7, log_size=head["size"])

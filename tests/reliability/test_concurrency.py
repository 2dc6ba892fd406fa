"""Concurrency: 50 Compute keys claiming one uplet at the same instant, and many clients
registering, reporting and reading at once.

- The claim race: 50 Compute keys, registered at runtime with POST /nodes, are released by a
  barrier onto one todo learnuplet (and, in the last race, one preduplet): exactly one 200, 49
  409s, the log grows by exactly one entry, a /worker entry for that uplet by the winner's key,
  the uplet names the winner's worker, and a loser may not report on it (403).
- The load: problems, data, algos, node registrations, claims, learndone/preddone reports,
  predictions and reads (collections, documents, membership, ledger entries and proofs) from
  many threads at once for a while: no 5xx, no 4xx but the 409s of lost claim races, no
  uplet claimed twice in the log; then, stopped, `orchestrator verify` passes and a replay into
  fresh state gives the digest GET /ledger/head reported.

    ORCHESTRATOR_FULL=1 python -m pytest -q -s tests/reliability/test_concurrency.py
"""

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from conftest import report, scale
from ledger_checks import Server, entry_body, entry_path, free_port, init_ledger, log_entries, stop_verify_replay

from ledger import keys
from orchestrator.client import Client

COMPUTE_KEYS = 50


@dataclass
class Platform:
    server: Any
    computes: list[Client]  # the runtime-registered Compute keys


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A server, and 50 Compute keys registered at runtime by the admin (POST /nodes)."""
    data_dir = tmp_path_factory.mktemp("concurrency") / "data"
    init_ledger(data_dir)
    server = Server(data_dir, free_port()).start()
    try:
        admin = server.client("admin")
        computes = []
        for i in range(COMPUTE_KEYS):
            key, key_id = keys.new_private_key(), f"compute-{i:02d}"
            answer = admin.post("/nodes", {"key_id": key_id, "public_key": keys.public_b64(key), "roles": ["compute"]})
            assert answer.status_code == 201, answer.text
            computes.append(Client(server.url, keys.private_pem(key), key_id))
        yield Platform(server, computes)
    finally:
        server.stop()


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _created(answer: requests.Response) -> dict[str, Any]:
    assert answer.status_code in (200, 201), f"{answer.status_code} {answer.text}"
    result: dict[str, Any] = answer.json()
    return result


# -- the claim race ---------------------------------------------------------------------------


def race(platform: Platform, kind: str, uplet: str) -> tuple[int, str]:
    """All Compute keys claim `uplet` at once; checks the outcome; returns (winner index, its worker)."""
    server, computes = platform.server, platform.computes
    workers = [_uuid() for _ in computes]
    before = server.head()["size"]
    barrier = threading.Barrier(len(computes))

    def claim(i: int) -> requests.Response:
        assert computes[i].get("/ledger/head").status_code == 200  # connection open before the barrier
        barrier.wait(timeout=60)
        return computes[i].post(f"/worker/{kind}/{uplet}", {"worker": workers[i]})

    with ThreadPoolExecutor(len(computes)) as pool:
        answers = list(pool.map(claim, range(len(computes))))
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 1, 409: len(computes) - 1}, {s: n for s, n in statuses.items()}
    winner = next(i for i, a in enumerate(answers) if a.status_code == 200)
    assert answers[winner].json()[f"{kind}_worker_set"] == uplet
    for answer in answers:
        if answer.status_code == 409:
            assert "not todo" in answer.json()["description"], answer.text
    # The log: exactly one entry more, the winner's claim.
    after = server.head()["size"]
    assert after == before + 1, f"the race appended {after - before} entries"
    claims = [e for e in log_entries(server.client("auditor"), 0) if entry_path(e) == f"/worker/{kind}/{uplet}"]
    assert len(claims) == 1, f"{len(claims)} claims of {uplet} in the log"
    assert claims[0]["key"] == computes[winner].key_id and entry_body(claims[0]) == {"worker": workers[winner]}
    doc = server.client("viewer").get(f"/{kind}/{uplet}").json()
    assert (doc["worker"], doc["status"]) == (workers[winner], "pending"), doc
    # Only the winner may report on it.
    loser = computes[(winner + 1) % len(computes)]
    path = "/learndone/" if kind == "learnuplet" else "/preddone/"
    body = {"status": "failed"}
    assert loser.post(path + uplet, body).status_code == 403
    return winner, workers[winner]


def test_fifty_compute_keys_claim_one_uplet_at_once(platform: Platform) -> None:
    server = platform.server
    problem = _uuid()
    _created(
        server.client("admin").post(
            "/problem", {"uuid": problem, "workflow": _uuid(), "test_dataset": [], "size_train_dataset": 1}
        )
    )
    _created(server.client("viewer").post("/data", {"uuid": [_uuid()], "problems": problem}))
    races, attempts = scale(3, 10), 0
    for i in range(races):
        algo = _uuid()
        _created(server.client("analytics").post("/algo", {"uuid": algo, "name": f"race-{i}", "problem": problem}))
        (learnuplet,) = server.client("viewer").get("/learnuplet", algo=algo).json()["learnuplets"]
        winner, _ = race(platform, "learnuplet", learnuplet["uuid"])
        attempts += len(platform.computes)
        report_done = {"status": "done", "perf": 0.5 + i / 100, "train_perf": [0.5], "test_perf": []}
        _created(platform.computes[winner].post(f"/learndone/{learnuplet['uuid']}", report_done))
    # And a preduplet: the model is now trained.
    _created(server.client("viewer").post("/prediction", {"data": [_uuid()], "problem": problem}))
    (preduplet,) = server.client("viewer").get("/preduplet", problem=problem, status="todo").json()["preduplets"]
    winner, _ = race(platform, "preduplet", preduplet["uuid"])
    attempts += len(platform.computes)
    _created(
        platform.computes[winner].post(
            f"/preddone/{preduplet['uuid']}", {"status": "done", "prediction_storage_uuid": _uuid()}
        )
    )
    report(
        "concurrency: claim race",
        compute_keys=len(platform.computes),
        races=races + 1,
        claims_attempted=attempts,
        claims_won=races + 1,
        claims_refused_409=attempts - races - 1,
    )


# -- many clients at once -----------------------------------------------------------------------


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter = field(default_factory=Counter)  # (operation, status) -> n
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    datas: list[str] = field(default_factory=list)
    algos: Counter = field(default_factory=Counter)  # problem -> algos
    trained: set[str] = field(default_factory=set)
    claimed: Counter = field(default_factory=Counter)  # uplet -> acknowledged claims
    receipts: set[int] = field(default_factory=set)


class Mix:
    """The mixed workload; every answer is counted and checked against what it must be."""

    def __init__(self, platform: Platform, seconds: float, seed: int) -> None:
        self.platform, self.server, self.tally = platform, platform.server, Tally()
        self.deadline = time.monotonic() + seconds
        self.seed = seed

    def call(
        self,
        op: str,
        client: Client,
        method: str,
        path: str,
        body: Any = None,
        expect: tuple[int, ...] = (200,),
        **params: str,
    ) -> Any:
        try:
            answer = client.request(method, path, json=body, params=params or None)
        except requests.RequestException as e:
            with self.tally.lock:
                self.tally.errors.append(f"{op} {method} {path}: {e!r}")
            return None
        with self.tally.lock:
            self.tally.counts[(op, answer.status_code)] += 1
            if answer.status_code not in expect:
                self.tally.errors.append(f"{op} {method} {path} {body}: {answer.status_code} {answer.text[:300]}")
            if answer.status_code >= 300:
                return None  # an expected refusal (a lost claim race) or an error already recorded
            if method == "POST":
                seq = answer.json()["receipt"]["seq"]
                if seq in self.tally.receipts:
                    self.tally.errors.append(f"receipt seq {seq} given twice")
                self.tally.receipts.add(seq)
        return answer.json() if answer.headers.get("Content-Type", "").startswith("application/json") else answer.text

    def loop(self, step: Callable[[random.Random], None], seed: int) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(seed)
            while time.monotonic() < self.deadline:
                try:
                    step(rng)
                except Exception as e:  # a failed check in a client fails the test, not just the thread
                    with self.tally.lock:
                        self.tally.errors.append(f"{getattr(step, '__name__', 'step')}: {e!r}")
                    return

        return run

    def pick(self, rng: random.Random, items: list[str]) -> str | None:
        with self.tally.lock:
            return rng.choice(items[-20:]) if items else None

    # -- registering --------------------------------------------------------------------------

    def admin(self, rng: random.Random) -> None:
        admin = self.server.client("admin")
        problem = _uuid()
        body = {
            "uuid": problem,
            "workflow": _uuid(),
            "test_dataset": [_uuid()],
            "size_train_dataset": rng.randint(1, 3),
        }
        if self.call("problem", admin, "POST", "/problem", body, (201,)) is not None:
            with self.tally.lock:
                self.tally.problems.append(problem)
        if rng.random() < 0.3:  # membership changes too
            key_id = f"viewer-{_uuid()[:8]}"
            key = keys.new_private_key()
            body = {"key_id": key_id, "public_key": keys.public_b64(key), "roles": ["viewer"]}
            if self.call("node", admin, "POST", "/nodes", body, (201,)) is not None:
                newcomer = Client(self.server.url, keys.private_pem(key), key_id)
                self.call("read", newcomer, "GET", f"/nodes/{key_id}")
        time.sleep(rng.uniform(0.05, 0.2))

    def data(self, rng: random.Random) -> None:
        problem = self.pick(rng, self.tally.problems)
        if problem is None:
            time.sleep(0.02)
            return
        uuids = [_uuid() for _ in range(rng.randint(1, 4))]
        if (
            self.call(
                "data", self.server.client("viewer"), "POST", "/data", {"uuid": uuids, "problems": problem}, (201,)
            )
            is not None
        ):
            with self.tally.lock:
                self.tally.datas.extend(uuids)

    def algo(self, rng: random.Random) -> None:
        with self.tally.lock:
            open_problems = [p for p in self.tally.problems[-20:] if self.tally.algos[p] < 3]
        if not open_problems:
            time.sleep(0.02)
            return
        problem = rng.choice(open_problems)
        body = {"uuid": _uuid(), "name": "load", "problem": problem}
        if self.call("algo", self.server.client("analytics"), "POST", "/algo", body, (201,)) is not None:
            with self.tally.lock:
                self.tally.algos[problem] += 1
        time.sleep(rng.uniform(0.02, 0.1))

    def predict(self, rng: random.Random) -> None:
        with self.tally.lock:
            trained = sorted(self.tally.trained)
        if not trained:
            time.sleep(0.05)
            return
        body = {"data": [_uuid() for _ in range(rng.randint(1, 3))], "problem": rng.choice(trained)}
        self.call("prediction", self.server.client("viewer"), "POST", "/prediction", body, (201,))
        time.sleep(rng.uniform(0.02, 0.1))

    # -- reporting ----------------------------------------------------------------------------

    def compute(self, client: Client) -> Callable[[random.Random], None]:
        def step(rng: random.Random) -> None:
            worked = False
            listed = self.call("read", client, "GET", "/learnuplet", status="todo", limit="10")
            for uplet in (listed or {}).get("learnuplets", []):
                path = f"/worker/learnuplet/{uplet['uuid']}"
                if self.call("claim", client, "POST", path, {"worker": _uuid()}, (200, 409)) is None:
                    continue  # another key claimed it first
                self._claimed(uplet["uuid"])
                body: dict[str, Any] = {"status": "done" if rng.random() < 0.8 else "failed"}
                if body["status"] == "done":
                    body.update(
                        perf=rng.random(),
                        train_perf=[rng.random() for _ in uplet["train_data"]],
                        test_perf=[rng.random() for _ in uplet["test_data"]],
                    )
                if self.call("report", client, "POST", f"/learndone/{uplet['uuid']}", body) is not None:
                    if body["status"] == "done":
                        with self.tally.lock:
                            self.tally.trained.add(uplet["problem"])
                worked = True
            listed = self.call("read", client, "GET", "/preduplet", status="todo", limit="10")
            for uplet in (listed or {}).get("preduplets", []):
                path = f"/worker/preduplet/{uplet['uuid']}"
                if self.call("claim", client, "POST", path, {"worker": _uuid()}, (200, 409)) is None:
                    continue
                self._claimed(uplet["uuid"])
                body = {"status": "done", "prediction_storage_uuid": _uuid()}
                self.call("report", client, "POST", f"/preddone/{uplet['uuid']}", body)
                worked = True
            if not worked:
                time.sleep(0.02)

        return step

    def _claimed(self, uplet: str) -> None:
        with self.tally.lock:
            self.tally.claimed[uplet] += 1

    # -- reading ------------------------------------------------------------------------------

    def read(self, rng: random.Random) -> None:
        reader = self.server.client("everything")
        problem, data = self.pick(rng, self.tally.problems), self.pick(rng, self.tally.datas)
        choice = rng.randrange(7)
        if choice == 0 and problem:
            self.call("read", reader, "GET", f"/problem/{problem}")
        elif choice == 1 and data:
            self.call("read", reader, "GET", f"/data/{data}")
        elif choice == 2 and problem:
            self.call("read", reader, "GET", "/learnuplet", problem=problem)
        elif choice == 3 and problem:
            self.call("read", reader, "GET", "/algo", problem=problem)
        elif choice == 4:
            self.call("read", reader, "GET", "/nodes")
        elif choice == 5:
            self.call("read", reader, "GET", "/preduplet", status="todo", limit="50")
        else:
            self.call("read", reader, "GET", "/ledger/head")

    def audit(self, rng: random.Random) -> None:
        auditor = self.server.client("auditor")
        size = self.server.head()["size"]
        choice = rng.randrange(4)
        if choice == 0:
            self.call("audit", auditor, "GET", "/ledger/entries", start=str(rng.randrange(size)))
        elif choice == 1:
            self.call("audit", auditor, "GET", "/ledger/proofs/inclusion", seq=str(rng.randrange(size)))
        elif choice == 2 and size > 1:
            self.call("audit", auditor, "GET", "/ledger/proofs/consistency", first=str(rng.randrange(1, size)))
        else:
            self.call("audit", auditor, "GET", "/ledger/checkpoint")

    def run(self) -> int:
        """Run every step in a thread of its own until the deadline; the number of threads."""
        steps: list[Callable[[random.Random], None]] = [self.admin, self.data, self.data, self.algo, self.predict]
        steps += [self.compute(client) for client in self.platform.computes[:8]]
        steps += [self.read, self.read, self.read, self.audit]
        threads = [threading.Thread(target=self.loop(step, self.seed + i)) for i, step in enumerate(steps)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return len(threads)


def test_many_clients_at_once_then_state_equals_a_replay(platform: Platform) -> None:
    seconds = scale(10, 60)
    seed = random.randrange(1_000_000)
    mix = Mix(platform, seconds, seed)
    threads = mix.run()
    tally = mix.tally
    assert not tally.errors, f"{len(tally.errors)} unexpected answers, first: {tally.errors[:5]}"
    # The log: no uplet claimed twice, and every acknowledged claim is there once.
    server = platform.server
    claims = Counter(
        entry_path(e) for e in log_entries(server.client("auditor"), 0) if entry_path(e).startswith("/worker/")
    )
    assert all(n == 1 for n in claims.values()), [path for path, n in claims.items() if n > 1]
    assert all(claims[f"/worker/learnuplet/{u}"] + claims[f"/worker/preduplet/{u}"] == 1 for u in tally.claimed)
    assert all(n == 1 for n in tally.claimed.values())
    head = server.head()
    stop_verify_replay(server, head)
    server.start()  # for the module fixture's teardown
    requests_sent = sum(tally.counts.values())
    by_op: Counter = Counter()
    for (op, _), n in tally.counts.items():
        by_op[op] += n
    report(
        "concurrency: many clients",
        seconds=seconds,
        threads=threads,
        requests=requests_sent,
        writes_acknowledged=len(tally.receipts),
        claims_won=tally.counts[("claim", 200)],
        claims_lost_409=tally.counts[("claim", 409)],
        reports=by_op["report"],
        reads=by_op["read"] + by_op["audit"],
        log_size=head["size"],
        seed=seed,
    )

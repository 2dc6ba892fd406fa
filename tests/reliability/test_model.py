"""Model-based test of the domain rules: a hypothesis state machine drives the live HTTP API.

Random valid and invalid operations (problems, data, algos, claims, learndone/preddone reports,
predictions, wrong keys) are sent to one real server; a small reference model, written here from
DESIGN.md's "Domain rules" alone (not from ledger/uplets.py or ledger/machine.py), predicts every
response status and the key fields of every answer. After every step the server's collections
for the problems this machine created (GET /learnuplet?problem=..., GET /preduplet?problem=...)
are compared with the model's documents: status, rank, model_start, train_data, test_data,
worker, perf, train_perf, test_perf, model.

Learnuplet and preduplet uuids and model_end are assigned by the server: the model maps them
by (algo, rank) for learnuplets and by (problem, data, occurrence) for preduplets when it reads
them back, and checks that they never change afterwards.

Every write also checks the ledger: an accepted write appends exactly one entry (its receipt's
seq is the previous log size), a rejected one appends nothing. Collections must come back in
ledger order, and GET /{collection}/{uuid} must agree with the collection for every uplet a
step posted to.

Where DESIGN leaves a choice open the model accepts every reading, and says so where it does:
- reporting on a finished uplet that another key claimed: 409 (not pending) or 403 (not the
  claimer); DESIGN does not order the two checks;
- the best model of a problem when the bests of several algos have the same perf: DESIGN breaks
  ties by rank within an algo only, so any of those algo bests (the server picks the first done);
- `perf` sent with status failed: may be stored or dropped, but a failed learnuplet is never
  the best model;
- a preduplet's `data`: the uuid or a one-element list;
- `model_end` may be set before the learnuplet is done; once set it must never change.

The run is bounded in CI and larger with ORCHESTRATOR_FULL=1 (about 3 minutes):

    ORCHESTRATOR_FULL=1 python -m pytest -q -s tests/reliability/test_model.py

A failure prints the shortest sequence of requests hypothesis could find, with every response.
"""

import uuid as uuidlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
from conftest import report, scale
from hypothesis import HealthCheck, note, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from orchestrator.client import Client

FINISHED = ("done", "failed")
ROLE_KEYS = ("admin", "analytics", "viewer", "compute", "auditor")  # one key per single role
WRONG_KEYS = {
    "admin": [k for k in ROLE_KEYS if k != "admin"],
    "analytics": [k for k in ROLE_KEYS if k != "analytics"],
    "viewer": [k for k in ROLE_KEYS if k != "viewer"],
    "compute": [k for k in ROLE_KEYS if k != "compute"],
}
LEARN_FIELDS = {
    "uuid", "problem", "workflow", "algo", "train_data", "test_data", "rank", "model_start", "model_end", "worker",
    "status", "perf", "train_perf", "test_perf", "timestamp_creation", "timestamp_done",
}
PRED_FIELDS = {
    "uuid", "problem", "workflow", "data", "model", "worker", "status", "prediction_storage_uuid",
    "timestamp_request", "timestamp_done",
}

# Finite perfs: mostly a few values (so that ties happen), else any finite double or exact integer.
FEW_PERFS = st.sampled_from([0.5, 0.75, 0.5, 0.25, 0.5, 1])
PERFS = st.one_of(
    FEW_PERFS, FEW_PERFS, FEW_PERFS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**53) + 1, 2**53 - 1),
)


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def is_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuidlib.UUID(value)) == value.lower()
    except ValueError:
        return False


def batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# -- the reference model --------------------------------------------------------


@dataclass(eq=False)
class Learn:
    """A learnuplet as the model expects it. model_start is None, ("algo", uuid) or the Learn whose
    model_end it must be (resolved once the server has told us that model_end)."""

    problem: str
    workflow: str
    algo: str
    rank: int
    train_data: list[str]
    test_data: list[str]
    status: str
    model_start: Any
    seq: int  # the ledger entry that created it
    uuid: str | None = None
    model_end: str | None = None
    worker: str | None = None
    claimer: str | None = None
    perf: float | int | None = None
    train_perf: dict[str, Any] | None = None
    test_perf: dict[str, Any] | None = None
    failed_perf: Any = None  # a perf sent with status failed: DESIGN neither asks for it nor forbids it

    def label(self) -> str:
        return f"learnuplet {self.algo[:8]}#{self.rank} ({self.status})"


@dataclass(eq=False)
class Pred:
    problem: str
    workflow: str
    data: str
    models: list[Learn]  # the acceptable best models (one unless DESIGN leaves a tie open)
    seq: int
    status: str = "todo"
    uuid: str | None = None
    worker: str | None = None
    claimer: str | None = None
    storage: str | None = None

    def label(self) -> str:
        return f"preduplet {self.data[:8]} ({self.status})"


@dataclass(eq=False)
class Problem:
    uuid: str
    workflow: str
    test_dataset: list[str]
    size: int
    data: list[str] = field(default_factory=list)  # registered for it, in registration order
    algos: list[str] = field(default_factory=list)
    preds: list[Pred] = field(default_factory=list)

    def train_data(self, data: list[str]) -> list[str]:
        return [d for d in data if d not in self.test_dataset]


@dataclass(eq=False)
class Algo:
    uuid: str
    problem: str
    chain: list[Learn] = field(default_factory=list)  # index == rank


def best_done(chain: list[Learn]) -> Learn | None:
    """The best done learnuplet of one algo: highest perf, ties to the lower rank."""
    done = [u for u in chain if u.status == "done"]
    if not done:
        return None
    top = max(u.perf for u in done if u.perf is not None)
    tied = [u for u in done if u.perf == top]
    if len(tied) > 1:
        Figures.ties += 1
    return min(tied, key=lambda u: u.rank)


def best_models(chains: list[list[Learn]]) -> list[Learn]:
    """The candidates for "the best done learnuplet of the problem": the best of each algo, those
    with the highest perf. DESIGN orders ties within an algo (the lower rank) but not across algos,
    so when algos tie every one of their bests is accepted (and the one the server picks is kept)."""
    bests = [b for b in map(best_done, chains) if b is not None]
    if not bests:
        return []
    top = max(b.perf for b in bests if b.perf is not None)
    tied = [b for b in bests if b.perf == top]
    if len(tied) > 1:
        Figures.cross_algo_ties += 1
    return tied


def start_after(algo: Algo) -> Any:
    """model_start of the algo's next todo learnuplet: the best done model so far, else the algo."""
    return best_done(algo.chain) or ("algo", algo.uuid)


def extend_chain(problem: Problem, algo: Algo, train: list[str], seq: int) -> int:
    """Append the learnuplets over `train` (new train data) to the algo's chain; how many."""
    new = batches(train, problem.size)
    for i, batch in enumerate(new):
        previous = algo.chain[-1] if algo.chain else None
        todo = i == 0 and (previous is None or previous.status in FINISHED)
        algo.chain.append(Learn(
            problem=problem.uuid, workflow=problem.workflow, algo=algo.uuid, rank=len(algo.chain),
            train_data=list(batch), test_data=list(problem.test_dataset), status="todo" if todo else "waiting",
            model_start=start_after(algo) if todo else None, seq=seq,
        ))
    return len(new)


def finish(algo: Algo, uplet: Learn) -> None:
    """The learnuplet has finished: the next rank goes waiting -> todo from the best model so far."""
    assert uplet.status in FINISHED
    if uplet.rank + 1 < len(algo.chain):
        following = algo.chain[uplet.rank + 1]
        assert following.status == "waiting", f"model invariant broken: {following.label()}"
        following.status = "todo"
        following.model_start = start_after(algo)


# -- the machine ----------------------------------------------------------------


class Figures:
    steps = 0
    responses = 0
    examples = 0
    statuses: Counter[str] = Counter()
    operations: Counter[str] = Counter()
    ties = 0  # best-model decisions within an algo where equal perfs went to the lower rank
    cross_algo_ties = 0  # predictions where the best models of several algos had the same perf
    lowest_rank_not_picked = 0  # of those, how often the server did not pick a lowest-rank one


class PlatformModel(RuleBasedStateMachine):
    clients: dict[str, Client] = {}

    def __init__(self) -> None:
        super().__init__()
        self.problems: dict[str, Problem] = {}
        self.algos: dict[str, Algo] = {}
        self.registered: list[str] = []  # data uuids this machine registered
        self.pool: list[str] = [new_uuid() for _ in range(8)]  # data uuids to register later
        self.predicted: list[str] = []
        self.seen_uuids: dict[str, Any] = {}  # server-assigned uuid / model_end -> owner
        self.touched: list[Learn | Pred] = []  # uplets a step posted to: read back one by one too
        self.size = self.read("everything", "/ledger/head")["size"]
        Figures.examples += 1

    # -- talking to the server --------------------------------------------------

    def read(self, key: str, path: str, **params: Any) -> Any:
        response = self.clients[key].get(path, **params)
        Figures.responses += 1
        assert response.status_code == 200, f"GET {path} {params}: {response.status_code} {response.text}"
        return response.json()

    def write(self, key: str, path: str, body: Any, expected: int | set[int], what: str) -> dict[str, Any]:
        """POST, check the status against the model's and the ledger's size against the outcome."""
        allowed = {expected} if isinstance(expected, int) else expected
        response = self.clients[key].post(path, body)
        Figures.responses += 1
        Figures.statuses[f"{what} {response.status_code}"] += 1
        note(f"POST {path} by {key} {body!r} -> {response.status_code} {response.text.strip()[:300]}")
        assert response.status_code in allowed, (
            f"{what}: POST {path} by {key} {body!r}: expected {sorted(allowed)}, got {response.status_code} "
            f"{response.text}"
        )
        answer = response.json()
        size = self.read("everything", "/ledger/head")["size"]
        if response.status_code < 300:
            assert answer["receipt"]["seq"] == self.size, (answer, self.size)
            assert size == self.size + 1, f"accepted write appended {size - self.size} entries"
        else:
            assert isinstance(answer.get("title"), str) and isinstance(answer.get("description"), str), answer
            assert size == self.size, f"rejected write ({response.status_code}) changed the log size"
        self.size = size
        return dict(answer)

    # -- helpers --------------------------------------------------------------------

    def uplets(self) -> list[Learn]:
        return [u for a in self.algos.values() for u in a.chain]

    def preds(self) -> list[Pred]:
        return [p for problem in self.problems.values() for p in problem.preds]

    def fresh_data(self, draw: Any, n: int) -> list[str]:
        """n data uuids never registered: from the pool (maybe in some test_dataset) or brand new."""
        chosen: list[str] = []
        for _ in range(n):
            if self.pool and draw(st.booleans()):
                candidate = draw(st.sampled_from(self.pool))
                if candidate not in chosen:
                    chosen.append(candidate)
                    continue
            chosen.append(new_uuid())
        return chosen

    def register(self, uuids: list[str]) -> None:
        for u in uuids:
            self.registered.append(u)
            if u in self.pool:
                self.pool.remove(u)
                self.pool.append(new_uuid())

    @staticmethod
    def pick(draw: Any, items: list[Any], prefer: Any) -> Any:
        """An uplet, mostly among those satisfying `prefer` when there are some."""
        preferred = [i for i in items if prefer(i)]
        if preferred and draw(st.sampled_from([True, True, True, False]), label="a preferred one"):
            items = preferred
        item = items[draw(st.integers(0, len(items) - 1), label="index")]
        note(f"target: {item.label()} {item.uuid}")
        return item

    # -- problems ---------------------------------------------------------------------

    @initialize(data=st.data())
    def first_problem(self, data: st.DataObject) -> None:
        """Start from a problem (random size and test data), maybe with data and an algo."""
        Figures.steps += 1
        self.add_problem(data, "ok")
        if data.draw(st.booleans(), label="initial data"):
            self.add_data(data, "ok")
        if data.draw(st.booleans(), label="initial algo"):
            self.add_algo(data, "ok")

    @rule(data=st.data())
    def operate(self, data: st.DataObject) -> None:
        """One operation, valid or not, drawn with weights that follow the state so that, within a
        short CI run, chains grow, finish, restart on new data and serve predictions. (One rule
        rather than one per operation: hypothesis would pick among those uniformly, with some
        disabled per run, and a 25-step run would seldom reach a trained model.)"""
        working = any(u.status in ("todo", "pending") for u in self.uplets())
        weights = {  # the first ones come up more often than their weight: hypothesis favours them
            "learnuplet": 6 if self.uplets() else 0,
            "preduplet": 3 if self.preds() else 0,
            "data": 2 if working else 4,
            "prediction": 2,
            "algo": 1 if self.algos else 4,
            "problem": 1 if len(self.problems) < 3 else 0,
        }
        operation = data.draw(st.sampled_from([op for op, n in weights.items() for _ in range(n)]),
                              label="operation")
        Figures.operations[operation] += 1
        Figures.steps += 1
        kinds = {
            "problem": ["ok"] * 5 + ["duplicate", "bad_size", "test_twice", "role"],
            "algo": ["ok"] * 5 + ["unknown_problem", "duplicate", "role"],
            "data": ["ok"] * 6 + ["existing", "twice", "unknown_problem", "role"],
            "prediction": ["ok"] * 6 + ["unknown_problem", "twice", "role"],
        }
        if operation in kinds:
            kind = data.draw(st.sampled_from(kinds[operation]), label="kind")
            getattr(self, f"add_{operation}")(data, kind)
        elif operation == "learnuplet":
            self.work_on_learnuplet(data)
        else:
            self.work_on_preduplet(data)

    def add_problem(self, data: st.DataObject, kind: str) -> None:
        draw = data.draw
        candidates = self.pool + self.registered[-6:]
        test = draw(st.lists(st.sampled_from(candidates), unique=True, max_size=3), label="test_dataset")
        if draw(st.booleans()):
            test.append(new_uuid())  # test data nobody registers
        body = {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": test,
                "size_train_dataset": draw(st.integers(1, 3), label="size")}
        key, expected = "admin", 201
        if kind == "duplicate" and not self.problems:
            kind = "ok"
        if kind == "duplicate":
            body["uuid"], expected = draw(st.sampled_from(list(self.problems))), 409
        elif kind == "bad_size":
            body["size_train_dataset"], expected = draw(st.sampled_from([0, -1, "2", 1.5, None, True])), 400
        elif kind == "test_twice":
            twice = test[0] if test else new_uuid()
            body["test_dataset"], expected = [*test, twice] if test else [twice, twice], 400
        elif kind == "role":
            key, expected = draw(st.sampled_from(WRONG_KEYS["admin"])), 403
        answer = self.write(key, "/problem", body, expected, f"problem/{kind}")
        if expected != 201:
            return
        doc = answer["new_problem"]
        for name in ("uuid", "workflow", "test_dataset", "size_train_dataset"):
            assert doc[name] == body[name], (name, doc, body)
        assert isinstance(doc["timestamp_upload"], int), doc
        self.problems[body["uuid"]] = Problem(body["uuid"], body["workflow"], list(test), body["size_train_dataset"])

    # -- algos --------------------------------------------------------------------------

    def add_algo(self, data: st.DataObject, kind: str) -> None:
        draw = data.draw
        problem = self.problems[draw(st.sampled_from(list(self.problems)), label="problem")]
        body = {"uuid": new_uuid(), "name": draw(st.sampled_from(["logreg", "svm", "knn"])), "problem": problem.uuid}
        key, expected = "analytics", 201
        if kind == "unknown_problem":
            body["problem"], expected = new_uuid(), 400
        elif kind == "duplicate" and not self.algos:
            kind = "ok"
        elif kind == "duplicate":
            body["uuid"], expected = draw(st.sampled_from(list(self.algos))), 409
        elif kind == "role":
            key, expected = draw(st.sampled_from(WRONG_KEYS["analytics"])), 403
        answer = self.write(key, "/algo", body, expected, f"algo/{kind}")
        if expected != 201:
            return
        algo = Algo(body["uuid"], problem.uuid)
        created = extend_chain(problem, algo, problem.train_data(problem.data), answer["receipt"]["seq"])
        self.algos[algo.uuid] = algo
        problem.algos.append(algo.uuid)
        doc = answer["new_algo"]
        assert (doc["uuid"], doc["name"], doc["problem"]) == (body["uuid"], body["name"], body["problem"]), doc
        assert answer["new_learnuplets"] == created, (answer, created)
        algos = self.read("viewer", "/algo", problem=problem.uuid)["algos"]
        assert [a["uuid"] for a in algos] == problem.algos

    # -- data ---------------------------------------------------------------------------

    def add_data(self, data: st.DataObject, kind: str) -> None:
        draw = data.draw
        uuids = self.fresh_data(draw, draw(st.integers(1, 4), label="how many"))
        problems = draw(st.lists(st.sampled_from(list(self.problems)), min_size=1, max_size=2, unique=True),
                        label="problems")
        key, expected = "viewer", 201
        if kind == "existing" and not self.registered:
            kind = "ok"
        if kind == "existing":
            uuids[draw(st.integers(0, len(uuids) - 1))] = draw(st.sampled_from(self.registered))
            expected = 409
        elif kind == "twice":
            uuids.insert(draw(st.integers(0, len(uuids))), draw(st.sampled_from(uuids)))
            expected = 400
        elif kind == "unknown_problem":
            problems.insert(draw(st.integers(0, len(problems))), new_uuid())
            expected = 400
        elif kind == "role":
            key, expected = draw(st.sampled_from(WRONG_KEYS["viewer"])), 403
        body = {
            "uuid": uuids[0] if len(uuids) == 1 and draw(st.booleans()) else uuids,
            "problems": problems[0] if len(problems) == 1 and draw(st.booleans()) else problems,
        }
        answer = self.write(key, "/data", body, expected, f"data/{kind}")
        if expected != 201:
            return
        created = 0
        for p in problems:
            problem = self.problems[p]
            problem.data.extend(uuids)
            for a in problem.algos:
                created += extend_chain(problem, self.algos[a], problem.train_data(uuids), answer["receipt"]["seq"])
        self.register(uuids)
        assert answer["new_learnuplets"] == created, (answer, created)
        assert [d["uuid"] for d in answer["new_datas"]] == uuids, answer
        for doc in answer["new_datas"]:
            assert doc["problems"] == problems and isinstance(doc["timestamp_upload"], int), doc
        for p in problems:
            stored = self.read("viewer", "/data", problems=p)["datas"]
            assert [d["uuid"] for d in stored] == self.problems[p].data

    # -- learnuplets -------------------------------------------------------------------

    def work_on_learnuplet(self, data: st.DataObject) -> None:
        """Claim a learnuplet or report one, mostly the ones where that makes progress."""
        statuses = {u.status for u in self.uplets()}
        if "pending" in statuses and data.draw(st.sampled_from([True, True, True, False]), label="report pending"):
            self.learndone(data)
        elif data.draw(st.sampled_from([True, True, True, False] if "todo" in statuses else [True, False]),
                       label="claim"):
            self.claim_learnuplet(data)
        else:
            self.learndone(data)

    def claim_learnuplet(self, data: st.DataObject) -> None:
        draw = data.draw
        kind = draw(st.sampled_from(["ok"] * 8 + ["unknown", "role"]), label="kind")
        uplet = self.pick(draw, self.uplets(), lambda u: u.status == "todo")
        key = draw(st.sampled_from(["compute", "compute2"]), label="key")
        target = uplet.uuid
        expected: int | set[int] = 200 if uplet.status == "todo" else 409
        if kind == "unknown":
            target, expected = new_uuid(), 404
        elif kind == "role":
            key, expected = draw(st.sampled_from(WRONG_KEYS["compute"])), 403
        worker = new_uuid()
        self.touched.append(uplet)
        answer = self.write(key, f"/worker/learnuplet/{target}", {"worker": worker}, expected,
                            f"worker-learnuplet/{kind}/{uplet.status}")
        if expected == 200:
            assert answer["learnuplet_worker_set"] == uplet.uuid, answer
            uplet.status, uplet.worker, uplet.claimer = "pending", worker, key

    def learn_body(self, draw: Any, uplet: Learn, status: str) -> dict[str, Any]:
        if status == "failed":
            # Sometimes with a perf (often a high one): a failed learnuplet is never the best model.
            if draw(st.booleans(), label="failed with perf"):
                return {"status": "failed", "perf": draw(st.one_of(st.just(2.0), st.just(2.0), PERFS))}
            return {"status": "failed"}
        # Often the perf of a done learnuplet of the same algo (else problem): ties go to the lower rank.
        done = [u.perf for u in self.algos[uplet.algo].chain if u.status == "done"] or [
            u.perf for u in self.uplets() if u.problem == uplet.problem and u.status == "done"]
        if done and draw(st.booleans(), label="same perf as another"):
            perf = draw(st.sampled_from(done), label="perf")
        else:
            perf = draw(PERFS, label="perf")
        train = [draw(PERFS) for _ in uplet.train_data]
        test = [draw(PERFS) for _ in uplet.test_data]
        body: dict[str, Any] = {"status": "done", "perf": perf}
        for name, keys, values in (("train_perf", uplet.train_data, train), ("test_perf", uplet.test_data, test)):
            if draw(st.booleans(), label=f"{name} as a mapping"):  # in any key order
                body[name] = dict(draw(st.permutations(list(zip(keys, values, strict=True)))))
            else:
                body[name] = values
        return body

    def learndone(self, data: st.DataObject) -> None:
        draw = data.draw
        uplet = self.pick(draw, self.uplets(), lambda u: u.status == "pending")
        kind = draw(st.sampled_from(["done"] * 6 + ["failed"] * 3 + ["invalid", "unknown", "role"]), label="kind")
        others = {"compute": "compute2", "compute2": "compute"}
        if uplet.claimer and draw(st.sampled_from([True, True, True, False]), label="by the claimer"):
            key = uplet.claimer
        elif uplet.claimer:
            key = others[uplet.claimer]
        else:
            key = draw(st.sampled_from(["compute", "compute2"]))
        body = self.learn_body(draw, uplet, "failed" if kind == "failed" else "done")
        target = uplet.uuid
        if uplet.status != "pending":
            # DESIGN: /learndone needs pending (409). When another key claimed a finished learnuplet,
            # "only the claimer may report" (403) applies too, and DESIGN does not order the two.
            expected: int | set[int] = {403, 409} if uplet.claimer not in (None, key) else 409
        elif key != uplet.claimer:
            expected = 403
        else:
            expected = 200
        if kind == "invalid" and expected == 200:
            expected = 400
            body = self.invalid_learn_body(draw, uplet, body)
        elif kind == "unknown":
            target, expected = new_uuid(), 404
        elif kind == "role":
            key, expected = draw(st.sampled_from(WRONG_KEYS["compute"])), 403
        self.touched.append(uplet)
        answer = self.write(key, f"/learndone/{target}", body, expected, f"learndone/{kind}/{uplet.status}")
        if expected != 200:
            return
        assert answer["updated_learnuplet"] == uplet.uuid, answer
        uplet.status = body["status"]
        uplet.failed_perf = body.get("perf") if uplet.status == "failed" else None
        if uplet.status == "done":
            uplet.perf = body["perf"]
            as_map = [(uplet.train_data, body["train_perf"]), (uplet.test_data, body["test_perf"])]
            uplet.train_perf, uplet.test_perf = (
                dict(values) if isinstance(values, dict) else dict(zip(keys, values, strict=True))
                for keys, values in as_map
            )
        finish(self.algos[uplet.algo], uplet)

    def invalid_learn_body(self, draw: Any, uplet: Learn, body: dict[str, Any]) -> dict[str, Any]:
        how = draw(st.sampled_from(["no_perf", "no_train_perf", "no_test_perf", "short_train", "long_test",
                                    "perf_text", "status", "foreign_key"]), label="invalid")
        body = dict(body)
        if how.startswith("no_"):
            del body[how[3:]]
        elif how == "short_train":
            body["train_perf"] = list(body["train_perf"].values() if isinstance(body["train_perf"], dict)
                                      else body["train_perf"])[:-1]
        elif how == "long_test":
            body["test_perf"] = [0.5] * (len(uplet.test_data) + 1)
        elif how == "perf_text":
            body["perf"] = str(body["perf"])
        elif how == "status":
            body["status"] = draw(st.sampled_from(["pending", "todo", "DONE", "", None]))
        else:
            body["train_perf"] = {new_uuid(): 0.5, **{d: 0.5 for d in uplet.train_data[1:]}}
        return body

    # -- predictions -------------------------------------------------------------------

    def add_prediction(self, data: st.DataObject, kind: str) -> None:
        draw = data.draw
        problems = list(self.problems)
        trained = [p for p in problems if any(u.status == "done" for a in self.problems[p].algos
                                               for u in self.algos[a].chain)]
        prefer_trained = trained and draw(st.sampled_from([True, True, True, False]))
        problem = self.problems[draw(st.sampled_from(trained if prefer_trained else problems))]
        sources = ["new"] + (["registered"] if self.registered else []) + (["predicted"] if self.predicted else [])
        uuids: list[str] = []
        for _ in range(draw(st.integers(1, 3), label="how many")):
            source = draw(st.sampled_from(sources))
            u = new_uuid() if source == "new" else draw(st.sampled_from(
                self.registered if source == "registered" else self.predicted))
            if u not in uuids:
                uuids.append(u)
        models = best_models([self.algos[a].chain for a in problem.algos])
        key, expected, target = "viewer", 201 if models else 409, problem.uuid
        if kind == "unknown_problem":
            target, expected = new_uuid(), 400
        elif kind == "twice":
            uuids.insert(draw(st.integers(0, len(uuids))), draw(st.sampled_from(uuids)))
            expected = 400
        elif kind == "role":
            key, expected = draw(st.sampled_from(WRONG_KEYS["viewer"])), 403
        body = {"data": uuids[0] if len(uuids) == 1 and draw(st.booleans()) else uuids, "problem": target}
        answer = self.write(key, "/prediction", body, expected, f"prediction/{kind}/{'model' if models else 'none'}")
        if expected != 201:
            return
        assert answer["new_preduplets"] == len(uuids), answer
        for u in uuids:
            problem.preds.append(Pred(problem.uuid, problem.workflow, u, list(models), answer["receipt"]["seq"]))
            if u not in self.predicted:
                self.predicted.append(u)

    def work_on_preduplet(self, data: st.DataObject) -> None:
        """Claim a preduplet or report one, mostly the ones where that makes progress."""
        statuses = {p.status for p in self.preds()}
        if "pending" in statuses and data.draw(st.sampled_from([True, True, True, False]), label="report pending"):
            self.preddone(data)
        elif data.draw(st.sampled_from([True, True, True, False] if "todo" in statuses else [True, False]),
                       label="claim"):
            self.claim_preduplet(data)
        else:
            self.preddone(data)

    def claim_preduplet(self, data: st.DataObject) -> None:
        draw = data.draw
        kind = draw(st.sampled_from(["ok"] * 8 + ["unknown", "role"]), label="kind")
        pred = self.pick(draw, self.preds(), lambda p: p.status == "todo")
        key = draw(st.sampled_from(["compute", "compute2"]), label="key")
        target = pred.uuid
        expected = 200 if pred.status == "todo" else 409
        if kind == "unknown":
            target, expected = new_uuid(), 404
        elif kind == "role":
            key, expected = draw(st.sampled_from(WRONG_KEYS["compute"])), 403
        worker = new_uuid()
        self.touched.append(pred)
        answer = self.write(key, f"/worker/preduplet/{target}", {"worker": worker}, expected,
                            f"worker-preduplet/{kind}/{pred.status}")
        if expected == 200:
            assert answer["preduplet_worker_set"] == pred.uuid, answer
            pred.status, pred.worker, pred.claimer = "pending", worker, key

    def preddone(self, data: st.DataObject) -> None:
        draw = data.draw
        pred = self.pick(draw, self.preds(), lambda p: p.status == "pending")
        kind = draw(st.sampled_from(["done"] * 4 + ["failed"] * 2 + ["invalid", "unknown", "role"]), label="kind")
        others = {"compute": "compute2", "compute2": "compute"}
        if pred.claimer and draw(st.sampled_from([True, True, True, False]), label="by the claimer"):
            key = pred.claimer
        elif pred.claimer:
            key = others[pred.claimer]
        else:
            key = draw(st.sampled_from(["compute", "compute2"]))
        body: dict[str, Any] = {"status": "failed"} if kind == "failed" else {
            "status": "done", "prediction_storage_uuid": new_uuid()}
        target = pred.uuid
        if pred.status != "pending":
            expected: int | set[int] = {403, 409} if pred.claimer not in (None, key) else 409
        elif key != pred.claimer:
            expected = 403
        else:
            expected = 200
        if kind == "invalid" and expected == 200:
            body = draw(st.sampled_from([{"status": "done"}, {"status": "done", "prediction_storage_uuid": "s3://x"},
                                         {"status": "ok", "prediction_storage_uuid": new_uuid()}]))
            expected = 400
        elif kind == "unknown":
            target, expected = new_uuid(), 404
        elif kind == "role":
            key, expected = draw(st.sampled_from(WRONG_KEYS["compute"])), 403
        self.touched.append(pred)
        answer = self.write(key, f"/preddone/{target}", body, expected, f"preddone/{kind}/{pred.status}")
        if expected == 200:
            assert answer["updated_preduplet"] == pred.uuid, answer
            pred.status = body["status"]
            pred.storage = body.get("prediction_storage_uuid")

    # -- invariants: the server's collections equal the model's --------------------------

    def assign(self, value: Any, owner: Any, what: str) -> None:
        """A server-assigned id: a well-formed UUID, and no two model objects get the same one."""
        assert is_uuid(value), f"{what}: not a UUID: {value!r}"
        previous = self.seen_uuids.setdefault(f"{what} {value}", owner)
        assert previous is owner, f"{what} {value} given twice: to {previous} and {owner}"

    @invariant()
    def learnuplets_match(self) -> None:
        for problem in self.problems.values():
            docs = self.read("viewer", "/learnuplet", problem=problem.uuid, limit=10000)["learnuplets"]
            expected = {(u.algo, u.rank): u for a in problem.algos for u in self.algos[a].chain}
            got = {(d["algo"], d["rank"]): d for d in docs}
            assert len(got) == len(docs), f"two learnuplets with the same (algo, rank): {docs}"
            assert set(got) == set(expected), (
                f"problem {problem.uuid}: learnuplets (algo, rank) {sorted(got)} != model {sorted(expected)}"
            )
            seqs = [expected[d["algo"], d["rank"]].seq for d in docs]
            assert seqs == sorted(seqs), f"problem {problem.uuid}: learnuplets not in ledger order"
            # First pass: learn the server-assigned ids, check that they never change.
            for k, u in expected.items():
                d = got[k]
                assert LEARN_FIELDS <= set(d), f"missing fields {LEARN_FIELDS - set(d)} in {d}"
                if u.uuid is None:
                    self.assign(d["uuid"], u, "learnuplet uuid")
                    u.uuid = d["uuid"]
                assert d["uuid"] == u.uuid, f"{u.label()}: uuid changed {u.uuid} -> {d['uuid']}"
                if d["model_end"] is not None and u.model_end is None:  # the server may set it early
                    self.assign(d["model_end"], u, "model_end")
                    u.model_end = d["model_end"]
                assert d["model_end"] == u.model_end or (d["model_end"] is None and u.status != "done"), (
                    f"{u.label()}: model_end changed {u.model_end} -> {d['model_end']}"
                )
                assert u.status != "done" or u.model_end is not None, f"{u.label()}: done without model_end: {d}"
            # Second pass: every field that the domain rules fix.
            for k, u in expected.items():
                d = got[k]
                start = u.model_start
                if isinstance(start, Learn):
                    start = start.model_end
                elif isinstance(start, tuple):
                    start = start[1]
                want = {"problem": u.problem, "workflow": u.workflow, "algo": u.algo, "rank": u.rank,
                        "train_data": u.train_data, "test_data": u.test_data, "status": u.status,
                        "model_start": start, "worker": u.worker, "perf": u.perf,
                        "train_perf": u.train_perf, "test_perf": u.test_perf}
                if u.failed_perf is not None and d["perf"] == u.failed_perf:
                    want["perf"] = u.failed_perf  # kept or dropped: both read DESIGN right
                diff = {n: (d[n], w) for n, w in want.items() if not same(d[n], w)}
                assert not diff, f"{u.label()} uuid {u.uuid}: (server, model) differ on {diff}"
                assert isinstance(d["timestamp_creation"], int), d
                assert isinstance(d["timestamp_done"], int) if u.status in FINISHED else d["timestamp_done"] is None, d
            for u in [t for t in self.touched if isinstance(t, Learn) and t.problem == problem.uuid]:
                assert self.read("viewer", f"/learnuplet/{u.uuid}") == got[u.algo, u.rank], u.label()

    @invariant()
    def preduplets_match(self) -> None:
        for problem in self.problems.values():
            docs = self.read("viewer", "/preduplet", problem=problem.uuid, limit=10000)["preduplets"]
            assert len(docs) == len(problem.preds), (
                f"problem {problem.uuid}: {len(docs)} preduplets, model has {len(problem.preds)}"
            )
            by_data: dict[str, list[dict[str, Any]]] = {}
            for d in docs:
                assert PRED_FIELDS <= set(d), f"missing fields {PRED_FIELDS - set(d)} in {d}"
                data = d["data"]
                if isinstance(data, list) and len(data) == 1:  # DESIGN does not say uuid or [uuid]
                    data = data[0]
                by_data.setdefault(data, []).append(d)
            order = {}
            for p in problem.preds:
                occurrence = [q for q in problem.preds if q.data == p.data].index(p)
                assert len(by_data.get(p.data, [])) > occurrence, f"no preduplet for data {p.data}: {docs}"
                d = by_data[p.data][occurrence]
                order[id(d)] = p.seq
                if p.uuid is None:
                    self.assign(d["uuid"], p, "preduplet uuid")
                    p.uuid = d["uuid"]
                assert d["uuid"] == p.uuid, f"{p.label()}: uuid changed {p.uuid} -> {d['uuid']}"
                models = {m.model_end: m for m in p.models}
                assert d["model"] in models, (
                    f"{p.label()}: model {d['model']}, expected the best done model of the problem: "
                    f"{[(m.label(), m.perf, m.model_end) for m in p.models]}"
                )
                if len(p.models) > 1 and models[d["model"]].rank > min(m.rank for m in p.models):
                    Figures.lowest_rank_not_picked += 1
                p.models = [models[d["model"]]]  # pinned: it must not change
                want = {"problem": p.problem, "workflow": p.workflow, "status": p.status, "worker": p.worker,
                        "prediction_storage_uuid": p.storage}
                diff = {n: (d[n], w) for n, w in want.items() if not same(d[n], w)}
                assert not diff, f"{p.label()} uuid {p.uuid}: (server, model) differ on {diff}"
                assert isinstance(d["timestamp_request"], int), d
                assert isinstance(d["timestamp_done"], int) if p.status in FINISHED else d["timestamp_done"] is None, d
                if p in self.touched:
                    assert self.read("viewer", f"/preduplet/{p.uuid}") == d, p.label()
            seqs = [order[id(d)] for d in docs]
            assert seqs == sorted(seqs), f"problem {problem.uuid}: preduplets not in ledger order"
        self.touched.clear()


def same(got: Any, want: Any) -> bool:
    """Equal JSON values; a number may come back as int or float (1 == 1.0) but not as a bool."""
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, int | float) and not isinstance(want, bool):
        return isinstance(got, int | float) and not isinstance(got, bool) and got == want
    return type(got) is type(want) and got == want


def test_model_based(server: Any) -> None:
    PlatformModel.clients = {name: server.client(name) for name in
                             ("admin", "analytics", "viewer", "compute", "compute2", "auditor", "everything")}
    Figures.steps = Figures.responses = Figures.examples = Figures.ties = 0
    Figures.cross_algo_ties = Figures.lowest_rank_not_picked = 0
    Figures.statuses = Counter()
    Figures.operations = Counter()
    run_state_machine_as_test(
        PlatformModel,
        settings=settings(max_examples=scale(15, 200), stateful_step_count=scale(30, 50), deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )
    accepted = sum(n for what, n in Figures.statuses.items() if what.endswith((" 200", " 201")))
    rejected = sum(Figures.statuses.values()) - accepted
    report("model", examples=Figures.examples, steps_run=Figures.steps, responses_checked=Figures.responses,
           writes_accepted=accepted, writes_rejected=rejected, tied_best_model_decisions=Figures.ties,
           cross_algo_ties=Figures.cross_algo_ties, of_which_server_picked_a_higher_rank=Figures.lowest_rank_not_picked,
           statuses=dict(Counter(w.rsplit(" ", 1)[1] for w in Figures.statuses.elements())))
    report("model", operations=dict(Figures.operations), outcomes=dict(sorted(Figures.statuses.items())))

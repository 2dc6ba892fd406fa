"""Replay determinism: state rebuilt from the log is byte-identical to the live state.

Hypothesis drives the engine in-process (no HTTP) with random sequences of valid
and invalid signed requests: problems, data, algos, claims, learndone/preddone
reports with random finite perfs, predictions, exact resends, reused nonces,
wrong roles, unknown references, duplicates and wrong statuses, some submitted
as concurrent groups. A small model of the rules predicts which requests must
be accepted and which rejected. Then the live state is compared with what
`orchestrator replay` rebuilds from the log in a separate process run with a
different PYTHONHASHSEED: the printed digest must equal the live one and every
state key/value must be identical. `--to SEQ` must reproduce the live state as
it was right after entry SEQ.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import plyvel
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from signing import Signer

from ledger.config import LedgerConfig
from ledger.entry import SignedRequest
from ledger.errors import LedgerError
from ledger.genesis import KeySpec, init
from ledger.proposal import Committed
from ledger.service import Ledger

REPO = Path(__file__).resolve().parent.parent

KEYS = {
    "admin": ("admin",),
    "analytics": ("analytics",),
    "viewer": ("viewer",),
    "compute": ("compute",),
    "compute2": ("compute",),
    "auditor": ("auditor",),
}
COMPUTE_KEYS = ("compute", "compute2")
NOT_COMPUTE = ("admin", "analytics", "viewer", "auditor")

FINITE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**53), max_value=2**53),
)
NO_JSON = object()


def child_hash_seed() -> str:
    """A PYTHONHASHSEED for the replay process that differs from this process's."""
    return "456" if os.environ.get("PYTHONHASHSEED") == "123" else "123"


# -- plans: what to send and what must happen -----------------------------------------


@dataclass
class Plan:
    key: str
    method: str
    path: str
    json: Any = NO_JSON
    data: bytes | None = None
    nonce: str | None = None
    expect: bool | None = None  # True: must be accepted; False: must be rejected; None: either
    why: str = ""
    resend: "Record | None" = None  # resend exactly this earlier request
    same_as: int | None = None  # in a group: submit the request of the group's plan #same_as again

    def describe(self) -> str:
        body = self.data if self.data is not None else (None if self.json is NO_JSON else self.json)
        mark = {True: "ok", False: "reject", None: "any"}[self.expect]
        extra = (
            f" (resend of seq {self.resend.outcome.receipt.seq})"
            if self.resend and isinstance(self.resend.outcome, Committed)
            else ""
        )
        return f"[{mark}] {self.key} {self.method} {self.path} {body!r}{extra} {self.why}"


@dataclass
class Record:
    plan: Plan
    request: SignedRequest
    outcome: Committed | LedgerError


@dataclass
class Model:
    """What the test knows of the ledger: collections refreshed from state, plus claims."""

    problems: dict[str, dict] = field(default_factory=dict)
    algos: dict[str, dict] = field(default_factory=dict)
    datas: dict[str, dict] = field(default_factory=dict)
    learn: list[dict] = field(default_factory=list)
    preds: list[dict] = field(default_factory=list)
    claims: dict[str, str] = field(default_factory=dict)  # uplet uuid -> key id that claimed it
    history: list[Record] = field(default_factory=list)

    def pending_test_data(self) -> list[str]:
        """Uuids named in some problem's test_dataset and not yet registered as data."""
        seen: list[str] = []
        for problem in self.problems.values():
            for uuid in problem["test_dataset"]:
                if uuid not in self.datas and uuid not in seen:
                    seen.append(uuid)
        return seen

    def has_done_model(self, problem: str) -> bool:
        return any(u["problem"] == problem and u["status"] == "done" for u in self.learn)


def new_uuid(data: st.DataObject) -> str:
    value = str(data.draw(st.uuids()))
    return value.upper() if data.draw(st.integers(0, 9)) == 0 else value


def low(values: list[str]) -> list[str]:
    return [v.lower() for v in values]


def unique(values: list[str]) -> bool:
    return len(set(low(values))) == len(values)


def _valid_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name.strip()) and len(name) <= 1000


# -- generators: each returns the plans of one step ------------------------------------


def gen_problem(data: st.DataObject, m: Model) -> list[Plan]:
    mode = data.draw(st.sampled_from(["new", "new", "new", "dup", "bad", "role"]))
    uuid = data.draw(st.sampled_from(list(m.problems))) if mode == "dup" and m.problems else new_uuid(data)
    test = [new_uuid(data) for _ in range(data.draw(st.integers(0, 2)))]
    if len(m.datas) > 0 and data.draw(st.booleans()):
        test.append(data.draw(st.sampled_from(list(m.datas))))
    test = list(dict.fromkeys(t.lower() for t in test))
    body: Any = {
        "uuid": uuid,
        "workflow": new_uuid(data),
        "test_dataset": test,
        "size_train_dataset": data.draw(st.integers(1, 3)),
    }
    plan = Plan("admin", "POST", "/problem", json=body)
    if mode == "role":
        plan.key = data.draw(st.sampled_from(["viewer", "analytics", "compute", "auditor"]))
        plan.expect, plan.why = False, "wrong role"
    elif mode == "bad":
        _break(data, plan, "size_train_dataset", [0, -1, 1.5, True, "2", None], uuid_fields=("uuid", "workflow"))
    else:
        plan.expect = uuid.lower() not in m.problems
        plan.why = "" if plan.expect else "duplicate problem"
    return [plan]


def _break(
    data: st.DataObject, plan: Plan, field_name: str, bad_values: list, *, uuid_fields: tuple[str, ...] = ()
) -> None:
    """Make plan's JSON body invalid in one of several ways."""
    body = dict(plan.json)
    how = data.draw(
        st.sampled_from(["value", "uuid", "extra", "missing", "not-object", "not-json", "nan", "surrogate", "dupkey"])
    )
    if how == "value":
        body[field_name] = data.draw(st.sampled_from(bad_values))
    elif how == "uuid" and uuid_fields:
        body[data.draw(st.sampled_from(list(uuid_fields)))] = data.draw(
            st.sampled_from(["not-a-uuid", "", 7, ["x"], "123e4567-e89b-12d3-a456-42661417400"])
        )
    elif how == "extra":
        body["colour"] = "red"
    elif how == "missing" or how == "uuid":
        del body[data.draw(st.sampled_from(sorted(body)))]
    if how == "not-object":
        plan.json = data.draw(st.sampled_from([[body], "text", 3, None]))
    elif how == "not-json":
        plan.json, plan.data = NO_JSON, data.draw(st.sampled_from([b"{", b"", b"\xff\xfe", b"{'a': 1}"]))
    elif how == "nan":
        plan.json, plan.data = NO_JSON, json.dumps({**body, field_name: float("nan")}).encode()
    elif how == "surrogate":  # a lone surrogate escape: valid JSON text, not a valid string
        plan.json, plan.data = NO_JSON, json.dumps({**body, field_name: "\ud800"}).encode()
    elif how == "dupkey":
        text = json.dumps(body)
        plan.json, plan.data = NO_JSON, (text[:-1] + (", " if body else "") + '"colour": 1, "colour": 2}').encode()
    else:
        plan.json = body
    plan.expect, plan.why = False, f"bad body ({how})"


def gen_data(data: st.DataObject, m: Model) -> list[Plan]:
    items = []
    for _ in range(data.draw(st.integers(1, 4))):
        source = data.draw(st.sampled_from(["new", "new", "test", "existing"]))
        if source == "test" and m.pending_test_data():
            items.append(data.draw(st.sampled_from(m.pending_test_data())))
        elif source == "existing" and m.datas:
            items.append(data.draw(st.sampled_from(list(m.datas))))
        else:
            items.append(new_uuid(data))
    problems = []
    for _ in range(data.draw(st.integers(1, 2))):
        if m.problems and data.draw(st.integers(0, 9)) > 0:
            problems.append(data.draw(st.sampled_from(list(m.problems))))
        else:
            problems.append(new_uuid(data))
    as_text = len(items) == 1 and data.draw(st.booleans())
    problems_text = len(problems) == 1 and data.draw(st.booleans())
    body = {"uuid": items[0] if as_text else items, "problems": problems[0] if problems_text else problems}
    key = "viewer"
    if data.draw(st.integers(0, 9)) == 0:
        key = data.draw(st.sampled_from(["admin", "analytics", "compute", "auditor"]))
    plan = Plan(key, "POST", "/data", json=body)
    if key != "viewer":
        plan.expect, plan.why = False, "wrong role"
    elif data.draw(st.integers(0, 9)) == 0:
        _break(data, plan, "uuid", [[], 5, [items[0], items[0]]], uuid_fields=("uuid", "problems"))
    else:
        ok_items = unique(items) and not any(i.lower() in m.datas for i in items)
        ok_problems = unique(problems) and all(p.lower() in m.problems for p in problems)
        plan.expect = ok_items and ok_problems
        plan.why = "" if plan.expect else ("duplicate data" if not ok_items else "unknown or repeated problem")
    return [plan]


def gen_algo(data: st.DataObject, m: Model) -> list[Plan]:
    if m.algos and data.draw(st.integers(0, 9)) == 0:
        uuid = data.draw(st.sampled_from(list(m.algos)))
    else:
        uuid = new_uuid(data)
    if m.problems and data.draw(st.integers(0, 9)) > 0:
        problem = data.draw(st.sampled_from(list(m.problems)))
    else:
        problem = new_uuid(data)
    name = data.draw(st.one_of(st.sampled_from(["logreg", "svm", "  ", ""]), st.text(max_size=8)))
    key = "analytics"
    if data.draw(st.integers(0, 9)) == 0:
        key = data.draw(st.sampled_from(["admin", "viewer", "compute", "auditor"]))
    plan = Plan(key, "POST", "/algo", json={"uuid": uuid, "name": name, "problem": problem})
    if key != "analytics":
        plan.expect, plan.why = False, "wrong role"
    elif data.draw(st.integers(0, 9)) == 0:
        _break(data, plan, "name", [3, None, "x" * 1001, ["a"]], uuid_fields=("uuid", "problem"))
    else:
        plan.expect = problem.lower() in m.problems and uuid.lower() not in m.algos and _valid_name(name)
        plan.why = "" if plan.expect else "unknown problem, duplicate algo or bad name"
    return [plan]


def _pick_uplet(data: st.DataObject, docs: list[dict], prefer: str) -> dict | None:
    """An uplet by index: usually one with status `prefer`, sometimes any, sometimes none (unknown)."""
    choice = data.draw(st.integers(0, 9))
    preferred = [d for d in docs if d["status"] == prefer]
    if choice >= 3 and preferred:
        return preferred[data.draw(st.integers(0, len(preferred) - 1))]
    if choice >= 1 and docs:
        return docs[data.draw(st.integers(0, len(docs) - 1))]
    return None


def gen_worker(data: st.DataObject, m: Model, kind: str | None = None) -> list[Plan]:
    kind = kind or data.draw(st.sampled_from(["learnuplet", "learnuplet", "learnuplet", "preduplet"]))
    docs = m.learn if kind == "learnuplet" else m.preds
    doc = _pick_uplet(data, docs, "todo")
    uuid = doc["uuid"] if doc is not None else new_uuid(data)
    if data.draw(st.integers(0, 4)) == 0:
        uuid = uuid.upper()
    key = data.draw(st.sampled_from(COMPUTE_KEYS))
    if data.draw(st.integers(0, 9)) == 0:
        key = data.draw(st.sampled_from(NOT_COMPUTE))
    path_kind = kind if data.draw(st.integers(0, 19)) > 0 else "bogus"
    plan = Plan(key, "POST", f"/worker/{path_kind}/{uuid}", json={"worker": new_uuid(data)})
    if key not in COMPUTE_KEYS:
        plan.expect, plan.why = False, "wrong role"
    elif path_kind == "bogus":
        plan.expect, plan.why = False, "unknown uplet kind"
    elif data.draw(st.integers(0, 9)) == 0:
        _break(data, plan, "worker", ["worker-1", 1, None, []], uuid_fields=("worker",))
    else:
        plan.expect = doc is not None and doc["status"] == "todo"
        plan.why = "" if plan.expect else ("unknown uplet" if doc is None else f"uplet is {doc['status']}")
    return [plan]


def _perfs(data: st.DataObject, keys: list[str]) -> Any:
    values = [data.draw(FINITE) for _ in keys]
    if data.draw(st.booleans()):
        return values
    return dict(zip(keys, values, strict=True))


def learndone_body(data: st.DataObject, doc: dict | None, status: str) -> dict:
    train = doc["train_data"] if doc is not None else [new_uuid(data)]
    test = doc["test_data"] if doc is not None else []
    if status == "done" or data.draw(st.booleans()):
        return {
            "status": status,
            "perf": data.draw(FINITE),
            "train_perf": _perfs(data, train),
            "test_perf": _perfs(data, test),
        }
    return {"status": status}


def _report_target(
    data: st.DataObject, m: Model, uplets: list[dict], outsiders: list[str]
) -> tuple[dict | None, str, str | None, str]:
    """A pending uplet to report on (or an unknown uuid), its claimer, and the reporting key:
    mostly the claimer, else any compute key or one of `outsiders`."""
    doc = _pick_uplet(data, uplets, "pending")
    uuid = doc["uuid"] if doc is not None else new_uuid(data)
    claimer = m.claims.get(uuid)
    if claimer is not None and data.draw(st.integers(0, 9)) > 1:
        key = claimer
    else:
        key = data.draw(st.sampled_from(COMPUTE_KEYS + outsiders))
    return doc, uuid, claimer, key


def gen_learndone(data: st.DataObject, m: Model) -> list[Plan]:
    doc, uuid, claimer, key = _report_target(data, m, m.learn, NOT_COMPUTE[:1])
    status = data.draw(st.sampled_from(["done", "done", "failed"]))
    plan = Plan(key, "POST", f"/learndone/{uuid}", json=learndone_body(data, doc, status))
    if key not in COMPUTE_KEYS:
        plan.expect, plan.why = False, "wrong role"
    elif data.draw(st.integers(0, 7)) == 0:
        body = dict(plan.json)
        how = data.draw(st.sampled_from(["no-perf", "short", "keys", "status", "perf-type", "big"]))
        if how == "no-perf":
            body = {"status": "done", "train_perf": body.get("train_perf", []), "test_perf": []}
        elif how == "short":
            body = {**body, "status": "done", "perf": 1, "train_perf": [], "test_perf": []}
        elif how == "keys":
            body = {**body, "status": "done", "perf": 1, "train_perf": {new_uuid(data): 1.0}, "test_perf": {}}
        elif how == "status":
            body["status"] = data.draw(st.sampled_from(["ok", "pending", None, "DONE"]))
        elif how == "perf-type":
            body = {
                **body,
                "status": "done",
                "perf": data.draw(st.sampled_from(["high", None, True, [1]])),
                "train_perf": [],
                "test_perf": [],
            }
        else:
            body = {**body, "status": "done", "perf": 2**53 + 1, "train_perf": [], "test_perf": []}
        plan.json = body
        plan.expect, plan.why = False, f"bad learndone body ({how})"
    else:
        plan.expect = doc is not None and doc["status"] == "pending" and claimer == key
        plan.why = (
            ""
            if plan.expect
            else ("unknown learnuplet" if doc is None else f"learnuplet is {doc['status']}, claimed by {claimer}")
        )
    return [plan]


def gen_preddone(data: st.DataObject, m: Model) -> list[Plan]:
    doc, uuid, claimer, key = _report_target(data, m, m.preds, NOT_COMPUTE[2:3])
    status = data.draw(st.sampled_from(["done", "done", "failed"]))
    body: dict[str, Any] = {"status": status}
    if status == "done" or data.draw(st.booleans()):
        body["prediction_storage_uuid"] = new_uuid(data)
    plan = Plan(key, "POST", f"/preddone/{uuid}", json=body)
    if key not in COMPUTE_KEYS:
        plan.expect, plan.why = False, "wrong role"
    elif data.draw(st.integers(0, 7)) == 0:
        plan.json = data.draw(
            st.sampled_from(
                [
                    {"status": "done"},
                    {"status": "finished", "prediction_storage_uuid": new_uuid(data)},
                    {"status": "done", "prediction_storage_uuid": "nope"},
                    {"status": "failed", "perf": 1},
                ]
            )
        )
        plan.expect, plan.why = False, "bad preddone body"
    else:
        plan.expect = doc is not None and doc["status"] == "pending" and claimer == key
        plan.why = "" if plan.expect else "unknown/not pending preduplet or not the claimer"
    return [plan]


def gen_prediction(data: st.DataObject, m: Model) -> list[Plan]:
    items = [new_uuid(data) for _ in range(data.draw(st.integers(1, 3)))]
    if len(m.datas) > 0 and data.draw(st.booleans()):
        items[0] = data.draw(st.sampled_from(list(m.datas)))
    trained = [p for p in m.problems if m.has_done_model(p)]
    if trained and data.draw(st.integers(0, 3)) > 0:
        problem = data.draw(st.sampled_from(trained))
    elif len(m.problems) > 0 and data.draw(st.booleans()):
        problem = data.draw(st.sampled_from(list(m.problems)))
    else:
        problem = new_uuid(data)
    key = "viewer" if data.draw(st.integers(0, 9)) > 0 else data.draw(st.sampled_from(["admin", "compute"]))
    body = {"data": items[0] if len(items) == 1 and data.draw(st.booleans()) else items, "problem": problem}
    plan = Plan(key, "POST", "/prediction", json=body)
    if key != "viewer":
        plan.expect, plan.why = False, "wrong role"
    else:
        plan.expect = unique(items) and problem.lower() in m.problems and m.has_done_model(problem.lower())
        plan.why = "" if plan.expect else "unknown problem, no trained model or repeated data"
    return [plan]


def gen_resend(data: st.DataObject, m: Model) -> list[Plan]:
    if not m.history:
        return gen_problem(data, m)
    record = m.history[data.draw(st.integers(0, len(m.history) - 1))]
    accepted = isinstance(record.outcome, Committed)
    return [
        Plan(
            record.plan.key,
            record.request.method,
            record.request.path,
            resend=record,
            expect=True if accepted else None,
            why="exact resend",
        )
    ]


def gen_nonce_reuse(data: st.DataObject, m: Model) -> list[Plan]:
    used = [r for r in m.history if isinstance(r.outcome, Committed) and r.plan.key == "admin"]
    if not used:
        return gen_problem(data, m)
    record = used[data.draw(st.integers(0, len(used) - 1))]
    nonce = re.search(r'nonce="([^"]*)"', record.request.headers["signature-input"]).group(1)  # type: ignore[union-attr]
    body = {"uuid": new_uuid(data), "workflow": new_uuid(data), "test_dataset": [], "size_train_dataset": 1}
    return [Plan("admin", "POST", "/problem", json=body, nonce=nonce, expect=False, why="reused nonce")]


def gen_claim_and_report(data: st.DataObject, m: Model) -> list[Plan]:
    """Claim a todo learnuplet and report on it, submitted together (possibly one group)."""
    todo = [u for u in m.learn if u["status"] == "todo"]
    if not todo:
        return gen_worker(data, m, "learnuplet")
    doc = data.draw(st.sampled_from(todo))
    key = data.draw(st.sampled_from(COMPUTE_KEYS))
    status = data.draw(st.sampled_from(["done", "done", "failed"]))
    return [
        Plan(key, "POST", f"/worker/learnuplet/{doc['uuid']}", json={"worker": new_uuid(data)}, expect=True),
        Plan(key, "POST", f"/learndone/{doc['uuid']}", json=learndone_body(data, doc, status), expect=True),
    ]


def gen_prediction_cycle(data: st.DataObject, m: Model) -> list[Plan]:
    """Claim a todo preduplet and report on it, submitted together; or ask for a prediction."""
    todo = [u for u in m.preds if u["status"] == "todo"]
    if not todo:
        return gen_prediction(data, m)
    doc = data.draw(st.sampled_from(todo))
    key = data.draw(st.sampled_from(COMPUTE_KEYS))
    body: dict[str, Any] = {"status": data.draw(st.sampled_from(["done", "failed"]))}
    if body["status"] == "done":
        body["prediction_storage_uuid"] = new_uuid(data)
    return [
        Plan(key, "POST", f"/worker/preduplet/{doc['uuid']}", json={"worker": new_uuid(data)}, expect=True),
        Plan(key, "POST", f"/preddone/{doc['uuid']}", json=body, expect=True),
    ]


SINGLE: dict[str, Callable[[st.DataObject, Model], list[Plan]]] = {
    "problem": gen_problem,
    "data": gen_data,
    "algo": gen_algo,
    "worker": gen_worker,
    "learndone": gen_learndone,
    "preddone": gen_preddone,
    "prediction": gen_prediction,
    "resend": gen_resend,
    "nonce": gen_nonce_reuse,
}
WEIGHTED = (
    ["problem"] * 2
    + ["data"] * 3
    + ["algo"] * 2
    + ["worker"] * 3
    + ["learndone"] * 3
    + ["preddone"] * 2
    + ["prediction"] * 2
    + ["resend", "nonce"]
    + ["claim_report"] * 4
    + ["prediction_cycle"] * 2
    + ["group"] * 2
)


def gen_group(data: st.DataObject, m: Model) -> list[Plan]:
    """Several requests submitted at once, planned from the same snapshot (outcomes not predicted)."""
    plans: list[Plan] = []
    for _ in range(data.draw(st.integers(2, 5))):
        plans += SINGLE[data.draw(st.sampled_from(sorted(SINGLE)))](data, m)
    if data.draw(st.booleans()):
        plans.append(Plan("", "", "", same_as=data.draw(st.integers(0, len(plans) - 1))))
    for plan in plans:
        plan.expect = None
    return plans


def gen_setup(data: st.DataObject, m: Model) -> list[list[Plan]]:
    """A valid start: a problem, some data for it and an algo (so learnuplets exist early)."""
    problem, test = new_uuid(data).lower(), new_uuid(data).lower()
    size = data.draw(st.integers(1, 3))
    train = [new_uuid(data) for _ in range(data.draw(st.integers(1, 5)))]
    return [
        [
            Plan(
                "admin",
                "POST",
                "/problem",
                json={"uuid": problem, "workflow": new_uuid(data), "test_dataset": [test], "size_train_dataset": size},
                expect=True,
            )
        ],
        [Plan("viewer", "POST", "/data", json={"uuid": train + [test], "problems": [problem]}, expect=True)],
        [
            Plan(
                "analytics",
                "POST",
                "/algo",
                json={"uuid": new_uuid(data), "name": "a", "problem": problem},
                expect=True,
            )
        ],
    ]


# -- driving the live ledger ------------------------------------------------------------


class LiveRun:
    """A fresh ledger in a temp dir, driven step by step, with per-step consistency checks."""

    def __init__(self, root: Path, *, keep_snapshots: bool = False) -> None:
        self.keep_snapshots = keep_snapshots
        self.config = LedgerConfig(data_dir=root / "data")
        init(self.config, specs=[KeySpec(name, roles) for name, roles in KEYS.items()])
        self.signers = {name: Signer.from_file(self.config.keys_dir / f"{name}.pem") for name in KEYS}
        self.ledger = Ledger.open(self.config)
        self.model = Model()
        self.snapshots: dict[int, tuple[str, list[tuple[bytes, bytes]]]] = {}
        self.lines: list[str] = []
        if keep_snapshots:
            self.take_snapshot()

    # -- state observation --

    def take_snapshot(self) -> None:
        size, digest = self.ledger.head()
        self.snapshots[size] = (digest.hex(), list(self.ledger.state.scan(b"")))

    def refresh(self) -> None:
        m = self.model
        docs = {
            c: [orjson.loads(raw) for raw in self.ledger.find(c, {}, limit=10_000, after=None).documents]
            for c in ("problem", "algo", "data", "learnuplet", "preduplet")
        }
        m.problems = {d["uuid"]: d for d in docs["problem"]}
        m.algos = {d["uuid"]: d for d in docs["algo"]}
        m.datas = {d["uuid"]: d for d in docs["data"]}
        m.learn, m.preds = docs["learnuplet"], docs["preduplet"]

    # -- submitting --

    def sign(self, plan: Plan) -> SignedRequest:
        if plan.resend is not None:
            return plan.resend.request
        kwargs: dict[str, Any] = {"nonce": plan.nonce}
        if plan.data is not None:
            kwargs["data"] = plan.data
            kwargs["headers"] = {"Content-Type": "application/json"}
        elif plan.json is not NO_JSON:
            kwargs["json"] = plan.json
        return self.signers[plan.key].sign(plan.method, plan.path, **kwargs)

    def submit(self, request: SignedRequest) -> "Future[Committed]":
        try:
            return self.ledger.write(request)
        except LedgerError as e:
            failed: Future[Committed] = Future()
            failed.set_exception(e)
            return failed

    def step(self, plans: list[Plan]) -> None:
        """Submit every plan of the step without waiting, then wait for all and check."""
        size_before, digest_before = self.ledger.head()
        requests: list[SignedRequest] = []
        for plan in plans:
            if plan.same_as is not None:
                original = plans[plan.same_as]
                plan.key, plan.method, plan.path = original.key, original.method, original.path
                requests.append(requests[plan.same_as])
            else:
                requests.append(self.sign(plan))
        futures = [self.submit(r) for r in requests]
        outcomes: list[Committed | LedgerError] = []
        for future in futures:
            try:
                outcomes.append(future.result(timeout=30))
            except LedgerError as e:
                outcomes.append(e)
        size_after, digest_after = self.ledger.head()

        new_seqs = []
        first_by_request: dict[int, Committed | LedgerError] = {}
        for plan, request, outcome in zip(plans, requests, outcomes, strict=True):
            text = (
                f"{outcome.receipt.seq}{' resent' if outcome.resent else ''} {outcome.status}"
                if isinstance(outcome, Committed)
                else f"{type(outcome).__name__}: {outcome.message}"
            )
            self.lines.append(f"{plan.describe()} -> {text}")
            accepted = isinstance(outcome, Committed)
            if plan.expect is not None:
                assert accepted == plan.expect, (
                    f"expected {'acceptance' if plan.expect else 'rejection'}: {plan.describe()} -> {text}"
                )
            earlier = first_by_request.get(id(request))
            if plan.resend is not None:
                earlier = plan.resend.outcome
            if isinstance(earlier, Committed):
                # An exact resend of an accepted request: the original answer, nothing appended.
                assert isinstance(outcome, Committed) and outcome.resent, text
                assert (outcome.receipt, outcome.status, outcome.body) == (
                    earlier.receipt,
                    earlier.status,
                    earlier.body,
                )
            elif isinstance(outcome, Committed) and not outcome.resent:
                new_seqs.append(outcome.receipt.seq)
                if "/worker/" in plan.path:
                    self.model.claims[plan.path.rsplit("/", 1)[1].lower()] = plan.key
            first_by_request.setdefault(id(request), outcome)
            if plan.resend is None and plan.same_as is None:
                self.model.history.append(Record(plan, request, outcome))
        # Accepted entries get consecutive seqs in submission order; rejections append nothing.
        assert new_seqs == list(range(size_before, size_before + len(new_seqs))), new_seqs
        assert size_after == size_before + len(new_seqs)
        if not new_seqs:
            assert digest_after == digest_before
        if new_seqs and self.keep_snapshots:
            self.take_snapshot()
        self.refresh()

    def run(self, data: st.DataObject, steps: int) -> None:
        try:
            if data.draw(st.integers(0, 3), label="valid setup first") > 0:
                for plans in gen_setup(data, self.model):
                    self.step(plans)
            for _ in range(steps):
                op = data.draw(st.sampled_from(self.choices()))
                if op == "group":
                    self.step(gen_group(data, self.model))
                elif op == "claim_report":
                    self.step(gen_claim_and_report(data, self.model))
                elif op == "prediction_cycle":
                    self.step(gen_prediction_cycle(data, self.model))
                else:
                    self.step(SINGLE[op](data, self.model))
        finally:
            note("steps:\n" + "\n".join(self.lines))
        for status in sorted({u["status"] for u in self.model.learn}):
            event(f"learnuplet reached {status}")
        event(f"preduplets: {'some' if self.model.preds else 'none'}")
        accepted = sum(isinstance(r.outcome, Committed) for r in self.model.history)
        event(f"{accepted // 10 * 10}+ accepted, {(len(self.model.history) - accepted) // 10 * 10}+ rejected")

    def choices(self) -> list[str]:
        """Op names to draw from, leaning towards whatever moves the platform forward now."""
        m = self.model
        extra = []
        if any(u["status"] == "todo" for u in m.learn):
            extra += ["claim_report"] * 2
        if any(u["status"] == "done" for u in m.learn):
            extra += ["prediction", "prediction_cycle"] * 2
        if any(u["status"] == "todo" for u in m.preds):
            extra += ["prediction_cycle"] * 2
        return list(WEIGHTED) + extra

    def close(self) -> tuple[int, str]:
        size, digest = self.ledger.head()
        self.ledger.close()
        return size, digest.hex()


def read_state(state_dir: Path) -> list[tuple[bytes, bytes]]:
    db = plyvel.DB(str(state_dir), create_if_missing=False)
    try:
        return list(db.iterator())
    finally:
        db.close()


def state_hash(items: list[tuple[bytes, bytes]]) -> str:
    h = hashlib.sha256()
    for key, value in items:
        h.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
    return h.hexdigest()


def first_difference(live: list[tuple[bytes, bytes]], replayed: list[tuple[bytes, bytes]]) -> str:
    a, b = dict(live), dict(replayed)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"key {key!r}: live {a.get(key)!r} != replayed {b.get(key)!r}"
    return "same items, different order"


def replay_cli(data_dir: Path, to: int | None = None) -> tuple[int, int, str]:
    """Run `orchestrator replay` in a fresh process with another hash seed: (applied, size, digest)."""
    env = {**os.environ, "PYTHONHASHSEED": child_hash_seed()}
    args = [sys.executable, "-m", "orchestrator", "replay", "--data-dir", str(data_dir)]
    if to is not None:
        args += ["--to", str(to)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert done.returncode == 0, f"replay failed ({done.returncode}): {done.stdout}{done.stderr}"
    counts = re.search(r"replayed (\d+) of (\d+) entries", done.stdout)
    digest = re.search(r"state digest: ([0-9a-f]{64})", done.stdout)
    assert counts and digest, done.stdout
    return int(counts.group(1)), int(counts.group(2)), digest.group(1)


def assert_same_state(live: list[tuple[bytes, bytes]], replayed: list[tuple[bytes, bytes]]) -> None:
    assert state_hash(replayed) == state_hash(live), first_difference(live, replayed)
    assert replayed == live


# Each example builds a ledger and runs a replay process: no shrinking (it would take minutes);
# a failure reports the whole sequence of steps with each outcome instead (see LiveRun.run).
COMMON = dict(
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(max_examples=25, **COMMON)  # type: ignore[arg-type]
@given(data=st.data())
def test_replay_from_scratch_reproduces_live_state_exactly(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory(prefix="replay-det-") as tmp:
        run = LiveRun(Path(tmp))
        try:
            run.run(data, data.draw(st.integers(5, 30), label="steps"))
        finally:
            size, live_digest = run.close()
        config = run.config
        live_items = read_state(config.state_dir)
        assert live_items, "the live state is empty"
        shutil.rmtree(config.state_dir)

        applied, log_size, replayed_digest = replay_cli(config.data_dir)

        assert (applied, log_size) == (size, size)
        assert replayed_digest == live_digest
        assert_same_state(live_items, read_state(config.state_dir))


@settings(max_examples=6, **COMMON)  # type: ignore[arg-type]
@given(data=st.data())
def test_replay_to_seq_reproduces_live_state_after_that_entry(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory(prefix="replay-to-") as tmp:
        run = LiveRun(Path(tmp), keep_snapshots=True)
        try:
            run.run(data, data.draw(st.integers(2, 12), label="steps"))
        finally:
            size, _ = run.close()
        known = sorted(run.snapshots)  # log sizes at which the live state was observed
        chosen = data.draw(st.lists(st.sampled_from(known), min_size=1, max_size=2, unique=True), label="sizes")
        if size - 1 > 0 and data.draw(st.booleans(), label="also the middle"):
            chosen.append(min(known, key=lambda s: abs(s - size // 2)))
        for at in dict.fromkeys(chosen):
            live_digest, live_items = run.snapshots[at]
            applied, log_size, replayed_digest = replay_cli(run.config.data_dir, to=at - 1)
            assert (applied, log_size) == (at, size)
            assert replayed_digest == live_digest, f"--to {at - 1}"
            assert_same_state(live_items, read_state(run.config.state_dir))

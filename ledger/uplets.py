"""Domain rules: problems, algos, data, and the learnuplet/preduplet chains.

Pure functions over a :class:`~ledger.documents.Txn`. Ids come from
:class:`Ids` (derived from the entry hash), times from the entry: nothing
here reads a clock, randomness or the environment.

Auxiliary state is kept beside the documents under ``m/`` (named in :mod:`ledger.layout`):
each problem's train data and algos in registration order, each algo's learnuplet per rank and
its best result, each problem's best model, and who claimed each uplet.

One write creates at most the ledger's ``max_uplets_per_write`` uplets (from the
genesis, in ``m/config``); the count is taken before any document is built.
"""

import hashlib
import uuid as uuidlib
from typing import Any

from ledger import schema
from ledger.config import DEFAULT_MAX_UPLETS_PER_WRITE
from ledger.documents import Txn, shared_json
from ledger.errors import (
    ConflictError,
    ForbiddenError,
    InternalError,
    NotFoundError,
    UnknownReferenceError,
    ValidationError,
)
from ledger.layout import (
    CONFIG_KEY,
    algo_meta_key,
    algos_count_key,
    algos_prefix,
    claim_key,
    n8,
    problem_best_key,
    rank_key,
    train_count_key,
    train_prefix,
)

_NAMESPACE = uuidlib.UUID("6f1d3c1e-5b8a-4c8e-9d2a-0b7e4f6a9c31")


class Ids:
    """Deterministic ids for one entry: UUIDv5 of the entry hash and a counter.

    ``new()`` is ``str(uuid.uuid5(_NAMESPACE, f"{entry hash hex}/{counter}"))``, computed from
    one SHA-1 state of the common prefix (a large write asks for tens of thousands).
    """

    def __init__(self, entry_hash: bytes) -> None:
        self._hash = entry_hash
        self._base: Any = None  # the SHA-1 state, made on the first new() (most writes ask none)
        self._next = 0

    def new(self) -> str:
        if self._base is None:
            self._base = hashlib.sha1(_NAMESPACE.bytes + f"{self._hash.hex()}/".encode())
        digest = self._base.copy()
        digest.update(str(self._next).encode())
        self._next += 1
        raw = bytearray(digest.digest()[:16])
        raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        text = raw.hex()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _count(txn: Txn, key: bytes) -> int:
    return txn.counter(key)


def _append(txn: Txn, list_key: bytes, count_key: bytes, value: str) -> None:
    n = txn.counter(count_key)
    txn.put(list_key + n8(n), value.encode())
    txn.put(count_key, n8(n + 1))


def _read_list(txn: Txn, list_key: bytes, count_key: bytes) -> list[str]:
    result = []
    for i in range(txn.counter(count_key)):
        raw = txn.get(list_key + n8(i))
        if raw is None:
            raise InternalError(f"list {list_key!r} lacks its item {i}")
        result.append(raw.decode())
    return result


def _batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _batch_count(items: int, size: int) -> int:
    return -(-items // size)


def _check_uplet_count(txn: Txn, count: int) -> None:
    """Refuse a write that would create more uplets than the ledger allows (ValidationError)."""
    raw = txn.get(CONFIG_KEY)
    config: dict[str, Any] | None = None if raw is None else shared_json(raw)
    limit = int((config or {}).get("max_uplets_per_write", DEFAULT_MAX_UPLETS_PER_WRITE))
    if count > limit:
        raise ValidationError(
            f"this request would create {count} uplets; the ledger allows at most {limit} per write "
            "(max_uplets_per_write, fixed when the ledger was created)"
        )


def _problem(txn: Txn, uuid: str, field: str) -> dict[str, Any]:
    problem = txn.doc("problem", uuid)
    if problem is None:
        raise UnknownReferenceError(f"field {field!r}: unknown problem {uuid}")
    return problem


def _algo_meta(txn: Txn, algo: str) -> dict[str, Any]:
    meta: dict[str, Any] | None = txn.get_json(algo_meta_key(algo))
    return meta if meta is not None else {"next_rank": 0, "best": None}


def _rank_doc(txn: Txn, algo: str, rank: int) -> dict[str, Any] | None:
    raw = txn.get(rank_key(algo, rank))
    return None if raw is None else txn.doc("learnuplet", raw.decode())


def _start_model(meta: dict[str, Any], algo: str) -> str:
    best = meta["best"]
    return best["model"] if best is not None else algo


def _create_learnuplets(txn: Txn, ids: Ids, now: int, problem: dict[str, Any], algo: str, train: list[str]) -> int:
    """Append learnuplets over train data, in batches, continuing the algo's ranks."""
    meta = _algo_meta(txn, algo)
    batches = _batches(train, problem["size_train_dataset"])
    if not batches:
        txn.put_json(algo_meta_key(algo), meta)
        return 0
    first_rank = meta["next_rank"]
    previous = _rank_doc(txn, algo, first_rank - 1) if first_rank > 0 else None
    ready = previous is None or previous["status"] in ("done", "failed")
    for i, batch in enumerate(batches):
        rank = first_rank + i
        todo = i == 0 and ready
        doc = {
            "uuid": ids.new(),
            "problem": problem["uuid"],
            "workflow": problem["workflow"],
            "algo": algo,
            "train_data": batch,
            "test_data": list(problem["test_dataset"]),
            "rank": rank,
            "model_start": _start_model(meta, algo) if todo else None,
            "model_end": ids.new(),
            "worker": None,
            "status": "todo" if todo else "waiting",
            "perf": None,
            "train_perf": None,
            "test_perf": None,
            "timestamp_creation": now,
            "timestamp_done": None,
        }
        txn.insert_doc("learnuplet", doc)
        txn.put(rank_key(algo, rank), doc["uuid"].encode())
    meta["next_rank"] = first_rank + len(batches)
    txn.put_json(algo_meta_key(algo), meta)
    return len(batches)


def new_problem(txn: Txn, now: int, body: dict[str, Any]) -> dict[str, Any]:
    if txn.doc("problem", body["uuid"]) is not None:
        raise ConflictError(f"problem {body['uuid']} already exists")
    doc = {
        "uuid": body["uuid"],
        "workflow": body["workflow"],
        "test_dataset": body["test_dataset"],
        "size_train_dataset": body["size_train_dataset"],
        "timestamp_upload": now,
    }
    txn.insert_doc("problem", doc)
    return {"new_problem": doc}


def new_algo(txn: Txn, ids: Ids, now: int, body: dict[str, Any]) -> dict[str, Any]:
    problem = _problem(txn, body["problem"], "problem")
    if txn.doc("algo", body["uuid"]) is not None:
        raise ConflictError(f"algo {body['uuid']} already exists")
    pid = problem["uuid"]
    _check_uplet_count(txn, _batch_count(txn.counter(train_count_key(pid)), problem["size_train_dataset"]))
    doc = {"uuid": body["uuid"], "name": body["name"], "problem": body["problem"], "timestamp_upload": now}
    txn.insert_doc("algo", doc)
    _append(txn, algos_prefix(pid), algos_count_key(pid), doc["uuid"])
    train = _read_list(txn, train_prefix(pid), train_count_key(pid))
    created = _create_learnuplets(txn, ids, now, problem, doc["uuid"], train)
    return {"new_algo": doc, "new_learnuplets": created}


def new_data(txn: Txn, ids: Ids, now: int, body: dict[str, Any]) -> dict[str, Any]:
    problems = [_problem(txn, uuid, "problems") for uuid in body["problems"]]
    for uuid in body["uuid"]:
        if txn.doc("data", uuid) is not None:
            raise ConflictError(f"data {uuid} already exists")
    trains: list[list[str]] = []  # per problem, the new data it trains on
    count = 0
    for problem in problems:
        test = set(problem["test_dataset"])
        train = [uuid for uuid in body["uuid"] if uuid not in test]
        trains.append(train)
        algos = txn.counter(algos_count_key(problem["uuid"]))
        count += algos * _batch_count(len(train), problem["size_train_dataset"])
    _check_uplet_count(txn, count)
    docs = []
    for uuid in body["uuid"]:
        doc = {"uuid": uuid, "problems": body["problems"], "timestamp_upload": now}
        txn.insert_doc("data", doc)
        docs.append(doc)
    created = 0
    for problem, train in zip(problems, trains, strict=True):
        pid = problem["uuid"]
        for uuid in train:
            _append(txn, train_prefix(pid), train_count_key(pid), uuid)
        for algo in _read_list(txn, algos_prefix(pid), algos_count_key(pid)):
            created += _create_learnuplets(txn, ids, now, problem, algo, train)
    return {"new_datas": docs, "new_learnuplets": created}


def new_prediction(txn: Txn, ids: Ids, now: int, body: dict[str, Any]) -> dict[str, Any]:
    problem = _problem(txn, body["problem"], "problem")
    best = txn.get_json(problem_best_key(problem["uuid"]))
    if best is None:
        raise ConflictError(f"problem {problem['uuid']} has no trained model yet (no learnuplet is done)")
    _check_uplet_count(txn, len(body["data"]))
    for data in body["data"]:
        doc = {
            "uuid": ids.new(),
            "problem": problem["uuid"],
            "workflow": problem["workflow"],
            "data": data,
            "model": best["model"],
            "worker": None,
            "status": "todo",
            "prediction_storage_uuid": None,
            "timestamp_request": now,
            "timestamp_done": None,
        }
        txn.insert_doc("preduplet", doc)
    return {"new_preduplets": len(body["data"])}


def _uplet(txn: Txn, kind: str, uuid: str) -> dict[str, Any]:
    doc = txn.doc(kind, uuid)
    if doc is None:
        raise NotFoundError(f"no {kind} {uuid}")
    return doc


def set_worker(txn: Txn, kind: str, uuid: str, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
    doc = _uplet(txn, kind, uuid)
    if doc["status"] != "todo":
        raise ConflictError(f"{kind} {uuid} is {doc['status']}, not todo: it cannot be claimed")
    new = {**doc, "worker": body["worker"], "status": "pending"}
    txn.update_doc(kind, doc, new)
    txn.put(claim_key(uuid), key_id.encode())
    return {f"{kind}_worker_set": uuid}


def _claimed(txn: Txn, kind: str, uuid: str, key_id: str) -> dict[str, Any]:
    doc = _uplet(txn, kind, uuid)
    if doc["status"] != "pending":
        raise ConflictError(f"{kind} {uuid} is {doc['status']}, not pending: results cannot be reported")
    claimer = txn.get(claim_key(uuid))
    if claimer is None or claimer.decode() != key_id:
        raise ForbiddenError(f"{kind} {uuid} was claimed by another key; only its claimer may report on it")
    return doc


def _better(candidate: float, best: dict[str, Any] | None) -> bool:
    return best is None or candidate > best["perf"]


def learn_done(txn: Txn, now: int, uuid: str, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
    doc = _claimed(txn, "learnuplet", uuid, key_id)
    new = {**doc, "status": body["status"], "timestamp_done": now}
    for name, keys in (("train_perf", doc["train_data"]), ("test_perf", doc["test_data"])):
        if name in body:
            new[name] = schema.perf_map(name, body[name], keys)
    if "perf" in body:
        new["perf"] = body["perf"]
    txn.update_doc("learnuplet", doc, new)

    algo = doc["algo"]
    meta = _algo_meta(txn, algo)
    if new["status"] == "done":
        if _better(new["perf"], meta["best"]):
            meta["best"] = {"perf": new["perf"], "model": new["model_end"]}
            txn.put_json(algo_meta_key(algo), meta)
        pkey = problem_best_key(doc["problem"])
        if _better(new["perf"], txn.get_json(pkey)):
            txn.put_json(pkey, {"perf": new["perf"], "model": new["model_end"]})
    following = _rank_doc(txn, algo, doc["rank"] + 1)
    if following is not None and following["status"] == "waiting":
        txn.update_doc(
            "learnuplet", following, {**following, "status": "todo", "model_start": _start_model(meta, algo)}
        )
    return {"updated_learnuplet": uuid}


def pred_done(txn: Txn, now: int, uuid: str, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
    doc = _claimed(txn, "preduplet", uuid, key_id)
    new = {
        **doc,
        "status": body["status"],
        "prediction_storage_uuid": body.get("prediction_storage_uuid"),
        "timestamp_done": now,
    }
    txn.update_doc("preduplet", doc, new)
    return {"updated_preduplet": uuid}

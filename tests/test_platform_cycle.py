"""A whole platform cycle, black-box over HTTP against a real gunicorn server."""

from typing import Any

import requests
from conftest import Server, new_uuid


def ok(response: requests.Response, status: int | tuple[int, ...] = (200, 201)) -> Any:
    assert response.status_code in ((status,) if isinstance(status, int) else status), response.text
    return response.json()


def learnuplets(server: Server, **filters: str) -> list[dict[str, Any]]:
    return list(ok(server.client("viewer").get("/learnuplet", **filters))["learnuplets"])


def test_platform_cycle(server: Server) -> None:
    admin, analytics, viewer, compute = (server.client(n) for n in ("admin", "analytics", "viewer", "compute"))
    problem, workflow, test_data = new_uuid(), new_uuid(), new_uuid()
    train = [new_uuid() for _ in range(4)]

    body = ok(
        admin.post(
            "/problem", {"uuid": problem, "workflow": workflow, "test_dataset": [test_data], "size_train_dataset": 2}
        ),
        201,
    )
    assert body["new_problem"]["uuid"] == problem
    assert set(body["receipt"]) == {"seq", "hash"}

    body = ok(viewer.post("/data", {"uuid": train + [test_data], "problems": problem}), 201)
    assert [d["uuid"] for d in body["new_datas"]] == train + [test_data]
    assert body["new_learnuplets"] == 0  # no algo yet

    algo = new_uuid()
    body = ok(analytics.post("/algo", {"uuid": algo, "name": "logreg", "problem": problem}), 201)
    assert body["new_algo"]["uuid"] == algo and body["new_learnuplets"] == 2

    chain = learnuplets(server, algo=algo)
    assert [(u["rank"], u["status"], u["model_start"]) for u in chain] == [(0, "todo", algo), (1, "waiting", None)]
    assert chain[0]["train_data"] == train[:2] and chain[1]["train_data"] == train[2:]
    assert chain[0]["test_data"] == [test_data]

    # Compute claims rank 0 and reports it done.
    worker = new_uuid()
    first = chain[0]["uuid"]
    assert ok(compute.post(f"/worker/learnuplet/{first}", {"worker": worker}))["learnuplet_worker_set"] == first
    assert ok(viewer.get(f"/learnuplet/{first}"))["status"] == "pending"
    done = {"status": "done", "perf": 0.8, "train_perf": [0.9, 0.85], "test_perf": [0.8]}
    assert ok(compute.post(f"/learndone/{first}", done))["updated_learnuplet"] == first
    first_doc = ok(viewer.get(f"/learnuplet/{first}"))
    assert first_doc["status"] == "done" and first_doc["perf"] == 0.8
    assert first_doc["train_perf"] == {train[0]: 0.9, train[1]: 0.85}
    assert first_doc["timestamp_done"] is not None

    second = ok(viewer.get(f"/learnuplet/{chain[1]['uuid']}"))
    assert second["status"] == "todo" and second["model_start"] == first_doc["model_end"]

    # Rank 1 fails: new data extends the chain from the best model so far.
    ok(compute.post(f"/worker/learnuplet/{second['uuid']}", {"worker": worker}))
    ok(compute.post(f"/learndone/{second['uuid']}", {"status": "failed"}))
    more = [new_uuid() for _ in range(3)]
    body = ok(viewer.post("/data", {"uuid": more, "problems": [problem]}), 201)
    assert body["new_learnuplets"] == 2
    chain = learnuplets(server, algo=algo)
    assert [(u["rank"], u["status"]) for u in chain] == [(0, "done"), (1, "failed"), (2, "todo"), (3, "waiting")]
    assert chain[2]["model_start"] == first_doc["model_end"]
    assert chain[2]["train_data"] == more[:2] and chain[3]["train_data"] == more[2:]

    # Filters: several ANDed, list membership, ledger order.
    assert [u["rank"] for u in learnuplets(server, algo=algo, status="todo")] == [2]
    assert [u["rank"] for u in learnuplets(server, train_data=more[2])] == [3]
    assert [u["rank"] for u in learnuplets(server, algo=algo, rank="1")] == [1]

    # A second algo gets a chain over all train data so far.
    algo2 = new_uuid()
    assert ok(analytics.post("/algo", {"uuid": algo2, "name": "svm", "problem": problem}))["new_learnuplets"] == 4

    # Prediction uses the best done model of the problem.
    target = new_uuid()
    assert ok(viewer.post("/prediction", {"data": [target], "problem": problem}), 201)["new_preduplets"] == 1
    (pred,) = ok(viewer.get("/preduplet", data=target))["preduplets"]
    assert pred["model"] == first_doc["model_end"] and pred["status"] == "todo"
    assert (
        ok(compute.post(f"/worker/preduplet/{pred['uuid']}", {"worker": worker}))["preduplet_worker_set"]
        == pred["uuid"]
    )
    storage = new_uuid()
    body = ok(compute.post(f"/preddone/{pred['uuid']}", {"status": "done", "prediction_storage_uuid": storage}))
    assert body["updated_preduplet"] == pred["uuid"]
    pred = ok(viewer.get(f"/preduplet/{pred['uuid']}"))
    assert pred["status"] == "done" and pred["prediction_storage_uuid"] == storage


def test_better_model_moves_model_start(server: Server) -> None:
    admin, analytics, viewer, compute = (server.client(n) for n in ("admin", "analytics", "viewer", "compute"))
    problem = new_uuid()
    ok(admin.post("/problem", {"uuid": problem, "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}))
    data = [new_uuid() for _ in range(3)]
    ok(viewer.post("/data", {"uuid": data, "problems": problem}))
    algo = new_uuid()
    ok(analytics.post("/algo", {"uuid": algo, "name": "a", "problem": problem}))
    chain = learnuplets(server, algo=algo)
    perfs = [0.5, 0.7]
    for uplet, perf in zip(chain[:2], perfs, strict=True):
        ok(compute.post(f"/worker/learnuplet/{uplet['uuid']}", {"worker": new_uuid()}))
        ok(
            compute.post(
                f"/learndone/{uplet['uuid']}", {"status": "done", "perf": perf, "train_perf": [perf], "test_perf": []}
            )
        )
    chain = learnuplets(server, algo=algo)
    assert chain[1]["model_start"] == chain[0]["model_end"]
    assert chain[2]["model_start"] == chain[1]["model_end"]  # 0.7 beat 0.5


def test_collection_paging_and_lookup(server: Server) -> None:
    admin, viewer = server.client("admin"), server.client("viewer")
    problem = new_uuid()
    ok(admin.post("/problem", {"uuid": problem, "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 5}))
    data = [new_uuid() for _ in range(5)]
    for d in data:
        ok(viewer.post("/data", {"uuid": d, "problems": problem}))
    page = ok(viewer.get("/data", problems=problem, limit="2"))
    assert [d["uuid"] for d in page["datas"]] == data[:2] and page["next_after"] == data[1]
    page = ok(viewer.get("/data", problems=problem, limit="2", after=page["next_after"]))
    assert [d["uuid"] for d in page["datas"]] == data[2:4]
    page = ok(viewer.get("/data", problems=problem, limit="2", after=page["next_after"]))
    assert [d["uuid"] for d in page["datas"]] == data[4:] and "next_after" not in page
    assert ok(viewer.get(f"/data/{data[0]}"))["problems"] == [problem]
    assert ok(viewer.get("/problem", uuid=problem))["problems"][0]["uuid"] == problem
    assert viewer.get(f"/data/{new_uuid()}").status_code == 404
    assert viewer.get("/nosuchthing").status_code == 404
    assert viewer.get("/data", colour="red").status_code == 400


UUID_FIELDS = {
    "problem": ("uuid", "workflow", "test_dataset"),
    "algo": ("uuid", "problem"),
    "data": ("uuid", "problems"),
    "learnuplet": ("uuid", "problem", "workflow", "algo", "train_data", "test_data", "model_start", "model_end",
                   "worker", "train_perf", "test_perf"),
    "preduplet": ("uuid", "problem", "workflow", "data", "model", "worker", "prediction_storage_uuid"),
}


def test_uuid_filters_match_in_any_case(server: Server) -> None:
    admin, analytics, viewer, compute = (server.client(n) for n in ("admin", "analytics", "viewer", "compute"))
    problem, test_data, train = new_uuid(), new_uuid(), [new_uuid(), new_uuid()]
    ok(admin.post("/problem", {"uuid": problem, "workflow": new_uuid(), "test_dataset": [test_data],
                               "size_train_dataset": 1}))
    ok(viewer.post("/data", {"uuid": [*train, test_data], "problems": problem}))
    algo = new_uuid()
    ok(analytics.post("/algo", {"uuid": algo, "name": "LogReg", "problem": problem}))
    first = learnuplets(server, algo=algo)[0]
    ok(compute.post(f"/worker/learnuplet/{first['uuid']}", {"worker": new_uuid()}))
    ok(compute.post(f"/learndone/{first['uuid']}", {"status": "done", "perf": 0.5, "train_perf": [0.5],
                                                     "test_perf": [0.5]}))
    data = new_uuid()
    ok(viewer.post("/prediction", {"data": data, "problem": problem}))
    (pred,) = ok(viewer.get("/preduplet", data=data))["preduplets"]
    ok(compute.post(f"/worker/preduplet/{pred['uuid']}", {"worker": new_uuid()}))
    ok(compute.post(f"/preddone/{pred['uuid']}", {"status": "done", "prediction_storage_uuid": new_uuid()}))

    docs = {
        "problem": ok(viewer.get(f"/problem/{problem}")),
        "algo": ok(viewer.get(f"/algo/{algo}")),
        "data": ok(viewer.get(f"/data/{train[0]}")),
        "learnuplet": ok(viewer.get(f"/learnuplet/{first['uuid']}")),
        "preduplet": ok(viewer.get(f"/preduplet/{pred['uuid']}")),
    }
    for collection, fields in UUID_FIELDS.items():
        doc = docs[collection]
        for field in fields:
            value = doc[field]
            value = next(iter(value)) if isinstance(value, (list, dict)) else value
            assert isinstance(value, str) and value == value.lower(), (collection, field, value)
            lower = ok(viewer.get(f"/{collection}", **{field: value}))
            assert doc in lower[f"{collection}s"], (collection, field)
            assert ok(viewer.get(f"/{collection}", **{field: value.upper()})) == lower, (collection, field)
    # The cursor too; fields that are not uuids stay exact.
    page = ok(viewer.get("/learnuplet", algo=algo, after=first["uuid"]))
    assert page["learnuplets"] and ok(viewer.get("/learnuplet", algo=algo, after=first["uuid"].upper())) == page
    assert ok(viewer.get("/algo", name="LogReg", problem=problem))["algos"] == [docs["algo"]]
    assert ok(viewer.get("/algo", name="LOGREG", problem=problem))["algos"] == []
    assert ok(viewer.get("/learnuplet", algo=algo.upper(), status="TODO"))["learnuplets"] == []
    assert ok(viewer.get("/learnuplet", algo=algo.upper(), status="todo"))["learnuplets"] != []

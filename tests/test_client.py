"""The typed Python client, against a real server: one method per endpoint, typed errors."""

import base64
from pathlib import Path

import pytest
from conftest import Server, free_port, new_uuid

from ledger import keys, merkle
from orchestrator.client import (
    BadRequest,
    Client,
    ClientError,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unreachable,
)


def test_a_platform_cycle_through_the_typed_methods(server: Server) -> None:
    admin, analytics, viewer, compute = (server.client(n) for n in ("admin", "analytics", "viewer", "compute"))
    problem, workflow, test_data = new_uuid(), new_uuid(), new_uuid()
    train = [new_uuid(), new_uuid()]

    answer = admin.add_problem(problem, workflow, [test_data], 2)
    assert answer["new_problem"]["uuid"] == problem and set(answer["receipt"]) == {"seq", "hash"}
    answer = viewer.add_data(train + [test_data], problem)
    assert [d["uuid"] for d in answer["new_datas"]] == train + [test_data]
    algo = new_uuid()
    assert analytics.add_algo(algo, "logreg", problem)["new_learnuplets"] == 1

    (uplet,) = viewer.find("learnuplet", algo=algo)["learnuplets"]
    assert uplet["status"] == "todo" and uplet["model_start"] == algo
    assert viewer.document("learnuplet", uplet["uuid"]) == uplet
    worker = new_uuid()
    assert compute.set_worker("learnuplet", uplet["uuid"], worker)["learnuplet_worker_set"] == uplet["uuid"]
    answer = compute.learn_done(uplet["uuid"], "done", perf=0.7, train_perf=[0.8, 0.75], test_perf={test_data: 0.7})
    assert answer["updated_learnuplet"] == uplet["uuid"] and answer["receipt"]["seq"] >= 5
    done = viewer.document("learnuplet", uplet["uuid"])
    assert done["status"] == "done" and done["train_perf"] == {train[0]: 0.8, train[1]: 0.75}

    target = new_uuid()
    assert viewer.request_prediction([target], problem)["new_preduplets"] == 1
    (pred,) = viewer.find("preduplet", data=target)["preduplets"]
    assert pred["model"] == done["model_end"]
    compute.set_worker("preduplet", pred["uuid"], worker)
    storage = new_uuid()
    assert compute.pred_done(pred["uuid"], "done", storage)["updated_preduplet"] == pred["uuid"]
    assert viewer.document("preduplet", pred["uuid"])["prediction_storage_uuid"] == storage


def test_find_filters_pages_and_null(server: Server) -> None:
    admin, viewer = server.client("admin"), server.client("viewer")
    workflow = new_uuid()
    problems = [new_uuid() for _ in range(5)]
    for problem in problems:
        admin.add_problem(problem, workflow, [], 1)
    page = viewer.find("problem", workflow=workflow, limit=2)
    assert [p["uuid"] for p in page["problems"]] == problems[:2] and page["next_after"] == problems[1]
    page = viewer.find("problem", workflow=workflow, limit=2, after=page["next_after"])
    assert [p["uuid"] for p in page["problems"]] == problems[2:4]
    assert [p["uuid"] for p in viewer.find_all("problem", page=2, workflow=workflow)] == problems
    assert [p["uuid"] for p in viewer.find_all("problem", workflow=workflow, size_train_dataset=1)] == problems

    analytics = server.client("analytics")
    algo = new_uuid()
    analytics.add_algo(algo, "no-data-yet", problems[0])
    viewer.add_data([new_uuid(), new_uuid()], problems[0])  # two learnuplets: rank 0 todo, rank 1 waiting
    waiting = viewer.find("learnuplet", algo=algo, model_start=None)["learnuplets"]
    assert [u["rank"] for u in waiting] == [1]
    assert [u["rank"] for u in viewer.find("learnuplet", algo=algo, rank=0)["learnuplets"]] == [0]


def test_errors_are_typed_and_carry_the_servers_message(server: Server, tmp_path: Path) -> None:
    admin, viewer = server.client("admin"), server.client("viewer")
    problem = new_uuid()
    admin.add_problem(problem, new_uuid(), [], 1)

    with pytest.raises(Conflict) as conflict:
        admin.add_problem(problem, new_uuid(), [], 1)
    assert conflict.value.status == 409 and "already exists" in conflict.value.description
    assert conflict.value.method == "POST" and conflict.value.path == "/problem"
    assert "409" in str(conflict.value) and problem in str(conflict.value)

    with pytest.raises(NotFound) as missing:
        viewer.document("problem", new_uuid())
    assert missing.value.status == 404 and missing.value.description.startswith("no problem")

    with pytest.raises(BadRequest) as bad:
        admin.add_problem("not-a-uuid", new_uuid(), [], 1)
    assert bad.value.status == 400 and "uuid" in bad.value.description

    with pytest.raises(Forbidden) as forbidden:
        viewer.add_problem(new_uuid(), new_uuid(), [], 1)
    assert forbidden.value.status == 403

    stranger = Client(server.url, keys.private_pem(keys.new_private_key()), "stranger")
    with pytest.raises(Unauthorized) as unauthorized:
        stranger.head()
    assert unauthorized.value.status == 401 and "unknown key id 'stranger'" in unauthorized.value.description

    nowhere = Client(f"http://127.0.0.1:{free_port()}", keys.private_pem(keys.new_private_key()), "x", timeout=5)
    with pytest.raises(Unreachable) as unreachable:
        nowhere.head()
    assert unreachable.value.status is None and "cannot reach" in str(unreachable.value)

    for error in (conflict, missing, bad, forbidden, unauthorized, unreachable):
        assert isinstance(error.value, ClientError)


def test_ledger_methods_and_proofs_check_out(server: Server) -> None:
    auditor = server.client("auditor")
    server.client("admin").add_problem(new_uuid(), new_uuid(), [], 1)
    head = auditor.head()
    size = head["size"]
    assert size >= 2 and len(head["state_digest"]) == 64

    note = auditor.checkpoint()
    origin, tree_size, root_b64 = note.splitlines()[:3]
    assert auditor.verifier_key().startswith(origin + "+")
    tree_size_int, root = int(tree_size), base64.b64decode(root_b64)
    assert tree_size_int >= size

    page = auditor.entries(0, 2)
    assert [e["seq"] for e in page["entries"]] == [0, 1] and page["next"] == 2
    one = auditor.entry(1)
    assert one == page["entries"][1]

    proof = auditor.inclusion_proof(1, tree_size_int)
    assert base64.b64decode(proof["root"]) == root
    merkle.verify_inclusion(1, tree_size_int, merkle.leaf_hash(base64.b64decode(one["raw"])),
                            [base64.b64decode(p) for p in proof["proof"]], root)
    consistency = auditor.consistency_proof(2, tree_size_int)
    merkle.verify_consistency(2, tree_size_int, base64.b64decode(consistency["first_root"]), root,
                              [base64.b64decode(p) for p in consistency["proof"]])

    with pytest.raises(Forbidden):
        server.client("viewer").checkpoint()
    with pytest.raises(NotFound):
        auditor.entry(10**9)


def test_membership_methods(server: Server) -> None:
    admin = server.client("admin")
    name = "client-" + new_uuid()[:8]
    key = keys.new_private_key()
    added = admin.add_node(name, keys.public_b64(key), ["viewer"])
    assert added["new_node"] == {"key_id": name, "public_key": keys.public_b64(key), "roles": ["viewer"],
                                 "revoked": False}
    member = Client(server.url, keys.private_pem(key), name)
    assert member.node(name)["roles"] == ["viewer"]
    assert name in {n["key_id"] for n in member.nodes()}
    assert admin.set_roles(name, ["viewer", "analytics"])["updated_node"]["roles"] == ["analytics", "viewer"]
    assert admin.revoke_node(name)["revoked_node"]["revoked"] is True
    with pytest.raises(Unauthorized) as revoked:
        member.head()
    assert "revoked" in revoked.value.description


def test_raw_requests_still_return_responses(server: Server) -> None:
    """request/get/post/auth/from_file stay as the other tests and the audit use them."""
    client = Client.from_file(server.url, server.data_dir / "keys" / "viewer.pem")
    assert client.key_id == "viewer"
    assert client.get("/ledger/head").status_code == 200
    assert client.get("/problem", limit=1).status_code == 200
    response = client.post("/problem", {"uuid": new_uuid()})
    assert response.status_code == 403 and response.json()["title"] == "Forbidden"
    assert client.request("GET", "/nodes/viewer").json()["key_id"] == "viewer"

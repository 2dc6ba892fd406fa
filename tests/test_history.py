"""Document history and reads as of an earlier entry, black-box over HTTP.

``GET /{collection}/{uuid}/history`` lists every version of a document with the entry that wrote
it; ``?at=SEQ`` on a read answers the state right after entry SEQ. Checked over a real platform
cycle (versions written as side effects included), against a replay of the log truncated to
random sequence numbers, and for bad ``at`` values.
"""

import base64
import json
import random
from pathlib import Path
from typing import Any

import plyvel  # type: ignore[import-untyped]
import requests
from conftest import Server, free_port, init_ledger, new_uuid, orchestrator
from test_platform_cycle import learnuplets, ok

from ledger import query
from ledger.batch import Head, apply_batch
from ledger.entry import decode
from ledger.errors import NotFoundError
from ledger.store import MemoryStore

DONE = {"status": "done", "perf": 0.8, "train_perf": [0.9, 0.85], "test_perf": [0.8]}


def _seq(answer: dict[str, Any]) -> int:
    return int(answer["receipt"]["seq"])


def _problem(size_train_dataset: int, test: list[str]) -> dict[str, Any]:
    return {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": test, "size_train_dataset": size_train_dataset}


def test_history_lists_every_version_with_the_entry_that_wrote_it(server: Server) -> None:
    admin, analytics, viewer, compute, auditor = (
        server.client(n) for n in ("admin", "analytics", "viewer", "compute", "auditor")
    )
    test_data, train = new_uuid(), [new_uuid() for _ in range(4)]
    problem = _problem(2, [test_data])
    p_seq = _seq(ok(admin.post("/problem", problem), 201))
    d_seq = _seq(ok(viewer.post("/data", {"uuid": train + [test_data], "problems": problem["uuid"]}), 201))
    algo = new_uuid()
    a_seq = _seq(ok(analytics.post("/algo", {"uuid": algo, "name": "logreg", "problem": problem["uuid"]}), 201))
    first, second = (u["uuid"] for u in learnuplets(server, algo=algo))
    worker = new_uuid()
    c1 = _seq(ok(compute.post(f"/worker/learnuplet/{first}", {"worker": worker})))
    l1 = _seq(ok(compute.post(f"/learndone/{first}", DONE)))
    c2 = _seq(ok(compute.post(f"/worker/learnuplet/{second}", {"worker": worker})))
    l2 = _seq(ok(compute.post(f"/learndone/{second}", {"status": "failed"})))

    expected = {
        ("problem", problem["uuid"]): [(p_seq, "admin", "POST /problem")],
        ("data", train[0]): [(d_seq, "viewer", "POST /data")],
        ("algo", algo): [(a_seq, "analytics", "POST /algo")],
        ("learnuplet", first): [
            (a_seq, "analytics", "POST /algo"),
            (c1, "compute", f"POST /worker/learnuplet/{first}"),
            (l1, "compute", f"POST /learndone/{first}"),
        ],
        ("learnuplet", second): [  # made todo by the report on the first: a side effect
            (a_seq, "analytics", "POST /algo"),
            (l1, "compute", f"POST /learndone/{first}"),
            (c2, "compute", f"POST /worker/learnuplet/{second}"),
            (l2, "compute", f"POST /learndone/{second}"),
        ],
    }
    histories = {}
    for (coll, uuid), want in expected.items():
        versions = ok(viewer.get(f"/{coll}/{uuid}/history"))
        histories[uuid] = versions
        assert [(v["seq"], v["keyid"], v["request"]) for v in versions] == want, coll
        for version in versions:
            assert set(version) == {"seq", "time", "keyid", "request", "document"}
            assert version["document"] == ok(viewer.get(f"/{coll}/{uuid}", at=str(version["seq"])))
            entry = ok(auditor.get(f"/ledger/entries/{version['seq']}"))["entry"]
            assert version["time"] == entry["time"] and version["keyid"] == entry["key"]
        assert versions[-1]["document"] == ok(viewer.get(f"/{coll}/{uuid}"))
        # Not there before the entry that created it; the history up to an entry stops there.
        assert viewer.get(f"/{coll}/{uuid}", at=str(want[0][0] - 1)).status_code == 404
        assert viewer.get(f"/{coll}/{uuid}/history", at=str(want[0][0] - 1)).status_code == 404
        if len(want) > 1:
            assert ok(viewer.get(f"/{coll}/{uuid}/history", at=str(want[-1][0] - 1))) == versions[:-1]

    statuses = {uuid: [v["document"]["status"] for v in histories[uuid]] for uuid in (first, second)}
    assert statuses == {first: ["todo", "pending", "done"], second: ["waiting", "todo", "pending", "failed"]}
    done_first = histories[first][-1]["document"]
    assert histories[second][1]["document"]["model_start"] == done_first["model_end"]
    # Between two versions a read answers the older one; the list as of then shows it too.
    assert ok(viewer.get(f"/learnuplet/{first}", at=str(l1 - 1)))["status"] == "pending"
    page = ok(viewer.get("/learnuplet", algo=algo, at=str(c1)))
    assert [(u["rank"], u["status"]) for u in page["learnuplets"]] == [(0, "pending"), (1, "waiting")]
    assert ok(viewer.get("/learnuplet", algo=algo, status="todo", at=str(l1)))["learnuplets"] == [
        histories[second][1]["document"]
    ]
    assert ok(viewer.get("/learnuplet", algo=algo, at=str(a_seq - 1)))["learnuplets"] == []
    late = viewer.get("/learnuplet", algo=algo, at=str(a_seq - 1), after=first)  # a cursor from the future
    assert late.status_code == 400 and "after" in late.json()["description"], late.text


def test_history_of_unknown_documents_and_collections_is_404(server: Server) -> None:
    viewer = server.client("viewer")
    for path in (f"/problem/{new_uuid()}/history", "/problem/not-a-uuid/history", f"/nothing/{new_uuid()}/history"):
        answer = viewer.get(path)
        assert answer.status_code == 404 and set(answer.json()) == {"title", "description"}, path
    stranger = requests.get(f"{server.url}/problem/{new_uuid()}/history", timeout=10)
    assert stranger.status_code == 401  # signed, like every read


def test_bad_at_values_are_400_and_change_nothing(server: Server) -> None:
    admin, viewer = server.client("admin"), server.client("viewer")
    problem = _problem(1, [])
    ok(admin.post("/problem", problem), 201)
    before = server.head()
    size = before["size"]
    paths = (f"/problem/{problem['uuid']}", "/problem", f"/problem/{problem['uuid']}/history")
    for path in paths:
        for value in ("", "abc", "-1", "1.5", "1e3", " 1", "0x10", str(size), str(size + 1000), "9" * 19):
            answer = viewer.get(path, at=value)
            assert answer.status_code == 400, (path, value, answer.text)
            assert answer.json()["title"] == "Bad Request" and "at" in answer.json()["description"], answer.text
        twice = viewer.request("GET", path, params=[("at", "1"), ("at", "2")])
        assert twice.status_code == 400, twice.text
        assert viewer.get(path, at=str(size - 1)).status_code == 200  # the last entry is the newest state
    waiting = viewer.get("/problem", at="1", wait="1")
    assert waiting.status_code == 400 and "wait" in waiting.json()["description"]
    for path in ("/nodes", "/nodes/admin"):  # membership keeps no versions: refused, not answered as of now
        refused = viewer.get(path, at="1")
        assert refused.status_code == 400 and "at" in refused.json()["description"], refused.text
    assert server.head() == before


def _http_pages(client: Any, coll: str, filters: dict[str, str], seq: int, limit: int) -> list[list[Any]]:
    """Every page of a filtered list as of entry seq, over HTTP, following next_after."""
    pages, after = [], None
    while True:
        params = {**filters, "at": str(seq), "limit": str(limit), **({"after": after} if after else {})}
        found = ok(client.get(f"/{coll}", **params))
        pages.append(found[coll + "s"])
        after = found.get("next_after")
        if after is None:
            return pages


def _replayed_pages(store: MemoryStore, coll: str, filters: dict[str, str], limit: int) -> list[list[Any]]:
    """The same pages, read now from a replayed state."""
    pages, after = [], None
    while True:
        found = query.find(store, coll, filters, limit=limit, after=after)
        pages.append([json.loads(d) for d in found.documents])
        after = found.next_after
        if after is None:
            return pages


def test_reads_at_a_seq_equal_a_replay_of_the_log_to_that_seq(fresh_server: Server) -> None:
    """A busy ledger over HTTP; then for random (document, seq) and filtered pages, ``?at=seq``
    answers exactly what a fresh state rebuilt from the first seq+1 entries answers now."""
    server = fresh_server
    admin, analytics, viewer, compute, auditor = (
        server.client(n) for n in ("admin", "analytics", "viewer", "compute", "auditor")
    )
    rng = random.Random(15)
    problems = [_problem(2, [new_uuid()]), _problem(1, [])]
    for problem in problems:
        ok(admin.post("/problem", problem), 201)
    uuids: list[tuple[str, str]] = [("problem", p["uuid"]) for p in problems]
    for _ in range(8):  # data, algos, claims and reports, interleaved at random
        action = rng.choice(("data", "algo", "claim", "claim"))
        problem = rng.choice(problems)
        if action == "data":
            data = [new_uuid() for _ in range(rng.randint(1, 3))]
            ok(viewer.post("/data", {"uuid": data, "problems": problem["uuid"]}), 201)
            uuids += [("data", d) for d in data]
        elif action == "algo":
            algo = new_uuid()
            ok(analytics.post("/algo", {"uuid": algo, "name": f"a{rng.randint(0, 9)}", "problem": problem["uuid"]}))
            uuids.append(("algo", algo))
        else:
            todo = learnuplets(server, status="todo")
            if todo:
                uplet = rng.choice(todo)
                ok(compute.post(f"/worker/learnuplet/{uplet['uuid']}", {"worker": new_uuid()}))
                report = {"status": "failed"} if rng.random() < 0.3 else {
                    "status": "done", "perf": rng.random(), "train_perf": {d: 0.5 for d in uplet["train_data"]},
                    "test_perf": {d: 0.5 for d in uplet["test_data"]},
                }
                ok(compute.post(f"/learndone/{uplet['uuid']}", report))
    uuids += [("learnuplet", u["uuid"]) for u in learnuplets(server)]
    uuids.append(("algo", new_uuid()))  # never exists

    entries: list[bytes] = []
    while True:
        page = ok(auditor.get("/ledger/entries", start=str(len(entries)), end=str(len(entries) + 1000)))
        entries += [base64.b64decode(e["raw"]) for e in page["entries"]]
        if page["next"] is None:
            break
    size = len(entries)
    assert size == server.head()["size"]
    sampled = sorted({0, size - 1, *rng.sample(range(size), min(15, size))})

    store, head = MemoryStore(), Head()
    compared = 0
    for seq, raw in enumerate(entries):
        batch = apply_batch(store, head, [decode(raw)])
        store.write(batch.state_writes(), sync=False)
        head = batch.after
        if seq not in sampled:
            continue
        for coll, uuid in rng.sample(uuids, min(8, len(uuids))):
            answer = viewer.get(f"/{coll}/{uuid}", at=str(seq))
            try:
                expected = query.get_document(store, coll, uuid)
            except NotFoundError:
                assert answer.status_code == 404, (coll, uuid, seq, answer.text)
                continue
            assert answer.status_code == 200 and answer.content == expected, (coll, uuid, seq)
            compared += 1
        for coll, filters in (
            ("problem", {}),
            ("data", {"problems": rng.choice(problems)["uuid"]}),
            ("algo", {"problem": rng.choice(problems)["uuid"]}),
            ("learnuplet", {}),
            ("learnuplet", {"status": rng.choice(("todo", "waiting", "done", "failed", "pending"))}),
            ("learnuplet", {"problem": rng.choice(problems)["uuid"], "rank": str(rng.randint(0, 2))}),
        ):
            limit = rng.randint(1, 4)
            assert _http_pages(viewer, coll, filters, seq, limit) == _replayed_pages(store, coll, filters, limit), (
                coll, filters, seq, limit,
            )
    assert compared >= 10  # most sampled reads found a document
    # At the last entry, ?at= is the present state.
    for coll, uuid in uuids[:-1]:
        assert ok(viewer.get(f"/{coll}/{uuid}", at=str(size - 1))) == ok(viewer.get(f"/{coll}/{uuid}"))


def test_a_state_built_before_versions_were_kept_verifies_and_is_rebuilt_with_its_history(tmp_path: Path) -> None:
    """A data dir whose state has no document versions (made before they were kept): verify
    accepts it as it is and says so; the node rebuilds the state from the log when it opens, and
    then the history of documents written before is there."""
    data = tmp_path / "data"
    init_ledger(data)
    server = Server(data, free_port()).start()
    admin = server.client("admin")
    problem = new_uuid()
    body = {"uuid": problem, "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
    assert admin.post("/problem", body).status_code == 201
    server.stop()
    state = plyvel.DB(str(data / "state"))
    try:  # the layout of before: no versions, no layout mark
        old = [key for key, _ in state.iterator(prefix=b"v/")] + [b"s/layout"]
        assert len(old) > 1
        for key in old:
            state.delete(key)
    finally:
        state.close()
    verified = orchestrator("verify", "--data-dir", str(data), check=False, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert "older layout" in verified.stdout
    server.start()
    try:
        history = admin.get(f"/problem/{problem}/history")
        assert history.status_code == 200, history.text
        assert [version["seq"] for version in history.json()] == [1]
    finally:
        server.stop()
    verified = orchestrator("verify", "--data-dir", str(data), check=False, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert "older layout" not in verified.stdout

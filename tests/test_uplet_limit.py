"""One write creates at most `max_uplets_per_write` uplets, a setting fixed in the genesis by `init`."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from conftest import KEYS, Server, free_port, new_uuid, orchestrator

from ledger import keys, machine
from ledger.genesis import genesis_entry

LIMIT = 3


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on a ledger created with --max-uplets-per-write 3."""
    data_dir = tmp_path_factory.mktemp("small") / "data"
    args = ["init", "--data-dir", str(data_dir), "--max-uplets-per-write", str(LIMIT)]
    for name, roles in KEYS.items():
        args += ["--key", f"{name}={roles}"]
    orchestrator(*args)
    srv = Server(data_dir, free_port()).start()
    yield srv
    srv.stop()


def ok(response: requests.Response) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


def refused(server: Server, send: Callable[[], requests.Response], *fragments: str) -> None:
    before = server.head()
    response = send()
    assert response.status_code == 400, response.text
    for fragment in fragments:
        assert fragment in response.json()["description"], response.text
    assert server.head() == before


def problem(server: Server, size: int = 1) -> str:
    uuid = new_uuid()
    body = {"uuid": uuid, "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": size}
    ok(server.client("admin").post("/problem", body))
    return uuid


def data(server: Server, problem: str, n: int) -> list[str]:
    uuids = [new_uuid() for _ in range(n)]
    ok(server.client("viewer").post("/data", {"uuid": uuids, "problems": problem}))
    return uuids


def algo(server: Server, problem: str) -> dict[str, Any]:
    body = {"uuid": new_uuid(), "name": "a", "problem": problem}
    return dict(ok(server.client("analytics").post("/algo", body)))


def test_the_genesis_holds_the_limit(small: Server) -> None:
    entry = ok(small.client("auditor").get("/ledger/entries/0"))["entry"]
    assert entry["genesis"]["max_uplets_per_write"] == LIMIT


def test_an_algo_over_the_limit_is_refused(small: Server) -> None:
    p = problem(small)
    data(small, p, LIMIT + 1)  # no algo yet: no uplets
    body = {"uuid": new_uuid(), "name": "a", "problem": p}
    message = f"would create {LIMIT + 1} uplets; the ledger allows at most {LIMIT} per write"
    refused(small, lambda: small.client("analytics").post("/algo", body), message)
    assert small.client("viewer").get(f"/algo/{body['uuid']}").status_code == 404
    q = problem(small, size=2)
    data(small, q, 2 * LIMIT)  # LIMIT batches of 2: exactly at the limit
    assert algo(small, q)["new_learnuplets"] == LIMIT


def test_data_over_the_limit_is_refused(small: Server) -> None:
    p = problem(small, size=2)
    algo(small, p)
    algo(small, p)
    uuids = [new_uuid() for _ in range(3)]  # two batches for each of two algos: 4
    send = lambda: small.client("viewer").post("/data", {"uuid": uuids, "problems": p})  # noqa: E731
    refused(small, send, "would create 4 uplets", f"at most {LIMIT} per write")
    assert small.client("viewer").get(f"/data/{uuids[0]}").status_code == 404
    # Counted over every named problem: one batch for each of two algos here, and of two there.
    q = problem(small, size=2)
    algo(small, q)
    algo(small, q)
    pair = [new_uuid(), new_uuid()]
    refused(small, lambda: small.client("viewer").post("/data", {"uuid": pair, "problems": [p, q]}),
            "would create 4 uplets")
    body = ok(small.client("viewer").post("/data", {"uuid": pair, "problems": p}))
    assert body["new_learnuplets"] == 2


def test_a_prediction_over_the_limit_is_refused(small: Server) -> None:
    p = problem(small)
    data(small, p, 1)
    (first,) = ok(small.client("viewer").get("/learnuplet", algo=algo(small, p)["new_algo"]["uuid"]))["learnuplets"]
    compute = small.client("compute")
    ok(compute.post(f"/worker/learnuplet/{first['uuid']}", {"worker": new_uuid()}))
    ok(compute.post(f"/learndone/{first['uuid']}", {"status": "done", "perf": 1, "train_perf": [1], "test_perf": []}))
    many = [new_uuid() for _ in range(LIMIT + 2)]
    send = lambda: small.client("viewer").post("/prediction", {"data": many, "problem": p})  # noqa: E731
    refused(small, send, f"would create {LIMIT + 2} uplets", f"at most {LIMIT} per write")
    assert ok(small.client("viewer").get("/preduplet", problem=p))["preduplets"] == []
    created = ok(small.client("viewer").post("/prediction", {"data": many[:LIMIT], "problem": p}))
    assert created["new_preduplets"] == LIMIT


def test_the_default_limit_is_10000(server: Server) -> None:
    """The shared server was created without the flag: 10000."""
    p = problem(server)
    data(server, p, 1)
    algo(server, p)
    many = [new_uuid() for _ in range(10_001)]
    send = lambda: server.client("viewer").post("/data", {"uuid": many, "problems": p})  # noqa: E731
    refused(server, send, "would create 10001 uplets", "at most 10000 per write")


def test_a_genesis_without_the_setting_means_10000() -> None:
    node = keys.public_b64(keys.new_private_key())
    entry = genesis_entry("old/ledger", node, [], 300, 0)
    assert entry.genesis is not None
    del entry.genesis["max_uplets_per_write"]  # as ledgers created before the setting
    writes, _ = machine.apply({}, entry)
    state = {key: value for key, value in writes.items() if value is not None}
    assert machine.config(state)["max_uplets_per_write"] == 10_000

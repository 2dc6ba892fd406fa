"""One title per HTTP status, whoever answers: the engine, Falcon, the probes or gunicorn's parser.

Every error is JSON ``{"title", "description"}`` whose title is the status's standard reason
phrase, the same phrase as on the status line; the description says what went wrong.
"""

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import falcon.testing
import pytest
import requests
from conftest import Server, new_uuid
from signing import Signer

from api.app import create_app
from ledger import keys
from ledger.config import LedgerConfig
from ledger.entry import encode
from ledger.genesis import genesis_entry
from ledger.service import Ledger
from ledger.store import MemoryStore

#: The title a user sees for each status, whichever way it came about.
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _problem() -> dict[str, object]:
    return {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}


@dataclass
class Answer:
    status: int
    reason: str  # the status line's reason phrase
    body: bytes


Send = Callable[[Server], Answer]


def _raw(server: Server, request: bytes) -> Answer:
    """Send bytes as they are, on a connection of their own."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    _, status, reason = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    return Answer(int(status), reason, body)


def _http(response: requests.Response) -> Answer:
    return Answer(response.status_code, response.reason, response.content)


def _duplicate(server: Server) -> requests.Response:
    admin, body = server.client("admin"), _problem()
    assert admin.post("/problem", body).status_code == 201
    return admin.post("/problem", body)


CASES: list[tuple[str, int, Send]] = [
    ("invalid body", 400, lambda s: _http(s.client("admin").post("/problem", {"uuid": "not-a-uuid"}))),
    ("unknown reference", 400, lambda s: _http(s.client("analytics").post(
        "/algo", {"uuid": new_uuid(), "name": "x", "problem": new_uuid()}))),
    ("unknown filter", 400, lambda s: _http(s.client("viewer").get("/problem", colour="blue"))),
    ("unparseable HTTP", 400, lambda s: _raw(
        s, b"GET /ledger/head HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")),
    ("unsigned", 401, lambda s: _http(requests.get(s.url + "/ledger/head", timeout=30))),
    ("wrong role", 403, lambda s: _http(s.client("viewer").post("/problem", _problem()))),
    ("unknown document", 404, lambda s: _http(s.client("viewer").get(f"/problem/{new_uuid()}"))),
    ("unknown endpoint", 404, lambda s: _http(s.client("viewer").get("/no/such/endpoint"))),
    ("method not served", 405, lambda s: _http(requests.delete(s.url + "/ledger/head", timeout=30))),
    ("duplicate uuid", 409, lambda s: _http(_duplicate(s))),
    ("body too large", 413, lambda s: _http(s.client("admin").post("/problem", {"x": "a" * (1024 * 1024)}))),
    ("request line too long", 414, lambda s: _http(requests.get(s.url + "/" + "a" * 10_000, timeout=30))),
    ("not JSON", 415, lambda s: _http(s.client("admin").request(
        "POST", "/problem", data=b"{}", headers={"Content-Type": "text/plain"}))),
    ("header too large", 431, lambda s: _http(requests.get(
        s.url + "/ledger/head", headers={"X-Big": "a" * 10_000}, timeout=30))),
]


@pytest.mark.parametrize("case, status, send", CASES, ids=[case for case, _, _ in CASES])
def test_each_status_has_its_one_title(server: Server, case: str, status: int, send: Send) -> None:
    answer = send(server)
    assert answer.status == status, answer.body
    error = json.loads(answer.body)
    assert error["title"] == TITLES[status], error
    assert answer.reason == TITLES[status]
    assert error["description"] and error["description"] != error["title"], error


# -- in-process: the failures a real server will not produce on demand -----------------------


@pytest.fixture
def app() -> Iterator[tuple[falcon.testing.TestClient, Ledger, Signer]]:
    alice = keys.new_private_key()
    signer = Signer(keys.private_pem(alice), "alice")
    members = [{"key_id": "alice", "public_key": keys.public_b64(alice), "roles": ["admin", "viewer"]}]
    node = keys.new_private_key()
    genesis = genesis_entry("test/ledger", keys.public_b64(node), members, 300, int(time.time() * 1000))
    ledger = Ledger.in_memory(LedgerConfig(), encode(genesis), node)
    yield falcon.testing.TestClient(create_app(ledger)), ledger, signer
    ledger.close()


def _post_problem(client: falcon.testing.TestClient, signer: Signer) -> falcon.testing.Result:
    signed = signer.sign("POST", "/problem", json=_problem())
    return client.simulate_post("/problem", body=signed.body, headers=signed.headers, host="ledger.test")


def _check(result: falcon.testing.Result, status: int) -> None:
    assert result.status_code == status, result.text
    assert result.status == f"{status} {TITLES[status]}"
    assert result.json["title"] == TITLES[status] and result.json["description"] != TITLES[status], result.json


def test_storage_trouble_and_not_ready_are_service_unavailable(app) -> None:
    client, ledger, signer = app
    state: MemoryStore = ledger.state  # type: ignore[assignment]
    log_store: MemoryStore = ledger.log.store  # type: ignore[assignment]
    state.fail_writes = OSError("disk full")
    assert _post_problem(client, signer).status_code == 201  # durable in the log; state lags
    _check(client.simulate_get("/readyz"), 503)
    state.fail_writes = None
    log_store.fail_writes = OSError("I/O error")
    _check(_post_problem(client, signer), 503)


def test_a_server_bug_is_internal_server_error(app, monkeypatch: pytest.MonkeyPatch) -> None:
    client, ledger, signer = app

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ledger, "find", broken)
    signed = signer.sign("GET", "/problem")
    _check(client.simulate_get("/problem", headers=signed.headers, host="ledger.test"), 500)

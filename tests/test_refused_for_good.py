"""Signed bytes this node refused, or already answered, never take effect later: not after
the state changed, not after a restart within the signature window (black-box, over HTTP)."""

import http.client
import uuid
from typing import Any

import requests
from conftest import Server

from ledger import keys
from orchestrator.client import Client


def _signed(client: Client, method: str, path: str, body: Any = None) -> requests.PreparedRequest:
    request = requests.Request(method, client.url + path, json=body).prepare()
    return client.auth()(request)


def _send(client: Client, prepared: requests.PreparedRequest) -> requests.Response:
    return client.session.send(prepared, timeout=30)


def _size(server: Server) -> int:
    return int(server.head()["size"])


def _refused_again(server: Server, client: Client, request: requests.PreparedRequest, status: int) -> None:
    """The same signed bytes, sent again now that the state would allow them: refused as before."""
    size = _size(server)
    again = _send(client, request)
    assert again.status_code == status, again.text
    assert _size(server) == size


def _problem_body(problem: str) -> dict[str, Any]:
    return {"uuid": problem, "workflow": str(uuid.uuid4()), "test_dataset": [], "size_train_dataset": 1}


def test_a_write_refused_for_an_unknown_reference_stays_refused_once_it_exists(fresh_server: Server) -> None:
    admin = fresh_server.client("everything")
    problem = str(uuid.uuid4())
    early = _signed(admin, "POST", "/algo", {"uuid": str(uuid.uuid4()), "name": "early", "problem": problem})
    first = _send(admin, early)
    assert first.status_code == 400, first.text
    assert admin.post("/problem", _problem_body(problem)).status_code == 201
    size = _size(fresh_server)
    again = _send(admin, early)  # the same signed bytes, now that the problem exists
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert _size(fresh_server) == size
    fresh_server.stop()
    fresh_server.start()
    after_restart = _send(admin, early)
    assert (after_restart.status_code, after_restart.json()) == (first.status_code, first.json())
    assert _size(fresh_server) == size
    assert admin.find("algo", problem=problem)["algos"] == []


def test_a_write_refused_for_a_missing_role_stays_refused_once_the_role_is_granted(server: Server) -> None:
    admin = server.client("admin")
    private = keys.new_private_key()
    key_id = "late-" + uuid.uuid4().hex[:8]
    assert admin.post("/nodes", {"key_id": key_id, "public_key": keys.public_b64(private),
                                 "roles": ["viewer"]}).status_code == 201
    member = Client(server.url, keys.private_pem(private), key_id)
    early = _signed(member, "POST", "/problem", _problem_body(str(uuid.uuid4())))
    assert _send(member, early).status_code == 403
    assert admin.post(f"/nodes/{key_id}", {"roles": ["admin", "viewer"]}).status_code == 200
    _refused_again(server, member, early, 403)


def test_a_write_signed_before_its_key_was_registered_never_lands(server: Server) -> None:
    admin = server.client("admin")
    private = keys.new_private_key()
    key_id = "unborn-" + uuid.uuid4().hex[:8]
    member = Client(server.url, keys.private_pem(private), key_id)
    early = _signed(member, "POST", "/problem", _problem_body(str(uuid.uuid4())))
    assert _send(member, early).status_code == 401
    assert admin.post("/nodes", {"key_id": key_id, "public_key": keys.public_b64(private),
                                 "roles": ["admin"]}).status_code == 201
    _refused_again(server, member, early, 401)


def test_a_signed_read_cannot_be_replayed_after_a_restart(fresh_server: Server) -> None:
    admin = fresh_server.client("admin")
    read = _signed(admin, "GET", "/ledger/head")
    assert _send(admin, read).status_code == 200
    assert _send(admin, read).status_code == 401
    fresh_server.stop()
    fresh_server.start()
    replayed = _send(admin, read)
    assert replayed.status_code == 401, replayed.text
    assert "nonce" in replayed.json()["description"]


def test_an_accepted_write_resent_after_a_restart_gets_its_answer_and_appends_nothing(fresh_server: Server) -> None:
    admin = fresh_server.client("admin")
    write = _signed(admin, "POST", "/problem", _problem_body(str(uuid.uuid4())))
    first = _send(admin, write)
    assert first.status_code == 201
    size = _size(fresh_server)
    fresh_server.stop()
    fresh_server.start()
    again = _send(admin, write)
    assert (again.status_code, again.json()) == (201, first.json())
    assert _size(fresh_server) == size


def _raw(server: Server, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    """Send a request exactly as given (Host included) to the server's socket."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_host_that_is_no_authority_is_a_400(server: Server) -> None:
    admin = server.client("admin")
    for host in (f"127.0.0.1:{server.port}/x", f"evil@127.0.0.1:{server.port}", "a b", f"127.0.0.1:{server.port}?q",
                 f"127.0.0.1:{server.port}#f"):
        read = _signed(admin, "GET", "/ledger/head")
        headers = {name: value for name, value in read.headers.items()}
        headers["Host"] = host
        status, body = _raw(server, "GET", "/ledger/head", headers)
        assert status == 400, (host, status, body)
        assert b"not a valid authority" in body, body


def test_a_request_signed_for_another_node_is_refused_and_appends_nothing(server: Server) -> None:
    admin = server.client("admin")
    other = Client(f"http://other.example:{server.port}", admin.key_pem, admin.key_id)
    size = _size(server)
    for method, path, body in (("POST", "/problem", _problem_body(str(uuid.uuid4()))), ("GET", "/ledger/head", None)):
        prepared = _signed(other, method, path, body)
        headers = {name: value for name, value in prepared.headers.items()}
        headers["Host"] = f"other.example:{server.port}"
        raw_body = prepared.body if isinstance(prepared.body, bytes) else (prepared.body or "").encode()
        status, answer = _raw(server, method, path, headers, raw_body)
        assert status == 421, (status, answer)
        assert b"other.example" in answer
    assert _size(server) == size
    # The loopback forms of the bind address are this node's names.
    local = Client(f"http://localhost:{server.port}", admin.key_pem, admin.key_id)
    assert local.get("/ledger/head").status_code == 200

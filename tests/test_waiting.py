"""Compute that waits for work, over HTTP (issue 12): `GET /{collection}?...&wait=S` answers at
once when something matches, else as soon as a matching document appears, else with the empty
list once S seconds pass; `GET /ledger/entries?start=N&wait=S` with N the log size waits for the
next entry. No thread per waiting request; a client that goes away stops its wait; stopping the
server answers every waiting request at once. The only times checked are the S seconds
themselves.
"""

import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, free_port, init_ledger, new_uuid
from reliability.test_bad_input import request_bytes, signed_header_list
from test_health_metrics import scrape, value

from orchestrator.client import BadRequest, Client


class Later(threading.Thread):
    """Runs a call in the background; ``result`` and the seconds it took once it is done."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.result: Any = None
        self.error: BaseException | None = None
        self.took = 0.0
        self.start()

    def run(self) -> None:
        started = time.monotonic()
        try:
            self.result = self.call()
        except BaseException as e:  # re-raised by get()
            self.error = e
        self.took = time.monotonic() - started

    def get(self, timeout: float = 90) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "still waiting"
        if self.error is not None:
            raise self.error
        return self.result


def _problem(client: Client, problem: str | None = None) -> str:
    problem = problem or new_uuid()
    client.add_problem(problem, new_uuid(), test_dataset=[], size_train_dataset=1)
    return problem


def _waiting_count(server: Server) -> float:
    return value(scrape(server)[1], "orchestrator_waiting_requests")


def _until(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(0.05)


def test_a_wait_is_answered_at_once_when_something_matches(server: Server) -> None:
    admin = server.client("everything")
    problem = _problem(admin)
    started = time.monotonic()
    (found,) = admin.wait_for("problem", uuid=problem, wait=60)
    assert found["uuid"] == problem and time.monotonic() - started < 60


def test_a_wait_is_answered_when_a_matching_document_appears(server: Server) -> None:
    admin, compute = server.client("everything"), server.client("compute")
    problem = new_uuid()
    waiting = Later(lambda: compute.wait_for("problem", uuid=problem, wait=60))
    _until(lambda: _waiting_count(server) >= 1)
    _problem(admin)  # another problem: the wait goes on
    time.sleep(1)
    assert waiting.is_alive()
    _problem(admin, problem)
    (found,) = waiting.get()
    assert found["uuid"] == problem and waiting.took < 60


def test_a_compute_node_waiting_for_todo_work_gets_each_new_learnuplet(server: Server) -> None:
    """The Compute loop of the README: wait for a todo learnuplet, claim it, report; the claim (an
    update, not a new document) answers a wait on the worker too."""
    admin, compute = server.client("everything"), server.client("compute")
    problem = _problem(admin)
    admin.add_data(new_uuid(), problem)
    waiting = Later(lambda: compute.wait_for("learnuplet", problem=problem, status="todo", wait=60))
    _until(lambda: _waiting_count(server) >= 1)
    algo = new_uuid()
    admin.add_algo(algo, "waited-for", problem)
    (uplet,) = waiting.get()
    assert uplet["algo"] == algo and uplet["status"] == "todo" and waiting.took < 60
    worker = new_uuid()
    claimed = Later(lambda: compute.wait_for("learnuplet", worker=worker, wait=60))
    _until(lambda: _waiting_count(server) >= 1)
    compute.set_worker("learnuplet", uplet["uuid"], worker)
    (mine,) = claimed.get()
    assert mine["uuid"] == uplet["uuid"] and mine["status"] == "pending"


def test_a_wait_with_nothing_matching_answers_the_empty_list_once_its_seconds_pass(server: Server) -> None:
    viewer = server.client("viewer")
    for path, key in (("/algo", "algos"), ("/learnuplet", "learnuplets")):
        started = time.monotonic()
        response = viewer.get(path, problem=new_uuid(), wait="1.5")
        assert response.status_code == 200 and response.json() == {key: []}
        assert time.monotonic() - started >= 1.5
    assert viewer.wait_for("preduplet", data=new_uuid(), wait=0.5) == []


@pytest.mark.parametrize("wait", ["0", "0.000", "61", "60.01", "-1", "abc", "", "1e3", "inf"])
def test_wait_must_be_more_than_zero_and_at_most_sixty_seconds(server: Server, wait: str) -> None:
    viewer, auditor = server.client("viewer"), server.client("auditor")
    size = server.head()["size"]
    for client, path, params in ((viewer, "/problem", {}), (auditor, "/ledger/entries", {"start": str(size)})):
        response = client.get(path, **params, wait=wait)
        assert response.status_code == 400, response.text
        assert "'wait'" in response.json()["description"]
    with pytest.raises(BadRequest, match="'wait'"):
        viewer.wait_for("problem", wait=float(wait) if wait.replace(".", "").isdigit() else 61)


def test_wait_is_not_a_filter_and_is_given_once(server: Server) -> None:
    viewer = server.client("viewer")
    response = viewer.request("GET", "/problem?wait=1&wait=2")
    assert response.status_code == 400 and "'wait' is given more than once" in response.json()["description"]
    response = viewer.get("/nodes", wait="1")  # /nodes has no wait: refused, not answered at once as if it had
    assert response.status_code == 400 and "unknown query parameter 'wait'" in response.json()["description"]


def test_the_other_errors_of_a_list_come_at_once(server: Server) -> None:
    viewer = server.client("viewer")
    for params, status, fragment in (
        ({"color": "red"}, 400, "unknown filter field 'color'"),
        ({"after": new_uuid()}, 400, "after: no problem"),
        ({"limit": "0"}, 400, "limit must be between"),
    ):
        started = time.monotonic()
        response = viewer.get("/problem", **params, wait="60")
        assert response.status_code == status and fragment in response.json()["description"], response.text
        assert time.monotonic() - started < 60
    assert viewer.get("/nothing", wait="60").status_code == 404


def test_a_follower_waits_for_the_next_entry(server: Server) -> None:
    admin, auditor = server.client("everything"), server.client("auditor")
    size = server.head()["size"]
    assert auditor.get("/ledger/entries", start=str(size)).status_code == 400  # without wait, as before
    following = Later(lambda: auditor.entries(size, wait=60))
    _until(lambda: _waiting_count(server) >= 1)
    _problem(admin)
    page = following.get()
    assert [e["seq"] for e in page["entries"]] == [size] and page["size"] == size + 1 and page["next"] is None
    assert page["entries"][0]["entry"]["target"].endswith("/problem") and following.took < 60
    # Nothing comes: the empty page once the seconds pass; beyond the log it is a 400 still.
    started = time.monotonic()
    assert auditor.entries(size + 1, wait=1) == {"entries": [], "size": size + 1, "next": None}
    assert time.monotonic() - started >= 1
    response = auditor.get("/ledger/entries", start=str(size + 2), wait="1")
    assert response.status_code == 400 and "beyond the log" in response.json()["description"]
    # A start inside the log is answered at once, wait or not.
    assert auditor.entries(size, wait=60)["entries"][0]["seq"] == size


def test_a_waiting_request_used_its_nonce_when_it_arrived(server: Server) -> None:
    """Authenticated once, on arrival: the same signed bytes sent again while the first waits are a replay."""
    viewer = server.client("viewer")
    path = f"/problem?uuid={new_uuid()}&wait=2"
    headers = signed_header_list(viewer, "GET", path)
    raw = request_bytes("GET", path, headers)
    first = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    first.sendall(raw)
    _until(lambda: _waiting_count(server) >= 1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as again:
        again.sendall(raw)
        answer = _read_all(again)  # Connection: close, so the whole answer, then the end
    assert answer.startswith(b"HTTP/1.1 401 ") and b"nonce" in answer, answer
    with first:
        assert _read_all(first).startswith(b"HTTP/1.1 200 ")


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _worker_pid(server: Server) -> int:
    assert server.process is not None
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    (pid,) = [int(child) for child in children]
    return pid


WAITERS = 500


@pytest.fixture
def small_pool(tmp_path: Path) -> Any:
    """A server of its own with a read pool of 4 threads (so that its thread count says something)."""
    data_dir = tmp_path / "data"
    init_ledger(data_dir)
    srv = Server(data_dir, free_port(), args=("--threads", "4")).start()
    yield srv
    srv.stop()


def test_many_waiting_requests_hold_no_thread_and_those_that_go_away_cost_nothing(small_pool: Server) -> None:
    server = small_pool
    admin, viewer = server.client("everything"), server.client("viewer")
    viewer.find("problem", workflow=new_uuid())  # the read pool warmed up
    worker = _worker_pid(server)
    threads = _threads(worker)
    problem = new_uuid()
    path = f"/problem?uuid={problem}&wait=60"
    socks = []
    for _ in range(WAITERS):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        sock.sendall(request_bytes("GET", path, signed_header_list(viewer, "GET", path)))
        socks.append(sock)
    _until(lambda: _waiting_count(server) == WAITERS)
    assert _threads(worker) <= threads + 4, "a thread per waiting request"  # at most the rest of the pool
    # A fifth of them go away: their waits end now, not in 60 s.
    gone, staying = socks[: WAITERS // 5], socks[WAITERS // 5 :]
    for sock in gone:
        sock.close()
    _until(lambda: _waiting_count(server) == len(staying))
    _problem(admin, problem)
    for sock in staying:
        with sock:
            answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 200 ") and problem.encode() in answer
    assert _waiting_count(server) == 0


def test_a_client_that_half_closes_while_it_waits_gets_its_answer_now(server: Server) -> None:
    viewer = server.client("viewer")
    path = f"/problem?uuid={new_uuid()}&wait=60"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(request_bytes("GET", path, signed_header_list(viewer, "GET", path)))
        _until(lambda: _waiting_count(server) >= 1)
        sock.shutdown(socket.SHUT_WR)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"problems":[]}')
    assert time.monotonic() - started < 60


def test_stopping_the_server_answers_the_waiting_requests_at_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    init_ledger(data_dir)
    srv = Server(data_dir, free_port()).start()
    try:
        viewer, auditor = srv.client("viewer"), srv.client("auditor")
        size = srv.head()["size"]
        lists = [Later(lambda: viewer.wait_for("algo", problem=str(uuid.uuid4()), wait=60)) for _ in range(5)]
        following = Later(lambda: auditor.entries(size, wait=60))
        _until(lambda: _waiting_count(srv) == 6)
        started = time.monotonic()
        srv.stop()  # SIGTERM
        assert time.monotonic() - started < 60
        assert [waiting.get() for waiting in lists] == [[]] * 5
        assert following.get() == {"entries": [], "size": size, "next": None}
    finally:
        srv.stop()


def test_the_waiting_figures_are_in_the_metrics(server: Server) -> None:
    viewer = server.client("viewer")
    text, samples = scrape(server)
    assert "# HELP orchestrator_waiting_requests Requests waiting for the ledger to change" in text
    assert re.search(r"^# TYPE orchestrator_wait_looks(_total)? counter$", text, flags=re.MULTILINE)
    looks = value(samples, "orchestrator_wait_looks_total")
    worker = new_uuid()
    waiting = Later(lambda: viewer.wait_for("learnuplet", worker=worker, wait=60))
    _until(lambda: _waiting_count(server) >= 1)
    admin = server.client("everything")
    problem = _problem(admin)
    admin.add_data(new_uuid(), problem)
    admin.add_algo(new_uuid(), "looked-for", problem)  # a new learnuplet without that worker: no look
    time.sleep(0.5)
    assert value(scrape(server)[1], "orchestrator_wait_looks_total") == looks and waiting.is_alive()
    (uplet,) = admin.find("learnuplet", problem=problem)["learnuplets"]
    server.client("compute").set_worker("learnuplet", uplet["uuid"], worker)  # it changed: one look, a match
    assert [u["uuid"] for u in waiting.get()] == [uplet["uuid"]]
    assert value(scrape(server)[1], "orchestrator_wait_looks_total") == looks + 1

"""Slow and idle clients cannot starve the others (one event loop serves every connection).

The server holds 1,000 idle connections (connected, nothing sent) and 150 connections that
send a write's body one byte a second, while another client's signed GETs are each answered
within a second, every time. The one timing bound here is the issue's own (1 s). Loopback
only; every loop is bounded; the server's read timeouts are raised for the test so that it
keeps every slow connection for the whole run (a real one drops them: tests/test_http_layer.py).
"""

import os
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import FULL, Server, free_port, init_ledger, report
from reliability.test_bad_input import request_bytes, signed_header_list

IDLE = 1000
DRIPPING = 150
ROUNDS = 30 if FULL else 10  # signed GETs, one about every half second
BOUND_S = 1.0  # the bound for each answer
BODY = 200  # bytes each dripping client announces (it never gets to send them all)


@pytest.fixture
def patient(tmp_path: Path) -> Iterator[Server]:
    """A server with room for every connection, keeping slow ones for longer than the test runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * (IDLE + DRIPPING)
    if soft < wanted:  # the server inherits the raised limit
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs {wanted} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    data_dir = tmp_path / "data"
    init_ledger(data_dir)
    srv = Server(data_dir, free_port(), args=("--header-timeout", "120", "--body-timeout", "120")).start()
    try:
        yield srv
    finally:
        srv.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _connect(server: Server, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def _open_files(server: Server) -> int:
    """Files the server's worker process holds open (its connections among them)."""
    assert server.process is not None
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return len(os.listdir(f"/proc/{children[0]}/fd"))


def _drip(socks: list[socket.socket], body: bytes, stop: threading.Event) -> None:
    """One byte of the body a second on every socket, until stopped (at most len(body) seconds)."""
    for offset in range(len(body)):
        for sock in socks:
            try:
                sock.send(body[offset : offset + 1])
            except BlockingIOError:
                pass
        if stop.wait(1.0):
            return


def test_idle_and_dripping_clients_do_not_delay_a_signed_get(patient: Server) -> None:
    viewer = patient.client("viewer")
    before = patient.head()
    idle = _connect(patient, IDLE)
    dripping = _connect(patient, DRIPPING)
    body = b'{"uuid": "' + b"0" * (BODY - 10)
    headers = signed_header_list(patient.client("admin"), "POST", "/problem", body,
                                 headers={"Content-Type": "application/json"})
    head = request_bytes("POST", "/problem", [*headers, ("Content-Length", str(BODY))], framing=False)
    for sock in dripping:
        sock.setblocking(True)
        sock.sendall(head)
        sock.setblocking(False)
    stop = threading.Event()
    dripper = threading.Thread(target=_drip, args=(dripping, body, stop), daemon=True)
    dripper.start()
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + 30  # setting up: until the server has accepted every connection
        while _open_files(patient) < IDLE + DRIPPING and time.monotonic() < deadline:
            time.sleep(0.1)
        for round_ in range(ROUNDS):
            fresh = round_ % 2 == 0  # a new connection every other time, the client's keep-alive one otherwise
            started = time.monotonic()
            if fresh:
                response = requests.get(patient.url + "/ledger/head", auth=viewer.auth(), timeout=10)
            else:
                response = viewer.get("/ledger/head")
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
            time.sleep(0.5)
        held = _open_files(patient)
        # The slow clients were held all along: none was answered or dropped.
        poller = select.poll()
        for sock in idle + dripping:
            poller.register(sock, select.POLLIN)
        readable = poller.poll(0)
        assert not readable, f"{len(readable)} slow or idle connections were answered or closed"
        assert held >= IDLE + DRIPPING, f"the server holds {held} files: it did not accept every connection"
    finally:
        stop.set()
        dripper.join(timeout=5)
        for sock in idle + dripping:
            sock.close()
    ordered = sorted(latencies)
    report("slow clients", idle=IDLE, dripping=DRIPPING, server_files=held, gets=len(latencies),
           median_ms=round(ordered[len(ordered) // 2] * 1000, 1), slowest_ms=round(ordered[-1] * 1000, 1))
    assert max(latencies) < BOUND_S, f"a signed GET took {max(latencies):.2f} s: {latencies}"
    assert patient.head() == before, "a dripped body was appended"

"""The HTTP layer under the event loop, black-box against real servers over raw sockets.

Forwarded headers change nothing a signature covers; a body over the limit is refused before
it is sent; a client that half-closes is still answered; slow heads and bodies are dropped
with a JSON 408; a full write queue answers 503 with Retry-After and appends nothing; a client
that goes away never loses a write handed to the ledger, and its resend gets the outcome.
"""

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, free_port, init_ledger
from reliability.test_bad_input import (
    _read_response,
    assert_json_error,
    raw_exchange,
    request_bytes,
    signed_header_list,
)
from test_rejections import LIMIT, assert_rejected, ok, problem_body, signed

from orchestrator.client import Client


def _started(tmp_path: Path, *args: str) -> Server:
    data_dir = tmp_path / "data"
    init_ledger(data_dir)
    return Server(data_dir, free_port(), args=args).start()


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[Server]:
    """A server that gives a request head 1 s and a body 2 s."""
    srv = _started(tmp_path, "--header-timeout", "1", "--body-timeout", "2")
    yield srv
    srv.stop()


@pytest.fixture
def one_queued(tmp_path: Path) -> Iterator[Server]:
    """A server that lets one write wait for its commit at a time."""
    srv = _started(tmp_path, "--max-queued-writes", "1")
    yield srv
    srv.stop()


def _write_bytes(client: Client, path: str = "/problem", body: dict[str, Any] | None = None) -> bytes:
    """A whole signed write, as bytes on the wire (keep-alive: the server may answer and wait for more)."""
    data = json.dumps(body if body is not None else problem_body()).encode()
    headers = signed_header_list(client, "POST", path, data, headers={"Content-Type": "application/json"})
    return request_bytes("POST", path, headers, data)


def _log_signatures(server: Server, start: int) -> list[str]:
    """The Signature field of every entry from ``start`` on."""
    auditor = server.client("everything")
    signatures: list[str] = []
    while True:
        page = ok(auditor.get("/ledger/entries", start=str(start), end=str(start + 1000)))
        signatures += [e["entry"]["headers"]["signature"] for e in page["entries"]]
        if page["next"] is None:
            return signatures
        start = page["next"]


# -- forwarded headers ----------------------------------------------------------------------

FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "ledger.example",
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Port": "443",
    "Forwarded": "for=203.0.113.9;proto=https;host=ledger.example",
}


def test_forwarded_headers_never_change_what_a_signature_covers(server: Server) -> None:
    """The connection's scheme and the Host field make @target-uri and @authority, whatever a proxy claims."""
    admin = server.client("admin")
    plain = signed(admin, "POST", "/problem", json=problem_body())
    plain.headers.update(FORWARDED)  # not covered by the signature: only decoration
    ok(admin.session.send(plain, timeout=30), 201)

    for scheme, authority in (("https", f"127.0.0.1:{server.port}"), ("https", "ledger.example"),
                              ("http", "ledger.example")):
        elsewhere = Client(f"{scheme}://{authority}", admin.key_pem, admin.key_id)
        request = signed(elsewhere, "POST", "/problem", json=problem_body())
        request.url = admin.url + "/problem"  # sent over plain HTTP to the real authority
        request.headers.update(FORWARDED)
        request.headers["Host"] = f"127.0.0.1:{server.port}"
        assert_rejected(server, lambda request=request: admin.session.send(request, timeout=30), 401, "signature")


# -- the body limit, half-closes ----------------------------------------------------------------


def test_an_announced_body_over_the_limit_gets_413_before_a_byte_of_it(server: Server) -> None:
    """The app starts at the end of the head: no body byte is needed for the 413 (the body timeout is 30 s)."""
    path, size = "/problem", 10 * LIMIT
    json_type = {"Content-Type": "application/json"}
    headers = signed_header_list(server.client("admin"), "POST", path, b"x" * 10, headers=json_type)
    before = server.head()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes("POST", path, [*headers, ("Content-Length", str(size))], framing=False))
        raw = _read_response(sock, time.monotonic())
    assert_json_error(raw, 413, str(size), str(LIMIT))
    assert server.head() == before


def test_a_client_that_half_closes_after_its_request_is_answered(server: Server) -> None:
    before = server.head()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_write_bytes(server.client("admin")))
        sock.shutdown(socket.SHUT_WR)
        raw = _read_response(sock, time.monotonic())
        assert sock.recv(1) == b""  # then the server closes
    assert raw.status == 201, raw.body
    assert server.head()["size"] == before["size"] + 1


@pytest.mark.parametrize(
    "fields, status, fragment",
    [
        ([(f"X-Pad-{i}", "a" * 8000) for i in range(9)], 431, "request head over 65536 bytes"),
        ([(f"X-Pad-{i}", "a") for i in range(101)], 431, "more than 100 header fields"),
    ],
    ids=["head-over-64k", "101-fields"],
)
def test_over_large_request_heads_get_a_json_431(server: Server, fields: list[tuple[str, str]], status: int,
                                                 fragment: str) -> None:
    before = server.head()
    raw = raw_exchange(server, request_bytes("GET", "/ledger/head", [("Host", "x"), *fields]))
    assert_json_error(raw, status, "malformed HTTP request", fragment)
    assert server.head() == before


def test_a_header_field_that_never_ends_gets_431_once_the_head_passes_64k(server: Server) -> None:
    """An unterminated field is not parsed yet, so the bytes read are counted: the server does not buffer it all."""
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /ledger/head HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        while sent < 4 * 1024 * 1024 and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(b"a" * 16384)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 16384
        raw = _read_response(sock, time.monotonic())
    assert_json_error(raw, 431, "malformed HTTP request", "request head over 65536 bytes")
    assert sent < 4 * 1024 * 1024


@pytest.mark.parametrize(
    "fields, status, fragment",
    [
        ([("Expect", "magic"), ("Content-Length", "0")], 417, "unsupported expectation 'magic'"),
        ([("Transfer-Encoding", "gzip")], 501, "Transfer-Encoding"),
    ],
    ids=["unknown-expectation", "transfer-coding-gzip"],
)
def test_what_gunicorn_refused_with_417_and_501_still_is(server: Server, fields: list[tuple[str, str]], status: int,
                                                         fragment: str) -> None:
    request = request_bytes("POST", "/problem", [("Host", "x"), *fields], framing=False)
    assert_json_error(raw_exchange(server, request), status, "malformed HTTP request", fragment)


# -- read timeouts --------------------------------------------------------------------------------


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_slow_request_head_gets_408_and_is_dropped(impatient: Server) -> None:
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as sock:
        sock.sendall(b"GET /ledger/head HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        raw = _read_response(sock, time.monotonic())
        assert _closed(sock)
    assert_json_error(raw, 408, "the request head did not arrive within 1 s")


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(impatient: Server) -> None:
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as sock:
        assert _closed(sock)


def test_a_slow_body_gets_408_is_dropped_and_appends_nothing(impatient: Server) -> None:
    data = b'{"uuid": "'
    headers = signed_header_list(impatient.client("admin"), "POST", "/problem", data,
                                 headers={"Content-Type": "application/json"})
    before = impatient.head()
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as sock:
        sock.sendall(request_bytes("POST", "/problem", [*headers, ("Content-Length", "100")], framing=False) + data)
        raw = _read_response(sock, time.monotonic())
        assert _closed(sock)
    assert_json_error(raw, 408, "the request body could not be read", "within 2 s")
    assert impatient.head() == before


# -- the write queue bound ------------------------------------------------------------------------


def test_a_full_write_queue_answers_503_with_retry_after_and_appends_nothing(one_queued: Server) -> None:
    """64 writes at once against a queue of one: the refused ones are not appended, and their nonce stays
    unused, so sending the very same bytes again later is accepted."""
    admin = one_queued.client("admin")
    writes = [_write_bytes(admin) for _ in range(64)]
    before = one_queued.head()["size"]
    socks = [socket.create_connection(("127.0.0.1", one_queued.port), timeout=30) for _ in writes]
    try:
        for sock, data in zip(socks, writes, strict=True):
            sock.sendall(data)
        answers = [_read_response(sock, time.monotonic()) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    statuses = [a.status for a in answers]
    assert set(statuses) <= {201, 503}, statuses
    refused = [data for data, answer in zip(writes, answers, strict=True) if answer.status == 503]
    assert refused, "no write was refused: the queue bound did not hold"
    for answer in answers:
        if answer.status == 503:
            assert answer.headers["retry-after"] == "1"
            assert_json_error(answer, 503, "writes are waiting to be committed", "the limit is 1")
    assert one_queued.head()["size"] == before + statuses.count(201)
    for data in refused:  # one at a time: each fits in the queue
        assert raw_exchange(one_queued, data).status == 201
    assert one_queued.head()["size"] == before + len(writes)


# -- clients that go away -------------------------------------------------------------------------


def test_a_client_that_goes_away_never_cancels_its_write_and_a_resend_gets_the_outcome(server: Server) -> None:
    """Writes whose clients close their socket right after sending: each is committed at most once, and
    the exact resend of each is answered with its outcome (the entry it made, or a new one if the server
    had not started it), so every write is in the log exactly once."""
    admin = server.client("admin")
    writes = [_write_bytes(admin) for _ in range(32)]
    start = server.head()["size"]
    for data in writes:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(data)
        sock.close()  # gone before any answer
    answers = [raw_exchange(server, data) for data in writes]
    assert [a.status for a in answers] == [201] * len(writes), [a.body for a in answers]
    signatures = _log_signatures(server, start)
    assert len(signatures) == len(writes) == len(set(signatures)), "a write is missing from the log or in it twice"
    for answer in answers:  # each answer's receipt is the entry of its own signature
        seq = answer.json()["receipt"]["seq"]
        entry = ok(server.client("everything").get(f"/ledger/entries/{seq}"))["entry"]
        assert entry["headers"]["signature"] in signatures
    assert server.head()["size"] == start + len(writes)

"""Hand-picked bad input, beyond tests/test_rejections.py, black-box against the real server.

Deep nesting in every write endpoint, huge numbers in bodies and queries, 10 MB bodies that
must get 413 without being read whole, content types that are not JSON, malformed or
injected header fields (sent over a raw socket, as no well-behaved client would send them),
signatures over another path, method, authority, query or body, `created` values a stock
client cannot produce, one nonce raced by concurrent writes, revoked keys and wrong roles.

Every case gets a JSON ``{"title", "description"}`` 4xx that says what is wrong, never a 5xx,
and leaves the ledger head (log size and state digest) unchanged.
"""

import base64
import gzip
import hashlib
import json
import secrets
import select
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from conftest import Server, new_uuid
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from test_rejections import (
    LIMIT,
    assert_rejected,
    auth_for,
    fixed_nonce,
    make_problem,
    new_member,
    ok,
    pending_learnuplet,
    post_raw,
    problem_body,
    signed,
)

from orchestrator.client import Client

TEN_MB = 10 * 1024 * 1024

# -- raw HTTP ---------------------------------------------------------------------------


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the last byte sent to the whole response

    def json(self) -> Any:
        return json.loads(self.body)


def _read_response(sock: socket.socket, started: float) -> Raw:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Raw(int(lines[0].split(" ")[1]), headers, body[:length], time.monotonic() - started)


def raw_exchange(server: Server, request: bytes, timeout: float = 10) -> Raw:
    """Send bytes as they are on a fresh connection; the response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        return _read_response(sock, time.monotonic())


def request_bytes(
    method: str, target: str, headers: list[tuple[str, str | bytes]], body: bytes = b"", *, framing: bool = True
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1")]
    for name, value in headers:
        lines.append(name.encode("latin-1") + b": " + (value if isinstance(value, bytes) else value.encode("latin-1")))
    if framing:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def signed_header_list(
    client: Client, method: str, path: str, body: bytes = b"", **kwargs: Any
) -> list[tuple[str, str]]:
    """The header fields the stock client sends for this request (signature included), Host first."""
    prepared = signed(client, method, path, data=body or None, **kwargs)
    headers = [(name, str(value)) for name, value in prepared.headers.items() if name.lower() != "content-length"]
    return [("Host", f"127.0.0.1:{client.url.rsplit(':', 1)[1]}"), *headers]


def assert_json_error(raw: Raw, status: int | tuple[int, ...], *fragments: str) -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert raw.status in statuses, f"expected {statuses}, got {raw.status}: {raw.body!r}"
    assert raw.headers.get("content-type") == "application/json", raw.headers
    error = raw.json()
    assert set(error) == {"title", "description"} and error["title"] and error["description"], error
    for fragment in fragments:
        assert fragment in error["description"], f"{fragment!r} not in {error['description']!r}"
    return dict(error)


def rejected_raw(server: Server, request: bytes, status: int | tuple[int, ...], *fragments: str) -> dict[str, Any]:
    before = server.head()
    error = assert_json_error(raw_exchange(server, request), status, *fragments)
    assert server.head() == before, "a refused request changed the ledger"
    return error


# -- deep nesting -------------------------------------------------------------------------

DEPTH = 100_000
NESTINGS = {
    "open-objects": b'{"a":' * DEPTH,
    "balanced-arrays": b"[" * DEPTH + b"]" * DEPTH,
    "balanced-objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "arrays-in-objects": b'{"a":[' * (DEPTH // 2) + b"]}" * (DEPTH // 2),
}


def _write_paths(server: Server) -> dict[str, str]:
    member = new_member(server, ["viewer"]).key_id
    return {
        "problem": "/problem",
        "data": "/data",
        "worker": f"/worker/learnuplet/{new_uuid()}",
        "learndone": f"/learndone/{new_uuid()}",
        "nodes": "/nodes",
        "nodes-roles": f"/nodes/{member}",
        "nodes-revoke": f"/nodes/{member}/revoke",
    }


@pytest.mark.parametrize("nesting", list(NESTINGS))
def test_deeply_nested_json_on_every_write_endpoint(server: Server, nesting: str) -> None:
    everything = server.client("everything")
    for path in _write_paths(server).values():
        send = lambda path=path: post_raw(everything, path, NESTINGS[nesting])  # noqa: E731
        assert_rejected(server, send, 400, "nested too deeply")


def test_deep_but_parseable_nesting_names_the_field(server: Server) -> None:
    """500 levels parse; the field that holds them is refused by name."""
    deep = "[" * 500 + "]" * 500
    raw = f'{{"uuid": "{new_uuid()}", "workflow": "{new_uuid()}", "test_dataset": {deep}, "size_train_dataset": 1}}'
    assert_rejected(server, lambda: post_raw(server.client("admin"), "/problem", raw.encode()), 400, "test_dataset")
    uplet = pending_learnuplet(server)
    body = f'{{"status": "done", "perf": 1, "train_perf": [{deep}], "test_perf": []}}'
    compute = server.client("compute")
    assert_rejected(server, lambda: post_raw(compute, f"/learndone/{uplet['uuid']}", body.encode()), 400, "train_perf")


# -- huge numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "literal, fragment",
    [
        (b"1e308", "size_train_dataset"),
        (b"1E2", "size_train_dataset"),
        (b"-0", "size_train_dataset"),
        (b"1" + b"0" * 400, "size_train_dataset"),
        (b"9" * 4300, "size_train_dataset"),
        (b"9" * 4301, "integer literal is too long"),
        (b"9" * 900_000, "integer literal is too long"),
        (b"1e999999999999", "not a finite double"),
        (b"0." + b"0" * 1000 + b"1e-400", "size_train_dataset"),
    ],
    ids=["1e308", "1E2", "minus-zero", "401-digits", "4300-digits", "4301-digits", "900k-digits", "huge-exponent",
         "underflow"],
)
def test_huge_numbers_in_a_body(server: Server, literal: bytes, fragment: str) -> None:
    raw = b'{"uuid": "%s", "workflow": "%s", "test_dataset": [], "size_train_dataset": %s}' % (
        new_uuid().encode(), new_uuid().encode(), literal
    )
    assert_rejected(server, lambda: post_raw(server.client("admin"), "/problem", raw), 400, fragment)


@pytest.mark.parametrize(
    "path, status, fragment",
    [
        ("/ledger/entries?start=" + "9" * 19, 400, "'start'"),
        ("/ledger/entries?start=0&end=" + "9" * 400, 400, "'end'"),
        ("/ledger/entries?start=1e3", 400, "'start'"),
        ("/ledger/entries/" + "9" * 400, 404, "no entry"),
        ("/ledger/entries/-1", 404, "no entry"),
        ("/ledger/proofs/inclusion?seq=" + "9" * 18, 400, "seq"),
        ("/ledger/proofs/consistency?first=1&second=" + "9" * 18, 400, "second"),
        ("/problem?limit=" + "9" * 12, 400, "limit"),
        ("/problem?limit=10001", 400, "limit"),
        ("/problem?limit=-1", 400, "limit"),
    ],
)
def test_huge_numbers_in_a_query_or_path(server: Server, path: str, status: int, fragment: str) -> None:
    assert_rejected(server, lambda: server.client("everything").get(path), status, fragment)


# -- 10 MB bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [("POST", "/problem"), ("GET", "/problem"), ("POST", "/nodes")])
def test_ten_megabytes_announced_get_413_before_they_are_sent(server: Server, method: str, path: str) -> None:
    """Content-Length: 10 MB, then only a few bytes: the 413 comes at once, without waiting for the rest."""
    body = json.dumps(problem_body()).encode().ljust(TEN_MB)
    json_type = {"Content-Type": "application/json"}
    headers = signed_header_list(server.client("everything"), method, path, body, headers=json_type)
    headers.append(("Content-Length", str(TEN_MB)))
    before = server.head()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes(method, path, headers, framing=False) + body[:16])
        raw = _read_response(sock, time.monotonic())
    assert raw.seconds < 2, f"the 413 took {raw.seconds:.2f} s: the server waited for the body"
    assert_json_error(raw, 413, str(TEN_MB), str(LIMIT))
    assert server.head() == before


def test_a_chunked_ten_megabyte_stream_gets_413_before_it_ends(server: Server) -> None:
    """Without Content-Length the limit holds while reading: 413 once past it, long before 10 MB."""
    body = json.dumps(problem_body()).encode().ljust(TEN_MB)
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    client = server.client("admin")
    auth = auth_for(client, use_existing_digest=True)
    stream = iter([b""])  # a streamed body: the signer takes the digest as given
    headers_in = {"Content-Type": "application/json", "Content-Digest": digest}
    prepared = auth(requests.Request("POST", client.url + "/problem", data=stream, headers=headers_in).prepare())
    assert prepared.headers["Transfer-Encoding"] == "chunked"
    headers: list[tuple[str, str | bytes]] = [("Host", f"127.0.0.1:{server.port}")]
    headers += [(k, str(v)) for k, v in prepared.headers.items()]
    before = server.head()
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes("POST", "/problem", headers, framing=False))
        while sent < TEN_MB and not select.select([sock], [], [], 0)[0]:
            piece = body[sent : sent + 65536]
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except (BrokenPipeError, ConnectionResetError):
                break  # the server has answered and closed: read its answer
            sent += len(piece)
        raw = _read_response(sock, time.monotonic())
    assert_json_error(raw, 413, str(LIMIT))
    assert LIMIT < sent < TEN_MB, f"sent {sent} bytes before the 413"
    assert server.head() == before


@pytest.mark.parametrize(
    "chunks, half_close, fragment",
    [
        (b"ZZ\r\nabc\r\n0\r\n\r\n", False, "chunk size"),
        (b"3\r\nabcdef\r\n0\r\n\r\n", False, "chunk terminator"),
        (b"40\r\n{\"uuid\"", True, "could not be read"),
    ],
    ids=["bad-chunk-size", "chunk-overrun", "cut-off"],
)
def test_malformed_chunked_bodies_are_400(server: Server, chunks: bytes, half_close: bool, fragment: str) -> None:
    """Chunked framing the server's decoder refuses is the client's error (it was a 500)."""
    json_type = {"Content-Type": "application/json"}
    headers = signed_header_list(server.client("admin"), "POST", "/problem", headers=json_type)
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Transfer-Encoding", "chunked")]
    before = server.head()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes("POST", "/problem", headers, framing=False) + chunks)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        raw = _read_response(sock, time.monotonic())
    assert_json_error(raw, 400, "the request body could not be read", fragment)
    assert server.head() == before


@pytest.mark.parametrize("accept", ["application/xml", "text/html", "text/plain", "application/json;q=0", "image/png"])
def test_errors_are_json_whatever_accept_asks(server: Server, accept: str) -> None:
    """Falcon negotiates error bodies (XML, or none at all): ours are always JSON (they were not)."""
    viewer = server.client("viewer")
    for send in (
        lambda: requests.get(server.url + "/problem", headers={"Accept": accept}, timeout=10),  # 401
        lambda: viewer.request("GET", f"/problem/{new_uuid()}", headers={"Accept": accept}),  # 404
        lambda: viewer.request("GET", "/problem", params={"colour": "red"}, headers={"Accept": accept}),  # 400
    ):
        error = assert_rejected(server, send, send().status_code)
        assert set(error) == {"title", "description"}


@pytest.mark.parametrize(
    "method, path, allowed",
    [("PUT", "/problem", "GET, POST"), ("DELETE", "/nodes/admin", "GET, POST"), ("PATCH", "/healthz", "GET"),
     ("GET", "/worker/learnuplet/x", "POST"), ("PUT", "/ledger/head", "GET")],
)
def test_undeclared_methods_get_a_json_405_that_says_so(server: Server, method: str, path: str, allowed: str) -> None:
    """Falcon's own 405 had a title only; it now names the method and what the path allows."""
    response = server.client("everything").request(method, path)
    assert response.status_code == 405 and response.headers["content-type"] == "application/json"
    assert set(response.headers["allow"].split(", ")) == {*allowed.split(", "), "OPTIONS"}
    description = response.json()["description"]
    assert description == f"method {method} is not allowed on {path}; allowed: {response.headers['allow']}"


# -- content types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/merge-patch+json",
        "application/problem+json",
        "application/json-seq",
        "application/x-ndjson",
        "text/json",
        "application/json, text/plain",
        "*/*",
        "json",
    ],
)
def test_json_like_content_types_are_415(server: Server, content_type: str) -> None:
    raw = json.dumps(problem_body()).encode()
    media = content_type.split(";")[0].strip()
    assert_rejected(server, lambda: post_raw(server.client("admin"), "/problem", raw, content_type), 415, repr(media))


def test_gzip_encoded_json_is_refused(server: Server) -> None:
    """Content-Encoding is not supported: the compressed bytes are not a JSON body."""
    raw = gzip.compress(json.dumps(problem_body()).encode())
    admin = server.client("admin")
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert_rejected(server, lambda: admin.request("POST", "/problem", data=raw, headers=headers), 400, "not UTF-8")


# -- malformed and injected header fields (raw socket) -----------------------------------------


Fields = list[tuple[str, str | bytes]]


def _injected(server: Server, mutate: Callable[[Fields], Fields]) -> bytes:
    body = json.dumps(problem_body()).encode()
    json_type = {"Content-Type": "application/json"}
    headers: Fields = list(signed_header_list(server.client("admin"), "POST", "/problem", body, headers=json_type))
    return request_bytes("POST", "/problem", mutate(headers), body)


def _replace(name: str, value: Callable[[str | bytes], str | bytes]) -> Callable[[list], list]:
    return lambda headers: [(n, value(v) if n.lower() == name else v) for n, v in headers]


def _add(*extra: tuple[str, str | bytes]) -> Callable[[list], list]:
    return lambda headers: [*headers, *extra]


def _twice(name: str, other: Callable[[str | bytes], str | bytes] = lambda v: v) -> Callable[[list], list]:
    return lambda headers: [*headers, *((n, other(v)) for n, v in headers if n.lower() == name)]


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


MALFORMED: dict[str, tuple[Callable[[list], list], int]] = {
    "nul-in-value": (_add(("X-Note", b"a\x00b")), 400),
    "bare-cr-in-value": (_add(("X-Note", b"a\rb")), 400),
    "bare-lf-in-value": (_add(("X-Note", b"a\nInjected: yes")), 400),
    "obsolete-line-folding": (_add(("X-Note", b"a\r\n b")), 400),
    "nul-in-name": (_add(("X-No\x00te", "a")), 400),
    "space-in-name": (_add(("X Note", "a")), 400),
    "crlf-splitting-signature-input": (_replace("signature-input", lambda v: _b(v).replace(b";", b"\r\n;", 1)), 400),
    "nul-in-signature": (_replace("signature", lambda v: _b(v)[:-1] + b"\x00:"), 400),
    "two-content-lengths": (_add(("Content-Length", "1")), 400),
    "two-hosts": (_twice("host"), 400),
    "two-content-types": (_add(("Content-Type", "text/plain")), 400),
    "header-over-8k": (_add(("X-Note", "a" * 9000)), 431),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_header_fields_get_a_json_400(server: Server, case: str) -> None:
    mutate, status = MALFORMED[case]
    rejected_raw(server, _injected(server, mutate), status, "malformed HTTP request")


@pytest.mark.parametrize(
    "target, status",
    [("/pro\x00blem", 400), ("/problem\r\nX: y", 400), ("/\xff\xfe", 400), ("/problem?uuid=" + "a" * 5000, 414)],
    ids=["nul", "crlf", "raw-non-utf8", "request-line-over-4k"],
)
def test_malformed_request_lines_get_a_json_error(server: Server, target: str, status: int) -> None:
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1")
    rejected_raw(server, request, status, "malformed HTTP request")


SIGNATURE_FIELDS: dict[str, Callable[[list], list]] = {
    "signature-twice": _twice("signature"),
    "second-signature-label": _add(("Signature", "sig2=:" + base64.b64encode(b"x" * 64).decode() + ":")),
    "signature-input-twice": _twice("signature-input"),
    "content-digest-twice": _twice("content-digest"),
    "second-content-digest": _add(("Content-Digest", "sha-256=:" + base64.b64encode(b"y" * 32).decode() + ":")),
    "latin1-in-keyid": _replace("signature-input", lambda v: _b(v).replace(b'keyid="admin"', b'keyid="adm\xe9n"')),
    "keyid-with-escape": _replace("signature-input", lambda v: _b(v).replace(b'keyid="admin"', b'keyid="ad\\"min"')),
}


@pytest.mark.parametrize("case", list(SIGNATURE_FIELDS))
def test_duplicated_or_altered_signature_fields_are_401(server: Server, case: str) -> None:
    rejected_raw(server, _injected(server, SIGNATURE_FIELDS[case]), 401)


@pytest.mark.parametrize(
    "path, status",
    [
        ("/problem/%FF%FE", 404),
        ("/nodes/%C3%28", 404),
        ("/ledger/entries/%FF", 404),
        ("/learnuplet/%00", 404),
    ],
)
def test_non_utf8_and_nul_escapes_in_paths(server: Server, path: str, status: int) -> None:
    assert_rejected(server, lambda: server.client("everything").get(path), status)


@pytest.mark.parametrize("path", ["/nodes/%FF", "/learndone/%FF%FE", "/worker/learnuplet/%00"])
def test_non_utf8_and_nul_escapes_in_write_paths(server: Server, path: str) -> None:
    body = {"roles": ["viewer"]} if path.startswith("/nodes") else {"status": "failed", "worker": new_uuid()}
    assert_rejected(server, lambda: server.client("everything").post(path, body), 404)


# -- signatures over something else ------------------------------------------------------------


def _send(client: Client, request: requests.PreparedRequest) -> requests.Response:
    return client.session.send(request, timeout=30)


def test_signature_over_another_path(server: Server) -> None:
    admin = server.client("everything")
    request = signed(admin, "POST", "/algo", json=problem_body())
    request.url = admin.url + "/problem"
    assert_rejected(server, lambda: _send(admin, request), 401, "signature")


def test_signature_for_one_uplet_sent_to_another(server: Server) -> None:
    first, second = pending_learnuplet(server), pending_learnuplet(server)
    compute = server.client("compute")
    request = signed(compute, "POST", f"/learndone/{first['uuid']}", json={"status": "failed"})
    request.url = compute.url + f"/learndone/{second['uuid']}"
    assert_rejected(server, lambda: _send(compute, request), 401, "signature")
    assert ok(server.client("viewer").get(f"/learnuplet/{second['uuid']}"))["status"] == "pending"


def test_signature_of_a_read_used_for_another_read(server: Server) -> None:
    viewer = server.client("viewer")
    problem = make_problem(server)
    request = signed(viewer, "GET", f"/problem/{problem}")
    request.url = viewer.url + f"/algo/{problem}"
    assert_rejected(server, lambda: _send(viewer, request), 401, "signature")


def test_signature_of_a_read_used_for_a_write(server: Server) -> None:
    """A GET's signature (over an empty body) on a POST with a body: method and digest differ."""
    admin = server.client("admin")
    request = signed(admin, "GET", "/problem")
    body = json.dumps(problem_body()).encode()
    request.method, request.body = "POST", body
    request.headers["Content-Type"] = "application/json"
    request.headers["Content-Length"] = str(len(body))
    assert_rejected(server, lambda: _send(admin, request), 401)


def test_body_swapped_with_a_matching_digest(server: Server) -> None:
    """Recomputing Content-Digest for the new body does not help: the signature covers the old one."""
    admin = server.client("admin")
    request = signed(admin, "POST", "/problem", json=problem_body())
    body = json.dumps(problem_body()).encode()
    request.body = body
    request.headers["Content-Length"] = str(len(body))
    request.headers["Content-Digest"] = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    assert_rejected(server, lambda: _send(admin, request), 401, "signature")


def test_signature_over_another_query(server: Server) -> None:
    viewer = server.client("viewer")
    request = signed(viewer, "GET", "/problem?limit=1")
    request.url = viewer.url + "/problem?limit=2"
    assert_rejected(server, lambda: _send(viewer, request), 401, "signature")


def test_signature_for_another_authority(server: Server) -> None:
    admin = server.client("admin")
    elsewhere = Client(f"http://ledger.example:{server.port}", admin.key_pem, admin.key_id)
    request = signed(elsewhere, "POST", "/problem", json=problem_body())
    request.url = admin.url + "/problem"  # requests sends Host for the URL it sends to
    assert_rejected(server, lambda: _send(admin, request), 401, "signature")


# -- `created` and other signature parameters a stock client never sends --------------------------


def _hand_signed(server: Server, params: str, body: bytes, key: str = "admin", label: str = "sig1") -> bytes:
    """POST /problem signed by hand (RFC 9421 signature base), with these raw parameters."""
    private = load_pem_private_key((server.data_dir / "keys" / f"{key}.pem").read_bytes(), None)
    authority = f"127.0.0.1:{server.port}"
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    components = '("@method" "@authority" "@target-uri" "content-digest")'
    base = (
        f'"@method": POST\n"@authority": {authority}\n"@target-uri": http://{authority}/problem\n'
        f'"content-digest": {digest}\n"@signature-params": {components}{params}'
    )
    signature = base64.b64encode(private.sign(base.encode())).decode()  # type: ignore[call-arg,union-attr]
    headers: list[tuple[str, str | bytes]] = [
        ("Host", authority),
        ("Content-Type", "application/json"),
        ("Content-Digest", digest),
        ("Signature-Input", f"{label}={components}{params}"),
        ("Signature", f"{label}=:{signature}:"),
    ]
    return request_bytes("POST", "/problem", headers, body)


def _nonce() -> str:
    return f';nonce="{secrets.token_hex(8)}"'


PARAMETERS: dict[str, Callable[[int], str]] = {
    "created-zero": lambda now: ';created=0;keyid="admin";alg="ed25519"' + _nonce(),
    "created-negative": lambda now: ';created=-5;keyid="admin";alg="ed25519"' + _nonce(),
    "created-15-digits": lambda now: ';created=999999999999999;keyid="admin";alg="ed25519"' + _nonce(),
    "created-20-digits": lambda now: ';created=99999999999999999999;keyid="admin";alg="ed25519"' + _nonce(),
    "created-string": lambda now: ';created="soon";keyid="admin";alg="ed25519"' + _nonce(),
    "created-decimal": lambda now: f';created={now}.5;keyid="admin";alg="ed25519"' + _nonce(),
    "created-boolean": lambda now: ';created=?1;keyid="admin";alg="ed25519"' + _nonce(),
    "created-missing": lambda now: ';keyid="admin";alg="ed25519"' + _nonce(),
    "created-twice": lambda now: f';created={now};created={now - 9999};keyid="admin";alg="ed25519"' + _nonce(),
    "expires-before-now": lambda now: f';created={now};expires={now - 10};keyid="admin";alg="ed25519"' + _nonce(),
    "expires-string": lambda now: f';created={now};expires="never";keyid="admin";alg="ed25519"' + _nonce(),
    "nonce-missing": lambda now: f';created={now};keyid="admin";alg="ed25519"',
    "nonce-integer": lambda now: f';created={now};keyid="admin";alg="ed25519";nonce=7',
    "keyid-token": lambda now: f';created={now};keyid=admin;alg="ed25519"' + _nonce(),
    "keyid-twice": lambda now: f';created={now};keyid="admin";keyid="viewer";alg="ed25519"' + _nonce(),
    "alg-other": lambda now: f';created={now};keyid="admin";alg="rsa-pss-sha512"' + _nonce(),
}


@pytest.mark.parametrize("case", list(PARAMETERS))
def test_hand_made_signature_parameters_are_401(server: Server, case: str) -> None:
    body = json.dumps(problem_body()).encode()
    rejected_raw(server, _hand_signed(server, PARAMETERS[case](int(time.time())), body), 401)


def test_the_hand_signer_is_right(server: Server) -> None:
    """Control for the cases above: well-formed parameters from the hand signer are accepted."""
    body = json.dumps(problem_body()).encode()
    params = f';created={int(time.time())};keyid="admin";alg="ed25519"' + _nonce()
    assert raw_exchange(server, _hand_signed(server, params, body)).status == 201


# -- nonces, revoked keys, roles ------------------------------------------------------------------


def test_one_nonce_raced_by_concurrent_writes(server: Server) -> None:
    """Sixteen different writes with one nonce at once: exactly one is appended."""
    admin = server.client("admin")
    auth = auth_for(admin, fixed_nonce(secrets.token_urlsafe(16)))
    before = server.head()

    def send(_: int) -> int:
        with requests.Session() as session:
            return session.post(admin.url + "/problem", json=problem_body(), auth=auth, timeout=30).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = Counter(pool.map(send, range(16)))
    assert statuses == {201: 1, 401: 15}, statuses
    assert server.head()["size"] == before["size"] + 1


def test_a_request_signed_before_revocation_is_refused_after(server: Server) -> None:
    member = new_member(server, ["admin", "auditor"])
    write = signed(member, "POST", "/problem", json=problem_body())
    read = signed(member, "GET", "/ledger/entries/0")
    accepted = signed(member, "POST", "/problem", json=problem_body())
    assert _send(member, accepted).status_code == 201
    ok(server.client("admin").post(f"/nodes/{member.key_id}/revoke", {}), 200)
    for request in (write, read, accepted):  # a fresh write, a read, and an exact resend of an accepted write
        assert_rejected(server, lambda request=request: _send(member, request), 401, "revoked")


@pytest.mark.parametrize("path", ["/ledger/checkpoint", "/ledger/key", "/nodes", "/nodes/admin/revoke"])
def test_a_revoked_admin_and_auditor_is_refused_everywhere(server: Server, path: str) -> None:
    member = new_member(server, ["admin", "auditor"])
    ok(server.client("admin").post(f"/nodes/{member.key_id}/revoke", {}), 200)
    if path.startswith("/nodes"):
        new = {"key_id": f"n-{secrets.token_hex(4)}", "public_key": "A" * 43 + "=", "roles": ["viewer"]}
        body = {} if path.endswith("revoke") else new
        assert_rejected(server, lambda: member.post(path, body), 401, "revoked")
    else:
        assert_rejected(server, lambda: member.get(path), 401, "revoked")


@pytest.mark.parametrize(
    "path",
    ["/ledger/checkpoint", "/ledger/key", "/ledger/entries", "/ledger/entries/0",
     "/ledger/proofs/inclusion?seq=0", "/ledger/proofs/consistency?first=1"],
)
@pytest.mark.parametrize("key", ["admin", "analytics", "viewer", "compute"])
def test_ledger_endpoints_need_the_auditor_role(server: Server, path: str, key: str) -> None:
    assert_rejected(server, lambda: server.client(key).get(path), 403, repr(key), "'auditor'")


def test_a_role_taken_away_at_runtime_is_refused(server: Server) -> None:
    member = new_member(server, ["admin", "viewer"])
    ok(member.post("/problem", problem_body()), 201)
    ok(server.client("admin").post(f"/nodes/{member.key_id}", {"roles": ["viewer"]}), 200)
    assert_rejected(server, lambda: member.post("/problem", problem_body()), 403, repr(member.key_id), "'admin'")
    ok(member.get("/problem", limit="1"), 200)  # reads still work


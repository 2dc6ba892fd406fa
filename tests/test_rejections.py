"""Every rejection class, black-box over HTTP against a real gunicorn server.

Each test checks the HTTP status, that the JSON error's description names the
offending field or entity, and that the ledger (log length and state digest,
from GET /ledger/head) is unchanged by the rejected request.
"""

import base64
import datetime
import hashlib
import json
import secrets
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from conftest import Server, new_uuid
from requests import Response
from requests_http_signature import HTTPSignatureAuth, algorithms

from ledger import keys
from orchestrator.client import Client

LIMIT = 1024 * 1024  # the default body limit

# -- helpers ------------------------------------------------------------------


def ok(response: requests.Response, status: int | tuple[int, ...] = (200, 201)) -> Any:
    assert response.status_code in ((status,) if isinstance(status, int) else status), response.text
    return response.json()


def assert_rejected(
    server: Server, send: Callable[[], requests.Response], status: int, *fragments: str
) -> dict[str, Any]:
    """Send a request that must be rejected with status and a description holding every fragment.

    The ledger head (log size and state digest) must be the same before and after.
    """
    before = server.head()
    response = send()
    after = server.head()
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    error = response.json()
    assert isinstance(error, dict), error
    assert isinstance(error.get("title"), str) and error["title"], error
    description = error.get("description")
    assert isinstance(description, str), error
    for fragment in fragments:
        assert fragment in description, f"{fragment!r} not in description {description!r}"
    assert after == before, f"rejected request changed the ledger: {before} -> {after}"
    return error


def post_raw(client: Client, path: str, data: bytes, content_type: str = "application/json") -> requests.Response:
    """POST raw bytes, signed over exactly those bytes."""
    return client.request("POST", path, data=data, headers={"Content-Type": content_type})


def auth_for(client: Client, cls: type[HTTPSignatureAuth] = HTTPSignatureAuth, **kwargs: Any) -> HTTPSignatureAuth:
    options: dict[str, Any] = {"use_nonce": True, **kwargs}
    return cls(signature_algorithm=algorithms.ED25519, key=client.key_pem, key_id=client.key_id, **options)


def send_with(client: Client, auth: HTTPSignatureAuth, method: str, path: str, **kwargs: Any) -> requests.Response:
    return client.session.request(method, client.url + path, auth=auth, timeout=client.timeout, **kwargs)


def read_or_write(client: Client, method: str, auth: HTTPSignatureAuth | None = None) -> Callable[[], Response]:
    """A GET of /problem, or a POST of a fresh valid problem, signed with auth (default: the client's)."""
    auth = auth or client.auth()
    if method == "GET":
        return lambda: send_with(client, auth, "GET", "/problem")
    body = problem_body()
    return lambda: send_with(client, auth, "POST", "/problem", json=body)


def signed(client: Client, method: str, path: str, **kwargs: Any) -> requests.PreparedRequest:
    """A request prepared and signed once, to be sent (or tampered with) later."""
    request = requests.Request(method, client.url + path, **kwargs).prepare()
    return client.auth()(request)


class ShiftedCreated(HTTPSignatureAuth):
    """Signs with `created` shifted from now by a fixed amount."""

    shift = datetime.timedelta(0)

    def get_created(self, request: requests.PreparedRequest) -> datetime.datetime:
        return datetime.datetime.now() + self.shift


def shifted(seconds: int) -> type[HTTPSignatureAuth]:
    return type("Shifted", (ShiftedCreated,), {"shift": datetime.timedelta(seconds=seconds)})


class FixedNonce(HTTPSignatureAuth):
    nonce = ""

    def get_nonce(self, request: requests.PreparedRequest) -> str:
        return self.nonce


def fixed_nonce(nonce: str) -> type[HTTPSignatureAuth]:
    return type("Fixed", (FixedNonce,), {"nonce": nonce})


class NoDigest(HTTPSignatureAuth):
    """Signs without passing the body, so no Content-Digest is added or covered."""

    def _signing_body(self, request: requests.PreparedRequest) -> None:
        super()._signing_body(request)
        return None


# -- setup data ---------------------------------------------------------------


def problem_body(**overrides: Any) -> dict[str, Any]:
    return {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1, **overrides}


def make_problem(server: Server, *, size: int = 1, test: list[str] | None = None) -> str:
    body = problem_body(size_train_dataset=size, test_dataset=test or [])
    ok(server.client("admin").post("/problem", body), 201)
    return str(body["uuid"])


def make_data(server: Server, problem: str, n: int) -> list[str]:
    data = [new_uuid() for _ in range(n)]
    ok(server.client("viewer").post("/data", {"uuid": data, "problems": problem}), 201)
    return data


def make_algo(server: Server, problem: str) -> str:
    algo = new_uuid()
    ok(server.client("analytics").post("/algo", {"uuid": algo, "name": "algo", "problem": problem}), 201)
    return algo


def chain(server: Server, algo: str) -> list[dict[str, Any]]:
    return list(ok(server.client("viewer").get("/learnuplet", algo=algo))["learnuplets"])


def learn_chain(server: Server, *, size: int = 1, batches: int = 2, tests: int = 0) -> list[dict[str, Any]]:
    """A fresh problem, data and algo; the algo's learnuplets (rank 0 todo, the others waiting)."""
    test = [new_uuid() for _ in range(tests)]
    problem = make_problem(server, size=size, test=test)
    make_data(server, problem, size * batches)
    if test:
        ok(server.client("viewer").post("/data", {"uuid": test, "problems": problem}), 201)
    return chain(server, make_algo(server, problem))


def claim(server: Server, kind: str, uuid: str, by: str = "compute") -> None:
    ok(server.client(by).post(f"/worker/{kind}/{uuid}", {"worker": new_uuid()}), 200)


def pending_learnuplet(server: Server, **kwargs: Any) -> dict[str, Any]:
    """Rank 0 of a fresh chain, claimed by the `compute` key."""
    first = learn_chain(server, **kwargs)[0]
    claim(server, "learnuplet", first["uuid"])
    return first


def finish(server: Server, uplet: dict[str, Any], perf: float = 0.5) -> None:
    body = {
        "status": "done",
        "perf": perf,
        "train_perf": [perf] * len(uplet["train_data"]),
        "test_perf": [perf] * len(uplet["test_data"]),
    }
    ok(server.client("compute").post(f"/learndone/{uplet['uuid']}", body), 200)


def trained_problem(server: Server) -> str:
    """A fresh problem with one done learnuplet (so predictions can be asked)."""
    first = pending_learnuplet(server, batches=1)
    finish(server, first)
    return str(first["problem"])


def todo_preduplet(server: Server) -> dict[str, Any]:
    problem = trained_problem(server)
    data = new_uuid()
    ok(server.client("viewer").post("/prediction", {"data": data, "problem": problem}), 201)
    (pred,) = ok(server.client("viewer").get("/preduplet", data=data))["preduplets"]
    return dict(pred)


def pending_preduplet(server: Server) -> dict[str, Any]:
    pred = todo_preduplet(server)
    claim(server, "preduplet", pred["uuid"])
    return pred


def fresh_key_id() -> str:
    return "node-" + secrets.token_hex(6)


def fresh_public_key() -> str:
    return keys.public_b64(keys.new_private_key())


def new_member(server: Server, roles: list[str]) -> Client:
    """A key registered at runtime by the admin, with a fresh key id."""
    private = keys.new_private_key()
    key_id = fresh_key_id()
    body = {"key_id": key_id, "public_key": keys.public_b64(private), "roles": roles}
    ok(server.client("admin").post("/nodes", body), 201)
    return Client(server.url, keys.private_pem(private), key_id)


# -- 400: malformed bodies ----------------------------------------------------


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b'{"uuid": ', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"{'uuid': 1}", "not valid JSON"),
        (b'{"a": 1} {"b": 2}', "not valid JSON"),
        (b"[" * 100_000, "nested too deeply"),
    ],
    ids=["truncated", "empty", "single-quotes", "trailing-data", "deep-nesting"],
)
def test_invalid_json(server: Server, raw: bytes, fragment: str) -> None:
    assert_rejected(server, lambda: post_raw(server.client("admin"), "/problem", raw), 400, fragment)


@pytest.mark.parametrize(
    "raw",
    [b'{"uuid": "\xff"}', b"\xfe\xff{}", b'{"name": "caf\xe9"}', b'{"uuid": "\xed\xa0\x80"}'],
    ids=["ff-byte", "utf16-bom", "latin1", "encoded-surrogate"],
)
def test_non_utf8_body(server: Server, raw: bytes) -> None:
    assert_rejected(server, lambda: post_raw(server.client("admin"), "/problem", raw), 400, "not UTF-8")


def test_duplicate_json_keys(server: Server) -> None:
    body = problem_body()
    raw = json.dumps(body)[:-1] + f', "uuid": "{new_uuid()}"}}'
    assert_rejected(
        server, lambda: post_raw(server.client("admin"), "/problem", raw.encode()), 400, "duplicate JSON key 'uuid'"
    )


def test_duplicate_json_keys_nested(server: Server) -> None:
    uplet = pending_learnuplet(server)
    raw = b'{"status": "done", "perf": 1, "train_perf": {"%s": 1, "%s": 2}, "test_perf": []}' % (
        uplet["train_data"][0].encode(),
        uplet["train_data"][0].encode(),
    )
    assert_rejected(
        server,
        lambda: post_raw(server.client("compute"), f"/learndone/{uplet['uuid']}", raw),
        400,
        "duplicate JSON key",
        uplet["train_data"][0],
    )


@pytest.mark.parametrize(
    "path", ["/problem", "/algo", "/data", "/prediction", "/worker/learnuplet", "/learndone", "/preddone"]
)
@pytest.mark.parametrize("raw", [b"[]", b'"problem"', b"42", b"null", b"true"])
def test_body_not_an_object(server: Server, path: str, raw: bytes) -> None:
    client = server.client("everything")
    if path in ("/worker/learnuplet", "/learndone", "/preddone"):
        path += "/" + new_uuid()
    assert_rejected(server, lambda: post_raw(client, path, raw), 400, "body must be a JSON object")


# -- 400: fields ---------------------------------------------------------------


def _write_bodies(server: Server) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """For each endpoint, a client, a path and a body that would be accepted."""
    problem = make_problem(server)
    return {
        "problem": ("admin", "/problem", problem_body()),
        "algo": ("analytics", "/algo", {"uuid": new_uuid(), "name": "a", "problem": problem}),
        "data": ("viewer", "/data", {"uuid": [new_uuid()], "problems": [problem]}),
    }


@pytest.mark.parametrize(
    "endpoint, field",
    [
        ("problem", "uuid"),
        ("problem", "workflow"),
        ("problem", "test_dataset"),
        ("problem", "size_train_dataset"),
        ("algo", "uuid"),
        ("algo", "name"),
        ("algo", "problem"),
        ("data", "uuid"),
        ("data", "problems"),
    ],
)
def test_missing_field(server: Server, endpoint: str, field: str) -> None:
    who, path, body = _write_bodies(server)[endpoint]
    del body[field]
    assert_rejected(server, lambda: server.client(who).post(path, body), 400, f"missing field {field!r}")


@pytest.mark.parametrize("endpoint", ["problem", "algo", "data"])
@pytest.mark.parametrize("field", ["colour", "UUID", "timestamp_upload", ""])
def test_unknown_field(server: Server, endpoint: str, field: str) -> None:
    who, path, body = _write_bodies(server)[endpoint]
    body[field] = "x"
    assert_rejected(server, lambda: server.client(who).post(path, body), 400, f"unknown field {field!r}")


def test_missing_field_in_worker_and_prediction(server: Server) -> None:
    first = learn_chain(server)[0]
    assert_rejected(
        server,
        lambda: server.client("compute").post(f"/worker/learnuplet/{first['uuid']}", {}),
        400,
        "missing field 'worker'",
    )
    problem = trained_problem(server)
    assert_rejected(
        server, lambda: server.client("viewer").post("/prediction", {"problem": problem}), 400, "missing field 'data'"
    )
    assert_rejected(
        server,
        lambda: server.client("viewer").post("/prediction", {"data": new_uuid()}),
        400,
        "missing field 'problem'",
    )


@pytest.mark.parametrize(
    "value",
    ["2", 0, -1, True, False, 1.5, 2.0, None, [2], {"n": 2}, 2**53 + 1],
    ids=[
        "string",
        "zero",
        "negative",
        "true",
        "false",
        "fraction",
        "float-integral",
        "null",
        "list",
        "object",
        "over-2**53",
    ],
)
def test_size_train_dataset_wrong_type(server: Server, value: Any) -> None:
    body = problem_body(size_train_dataset=value)
    assert_rejected(server, lambda: server.client("admin").post("/problem", body), 400, "'size_train_dataset'")


@pytest.mark.parametrize(
    "field, value",
    [
        ("uuid", 12),
        ("workflow", None),
        ("test_dataset", "not-a-list"),
        ("test_dataset", new_uuid()),
        ("test_dataset", {"a": 1}),
        ("uuid", [new_uuid()]),
    ],
    ids=["uuid-int", "workflow-null", "test-dataset-word", "test-dataset-uuid", "test-dataset-dict", "uuid-list"],
)
def test_problem_field_wrong_type(server: Server, field: str, value: Any) -> None:
    body = problem_body(**{field: value})
    assert_rejected(server, lambda: server.client("admin").post("/problem", body), 400, f"{field!r}")


@pytest.mark.parametrize(
    "name", ["", "   ", 7, None, ["a"], "x" * 1001], ids=["empty", "blank", "int", "null", "list", "too-long"]
)
def test_algo_name_invalid(server: Server, name: Any) -> None:
    problem = make_problem(server)
    body = {"uuid": new_uuid(), "name": name, "problem": problem}
    assert_rejected(server, lambda: server.client("analytics").post("/algo", body), 400, "'name'")


def test_algo_name_with_lone_surrogate(server: Server) -> None:
    """A JSON escape for a lone surrogate is not text: it must be a 400 naming the field."""
    problem = make_problem(server)
    raw = json.dumps({"uuid": new_uuid(), "name": "bad \ud800 name", "problem": problem}).encode()
    assert b"\\ud800" in raw
    assert_rejected(server, lambda: post_raw(server.client("analytics"), "/algo", raw), 400, "name")


def test_rejection_does_not_fail_concurrent_writes(server: Server) -> None:
    """A rejected request must fail alone, not the other writes committed in the same group."""
    problem = make_problem(server)
    bad = json.dumps({"uuid": new_uuid(), "name": "\ud800", "problem": problem}).encode()

    def send(i: int) -> tuple[str, int]:
        client = server.client("analytics")
        if i % 8 == 0:
            return "bad", post_raw(client, "/algo", bad).status_code
        return "good", client.post("/algo", {"uuid": new_uuid(), "name": "n", "problem": problem}).status_code

    before = server.head()
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(send, range(240)))
    good = Counter(status for kind, status in answers if kind == "good")
    bad_statuses = Counter(status for kind, status in answers if kind == "bad")
    assert good == {201: 210}, f"valid writes answered {dict(good)}"
    assert bad_statuses == {400: 30}, f"bad writes answered {dict(bad_statuses)}"
    assert server.head()["size"] == before["size"] + 210


# Not UUIDs, each built around a fresh uuid `u` so that an accepted one cannot collide later.
NOT_UUIDS: dict[str, Callable[[str], Any]] = {
    "word": lambda u: "not-a-uuid",
    "empty": lambda u: "",
    "int": lambda u: 123,
    "null": lambda u: None,
    "short": lambda u: u[:-1],
    "long": lambda u: u + "0",
    "no-dashes": lambda u: u.replace("-", ""),
    "braces": lambda u: "{" + u + "}",
    "urn": lambda u: "urn:uuid:" + u,
    "non-hex": lambda u: u[:-1] + "g",
    "leading-space": lambda u: " " + u,
    "trailing-space": lambda u: u + " ",
    "trailing-newline": lambda u: u + "\n",
    "fullwidth-digit": lambda u: "\uff10" + u[1:],
}


@pytest.mark.parametrize("case", list(NOT_UUIDS))
@pytest.mark.parametrize("field", ["uuid", "workflow"])
def test_problem_non_uuid(server: Server, field: str, case: str) -> None:
    body = problem_body(**{field: NOT_UUIDS[case](new_uuid())})
    assert_rejected(server, lambda: server.client("admin").post("/problem", body), 400, f"{field!r}", "UUID")


@pytest.mark.parametrize("value", ["not-a-uuid", 5, None, ["x"]])
def test_non_uuid_list_item(server: Server, value: Any) -> None:
    problem = make_problem(server)
    body = problem_body(test_dataset=[new_uuid(), value])
    assert_rejected(server, lambda: server.client("admin").post("/problem", body), 400, "'test_dataset[1]'")
    body = {"uuid": [new_uuid(), new_uuid(), value], "problems": problem}
    assert_rejected(server, lambda: server.client("viewer").post("/data", body), 400, "'uuid[2]'")
    body = {"uuid": new_uuid(), "problems": [value]}
    assert_rejected(server, lambda: server.client("viewer").post("/data", body), 400, "'problems[0]'")


@pytest.mark.parametrize(
    "who, path, body, fragment",
    [
        ("analytics", "/algo", {"uuid": "nope", "name": "a", "problem": "P"}, "'uuid'"),
        ("analytics", "/algo", {"uuid": "U", "name": "a", "problem": "nope"}, "'problem'"),
        ("viewer", "/data", {"uuid": "nope", "problems": "P"}, "'uuid'"),
        ("viewer", "/data", {"uuid": "U", "problems": "nope"}, "'problems'"),
        ("viewer", "/prediction", {"data": "nope", "problem": "P"}, "'data'"),
        ("viewer", "/prediction", {"data": ["U", "nope"], "problem": "P"}, "'data[1]'"),
        ("viewer", "/prediction", {"data": "U", "problem": "nope"}, "'problem'"),
        ("viewer", "/prediction", {"data": "U", "problem": ["P"]}, "'problem'"),
    ],
)
def test_non_uuid_reference(server: Server, who: str, path: str, body: dict[str, Any], fragment: str) -> None:
    problem = trained_problem(server) if path == "/prediction" else make_problem(server)
    substitutions = {"P": problem, "U": new_uuid()}

    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(v) for v in value]
        return substitutions.get(value, value)

    body = {key: fill(value) for key, value in body.items()}
    assert_rejected(server, lambda: server.client(who).post(path, body), 400, fragment)


@pytest.mark.parametrize("field", ["uuid", "problems"])
def test_empty_list(server: Server, field: str) -> None:
    body = {"uuid": [new_uuid()], "problems": [make_problem(server)], field: []}
    assert_rejected(server, lambda: server.client("viewer").post("/data", body), 400, f"{field!r}", "empty")


def test_worker_non_uuid(server: Server) -> None:
    first = learn_chain(server)[0]
    assert_rejected(
        server,
        lambda: server.client("compute").post(f"/worker/learnuplet/{first['uuid']}", {"worker": "me"}),
        400,
        "'worker'",
    )
    assert ok(server.client("viewer").get(f"/learnuplet/{first['uuid']}"))["status"] == "todo"


# -- 400: numbers -------------------------------------------------------------


@pytest.mark.parametrize(
    "literal, fragment",
    [
        (b"1e400", "1e400"),
        (b"-1e400", "-1e400"),
        (b"1.7976931348623159e308", "1.7976931348623159e308"),
        (b"NaN", "NaN"),
        (b"Infinity", "Infinity"),
        (b"-Infinity", "-Infinity"),
        (b"9007199254740993", "'perf'"),
        (b"-9007199254740993", "'perf'"),
        (b"1" + b"0" * 400, "'perf'"),
        (b"1" + b"0" * 5000, "integer"),
    ],
    ids=[
        "1e400",
        "-1e400",
        "just-over-max-double",
        "NaN",
        "Infinity",
        "-Infinity",
        "2**53+1",
        "-(2**53+1)",
        "401-digit-int",
        "5001-digit-int",
    ],
)
def test_non_finite_or_overflowing_perf(server: Server, literal: bytes, fragment: str) -> None:
    uplet = pending_learnuplet(server)
    raw = b'{"status": "done", "perf": %s, "train_perf": [0.5], "test_perf": []}' % literal
    assert_rejected(
        server, lambda: post_raw(server.client("compute"), f"/learndone/{uplet['uuid']}", raw), 400, fragment
    )
    assert ok(server.client("viewer").get(f"/learnuplet/{uplet['uuid']}"))["status"] == "pending"


@pytest.mark.parametrize("literal", [b"1e400", b"NaN", b"-Infinity"])
def test_non_finite_train_perf_value(server: Server, literal: bytes) -> None:
    uplet = pending_learnuplet(server)
    raw = b'{"status": "done", "perf": 0.5, "train_perf": [%s], "test_perf": []}' % literal
    assert_rejected(
        server, lambda: post_raw(server.client("compute"), f"/learndone/{uplet['uuid']}", raw), 400, literal.decode()
    )


@pytest.mark.parametrize(
    "value", ["0.5", True, None, [0.5], {"v": 0.5}], ids=["string", "bool", "null", "list", "object"]
)
def test_perf_wrong_type(server: Server, value: Any) -> None:
    uplet = pending_learnuplet(server)
    body = {"status": "done", "perf": value, "train_perf": [0.5], "test_perf": []}
    assert_rejected(server, lambda: server.client("compute").post(f"/learndone/{uplet['uuid']}", body), 400, "'perf'")


# -- 400: unknown references --------------------------------------------------


def test_unknown_problem_in_algo(server: Server) -> None:
    missing = new_uuid()
    body = {"uuid": new_uuid(), "name": "a", "problem": missing}
    assert_rejected(server, lambda: server.client("analytics").post("/algo", body), 400, "'problem'", missing)


@pytest.mark.parametrize("shape", ["single", "list", "second-of-list"])
def test_unknown_problem_in_data(server: Server, shape: str) -> None:
    missing = new_uuid()
    problems: Any = {"single": missing, "list": [missing], "second-of-list": [make_problem(server), missing]}[shape]
    body = {"uuid": [new_uuid(), new_uuid()], "problems": problems}
    assert_rejected(server, lambda: server.client("viewer").post("/data", body), 400, "'problems'", missing)


def test_unknown_problem_in_prediction(server: Server) -> None:
    missing = new_uuid()
    body = {"data": [new_uuid()], "problem": missing}
    assert_rejected(server, lambda: server.client("viewer").post("/prediction", body), 400, "'problem'", missing)


# -- 400: duplicates and domain checks inside one body ------------------------


@pytest.mark.parametrize("field", ["uuid", "problems", "test_dataset"])
@pytest.mark.parametrize("same_case", [True, False], ids=["same-case", "upper-case-copy"])
def test_duplicate_uuid_in_list(server: Server, field: str, same_case: bool) -> None:
    twice = new_uuid()
    copy = twice if same_case else twice.upper()
    if field == "test_dataset":
        body = problem_body(test_dataset=[twice, new_uuid(), copy])
        assert_rejected(server, lambda: server.client("admin").post("/problem", body), 400, f"{field!r}", "twice")
        return
    problem = make_problem(server)
    if field == "problems":
        # the uuid listed twice is a real problem: the rejection is about the list itself
        twice, copy = problem, problem if same_case else problem.upper()
        body = {"uuid": [new_uuid()], "problems": [twice, copy]}
    else:
        body = {"uuid": [twice, new_uuid(), copy], "problems": problem}
    assert_rejected(server, lambda: server.client("viewer").post("/data", body), 400, f"{field!r}", "twice")


def test_duplicate_data_in_prediction(server: Server) -> None:
    problem = trained_problem(server)
    twice = new_uuid()
    body = {"data": [twice, twice], "problem": problem}
    assert_rejected(server, lambda: server.client("viewer").post("/prediction", body), 400, "'data'", "twice")


@pytest.mark.parametrize("missing", ["perf", "train_perf", "test_perf"])
def test_learndone_done_without_results(server: Server, missing: str) -> None:
    uplet = pending_learnuplet(server)
    body = {"status": "done", "perf": 0.5, "train_perf": [0.5], "test_perf": []}
    del body[missing]
    assert_rejected(
        server,
        lambda: server.client("compute").post(f"/learndone/{uplet['uuid']}", body),
        400,
        f"missing field {missing!r}",
    )


@pytest.mark.parametrize("status", ["DONE", "ok", "pending", "todo", None, 1, ""])
def test_learndone_bad_status(server: Server, status: Any) -> None:
    uplet = pending_learnuplet(server)
    body = {"status": status, "perf": 0.5, "train_perf": [0.5], "test_perf": []}
    assert_rejected(server, lambda: server.client("compute").post(f"/learndone/{uplet['uuid']}", body), 400, "'status'")


def test_learndone_unknown_field(server: Server) -> None:
    uplet = pending_learnuplet(server)
    body = {"status": "failed", "model_end": new_uuid()}
    assert_rejected(
        server,
        lambda: server.client("compute").post(f"/learndone/{uplet['uuid']}", body),
        400,
        "unknown field 'model_end'",
    )


def _perf_cases(train: list[str], test: list[str]) -> dict[str, tuple[str, Any]]:
    """Wrong train_perf/test_perf values for a learnuplet with 2 train data and 1 test data."""
    return {
        "train-too-few": ("train_perf", [0.1]),
        "train-too-many": ("train_perf", [0.1, 0.2, 0.3]),
        "train-empty": ("train_perf", []),
        "test-too-many": ("test_perf", [0.1, 0.2]),
        "test-empty": ("test_perf", []),
        "train-missing-key": ("train_perf", {train[0]: 0.1}),
        "train-extra-key": ("train_perf", {train[0]: 0.1, train[1]: 0.2, new_uuid(): 0.3}),
        "train-foreign-key": ("train_perf", {train[0]: 0.1, new_uuid(): 0.2}),
        "train-test-key": ("train_perf", {train[0]: 0.1, test[0]: 0.2}),
        "train-non-uuid-key": ("train_perf", {train[0]: 0.1, "second": 0.2}),
        "train-same-key-twice": ("train_perf", {train[0]: 0.1, train[0].upper(): 0.2, train[1]: 0.3}),
        "test-foreign-key": ("test_perf", {new_uuid(): 0.1}),
        "train-string-value": ("train_perf", [0.1, "0.2"]),
        "train-bool-value": ("train_perf", {train[0]: 0.1, train[1]: True}),
        "train-number": ("train_perf", 0.1),
        "train-null": ("train_perf", None),
        "test-string": ("test_perf", "0.1"),
    }


@pytest.mark.parametrize("case", list(_perf_cases([new_uuid()] * 2, [new_uuid()])))
def test_learndone_wrong_perf_map(server: Server, case: str) -> None:
    uplet = pending_learnuplet(server, size=2, batches=1, tests=1)
    assert len(uplet["train_data"]) == 2 and len(uplet["test_data"]) == 1
    field, value = _perf_cases(uplet["train_data"], uplet["test_data"])[case]
    body = {"status": "done", "perf": 0.5, "train_perf": [0.5, 0.5], "test_perf": [0.5], field: value}
    assert_rejected(
        server, lambda: server.client("compute").post(f"/learndone/{uplet['uuid']}", body), 400, f"'{field}"
    )
    assert ok(server.client("viewer").get(f"/learnuplet/{uplet['uuid']}"))["status"] == "pending"


def test_preddone_done_without_storage(server: Server) -> None:
    pred = pending_preduplet(server)
    assert_rejected(
        server,
        lambda: server.client("compute").post(f"/preddone/{pred['uuid']}", {"status": "done"}),
        400,
        "missing field 'prediction_storage_uuid'",
    )
    body = {"status": "done", "prediction_storage_uuid": "s3://bucket/x"}
    assert_rejected(
        server,
        lambda: server.client("compute").post(f"/preddone/{pred['uuid']}", body),
        400,
        "'prediction_storage_uuid'",
    )


# -- 400: queries -------------------------------------------------------------


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"colour": "red"}, "'colour'"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "\u00b2"}, "limit"),
        ({"after": "P"}, "after"),
        ({"after": "not-a-uuid"}, "after"),
        ({"status": ["todo", "done"]}, "'status'"),
    ],
    ids=[
        "unknown-field",
        "limit-0",
        "limit-negative",
        "limit-word",
        "limit-over-max",
        "limit-superscript-two",
        "after-unknown",
        "after-not-uuid",
        "repeated-param",
    ],
)
def test_bad_query(server: Server, params: dict[str, Any], fragment: str) -> None:
    params = {k: (new_uuid() if v == "P" else v) for k, v in params.items()}
    assert_rejected(server, lambda: server.client("viewer").request("GET", "/learnuplet", params=params), 400, fragment)


# -- 404 ----------------------------------------------------------------------


@pytest.mark.parametrize("collection", ["problem", "algo", "data", "learnuplet", "preduplet"])
def test_get_unknown_uuid(server: Server, collection: str) -> None:
    missing = new_uuid()
    assert_rejected(server, lambda: server.client("viewer").get(f"/{collection}/{missing}"), 404, collection, missing)
    assert_rejected(server, lambda: server.client("viewer").get(f"/{collection}/not-a-uuid"), 404, "not-a-uuid")


@pytest.mark.parametrize(
    "who, path, body",
    [
        ("compute", "/worker/learnuplet/{}", {"worker": "W"}),
        ("compute", "/worker/preduplet/{}", {"worker": "W"}),
        ("compute", "/learndone/{}", {"status": "failed"}),
        ("compute", "/learndone/{}", {"status": "done", "perf": 1, "train_perf": [], "test_perf": []}),
        ("compute", "/preddone/{}", {"status": "failed"}),
        ("compute", "/preddone/{}", {"status": "done", "prediction_storage_uuid": "W"}),
    ],
    ids=[
        "worker-learnuplet",
        "worker-preduplet",
        "learndone-failed",
        "learndone-done",
        "preddone-failed",
        "preddone-done",
    ],
)
def test_post_unknown_uplet(server: Server, who: str, path: str, body: dict[str, Any]) -> None:
    missing = new_uuid()
    body = {k: (new_uuid() if v == "W" else v) for k, v in body.items()}
    kind = "preduplet" if "pred" in path else "learnuplet"
    assert_rejected(server, lambda: server.client(who).post(path.format(missing), body), 404, kind, missing)
    assert_rejected(server, lambda: server.client(who).post(path.format("not-a-uuid"), body), 404, "not-a-uuid")


def test_post_uplet_of_the_other_kind(server: Server) -> None:
    """A learnuplet uuid is not a preduplet, and the other way round."""
    learn = learn_chain(server)[0]
    pred = todo_preduplet(server)
    compute = server.client("compute")
    worker = {"worker": new_uuid()}
    assert_rejected(
        server, lambda: compute.post(f"/worker/preduplet/{learn['uuid']}", worker), 404, "preduplet", learn["uuid"]
    )
    assert_rejected(
        server, lambda: compute.post(f"/worker/learnuplet/{pred['uuid']}", worker), 404, "learnuplet", pred["uuid"]
    )
    assert_rejected(server, lambda: compute.post(f"/learndone/{pred['uuid']}", {"status": "failed"}), 404, pred["uuid"])
    assert_rejected(
        server, lambda: compute.post(f"/preddone/{learn['uuid']}", {"status": "failed"}), 404, learn["uuid"]
    )


@pytest.mark.parametrize("kind", ["foo", "learnuplets", "Learnuplet", "problem"])
def test_unknown_uplet_type(server: Server, kind: str) -> None:
    first = learn_chain(server)[0]
    assert_rejected(
        server,
        lambda: server.client("compute").post(f"/worker/{kind}/{first['uuid']}", {"worker": new_uuid()}),
        404,
        repr(kind),
    )


@pytest.mark.parametrize("name", ["nosuch", "problems", "ledger", "worker", "learndone", "prediction"])
def test_unknown_collection(server: Server, name: str) -> None:
    viewer = server.client("viewer")
    assert_rejected(server, lambda: viewer.get(f"/{name}"), 404, f"{name!r}")
    assert_rejected(server, lambda: viewer.get(f"/{name}/{new_uuid()}"), 404, f"{name!r}")


@pytest.mark.parametrize(
    "path",
    [
        "/nosuch",
        "/problems",
        "/learnuplet",
        "/preduplet",
        "/problem/P",
        "/learndone",
        "/worker/learnuplet",
        "/algo/P/extra",
    ],
)
def test_unknown_write_endpoint(server: Server, path: str) -> None:
    path = path.replace("P", new_uuid())
    assert_rejected(server, lambda: server.client("everything").post(path, {"uuid": new_uuid()}), 404, path)


# -- 409 ----------------------------------------------------------------------


@pytest.mark.parametrize("upper", [False, True], ids=["same", "upper-case"])
def test_duplicate_problem(server: Server, upper: bool) -> None:
    problem = make_problem(server)
    body = problem_body(uuid=problem.upper() if upper else problem)
    assert_rejected(
        server, lambda: server.client("admin").post("/problem", body), 409, "problem", problem, "already exists"
    )


@pytest.mark.parametrize("upper", [False, True], ids=["same", "upper-case"])
def test_duplicate_algo(server: Server, upper: bool) -> None:
    problem = make_problem(server)
    algo = make_algo(server, problem)
    other = make_problem(server)
    body = {"uuid": algo.upper() if upper else algo, "name": "again", "problem": other}
    assert_rejected(server, lambda: server.client("analytics").post("/algo", body), 409, "algo", algo, "already exists")


@pytest.mark.parametrize("shape", ["single", "list", "last-of-list", "upper-case"])
def test_duplicate_data(server: Server, shape: str) -> None:
    problem = make_problem(server)
    make_algo(server, problem)  # so that accepted data would create learnuplets
    (existing,) = make_data(server, problem, 1)
    uuid: Any = {
        "single": existing,
        "list": [existing],
        "last-of-list": [new_uuid(), new_uuid(), existing],
        "upper-case": existing.upper(),
    }[shape]
    body = {"uuid": uuid, "problems": problem}
    assert_rejected(
        server, lambda: server.client("viewer").post("/data", body), 409, "data", existing, "already exists"
    )


def test_claim_waiting_learnuplet(server: Server) -> None:
    second = learn_chain(server)[1]
    assert second["status"] == "waiting"
    assert_rejected(
        server,
        lambda: server.client("compute").post(f"/worker/learnuplet/{second['uuid']}", {"worker": new_uuid()}),
        409,
        second["uuid"],
        "waiting",
    )


@pytest.mark.parametrize("by", ["compute", "compute2"])
def test_claim_pending_learnuplet(server: Server, by: str) -> None:
    first = pending_learnuplet(server)
    assert_rejected(
        server,
        lambda: server.client(by).post(f"/worker/learnuplet/{first['uuid']}", {"worker": new_uuid()}),
        409,
        first["uuid"],
        "pending",
    )


def test_claim_finished_learnuplet(server: Server) -> None:
    first = pending_learnuplet(server)
    finish(server, first)
    assert_rejected(
        server,
        lambda: server.client("compute").post(f"/worker/learnuplet/{first['uuid']}", {"worker": new_uuid()}),
        409,
        first["uuid"],
        "done",
    )


def test_claim_pending_preduplet(server: Server) -> None:
    pred = pending_preduplet(server)
    assert_rejected(
        server,
        lambda: server.client("compute2").post(f"/worker/preduplet/{pred['uuid']}", {"worker": new_uuid()}),
        409,
        pred["uuid"],
        "pending",
    )


@pytest.mark.parametrize("status", ["done", "failed"])
def test_learndone_on_todo(server: Server, status: str) -> None:
    first = learn_chain(server)[0]
    body: dict[str, Any] = {"status": status}
    if status == "done":
        body.update(perf=0.5, train_perf=[0.5], test_perf=[])
    assert_rejected(
        server, lambda: server.client("compute").post(f"/learndone/{first['uuid']}", body), 409, first["uuid"], "todo"
    )


def test_learndone_on_waiting(server: Server) -> None:
    second = learn_chain(server)[1]
    assert_rejected(
        server,
        lambda: server.client("compute").post(f"/learndone/{second['uuid']}", {"status": "failed"}),
        409,
        second["uuid"],
        "waiting",
    )


def test_learndone_twice(server: Server) -> None:
    first = pending_learnuplet(server)
    ok(server.client("compute").post(f"/learndone/{first['uuid']}", {"status": "failed"}))
    body = {"status": "done", "perf": 0.9, "train_perf": [0.9], "test_perf": []}
    assert_rejected(
        server, lambda: server.client("compute").post(f"/learndone/{first['uuid']}", body), 409, first["uuid"], "failed"
    )


def test_preddone_on_todo(server: Server) -> None:
    pred = todo_preduplet(server)
    assert_rejected(
        server,
        lambda: server.client("compute").post(f"/preddone/{pred['uuid']}", {"status": "failed"}),
        409,
        pred["uuid"],
        "todo",
    )


@pytest.mark.parametrize("history", ["no-algo", "todo", "pending", "failed"])
def test_prediction_without_trained_model(server: Server, history: str) -> None:
    if history == "no-algo":
        problem = make_problem(server)
    else:
        first = learn_chain(server)[0]
        problem = first["problem"]
        if history in ("pending", "failed"):
            claim(server, "learnuplet", first["uuid"])
        if history == "failed":
            ok(server.client("compute").post(f"/learndone/{first['uuid']}", {"status": "failed"}))
    body = {"data": [new_uuid()], "problem": problem}
    assert_rejected(server, lambda: server.client("viewer").post("/prediction", body), 409, problem, "no trained model")


# -- 401 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/problem"), ("GET", "/ledger/head"), ("POST", "/problem"), ("POST", "/worker/learnuplet/U")],
)
def test_unsigned_request(server: Server, method: str, path: str) -> None:
    url = server.url + path.replace("U", new_uuid())
    body = problem_body() if method == "POST" else None
    assert_rejected(server, lambda: requests.request(method, url, json=body, timeout=30), 401, "Signature")


def test_signature_over_a_different_body(server: Server) -> None:
    client = server.client("everything")
    request = signed(client, "POST", "/problem", json=problem_body())
    request.body = json.dumps(problem_body()).encode()
    request.headers["Content-Length"] = str(len(request.body))
    assert_rejected(server, lambda: client.session.send(request, timeout=30), 401, "igest")


def test_signature_over_a_different_target(server: Server) -> None:
    client = server.client("everything")
    problem = make_problem(server)
    request = signed(client, "POST", "/algo", json={"uuid": new_uuid(), "name": "a", "problem": problem})
    request.url = client.url + "/algo?x=1"
    assert_rejected(server, lambda: client.session.send(request, timeout=30), 401, "signature")


def test_signature_over_a_different_method(server: Server) -> None:
    client = server.client("everything")
    request = signed(client, "PUT", "/problem", json=problem_body())
    request.method = "POST"
    assert_rejected(server, lambda: client.session.send(request, timeout=30), 401, "signature")


def test_signature_header_removed(server: Server) -> None:
    """Signature-Input without its Signature header is unsigned."""
    client = server.client("admin")
    request = signed(client, "POST", "/problem", json=problem_body())
    del request.headers["Signature"]
    assert_rejected(server, lambda: client.session.send(request, timeout=30), 401, "Signature")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_key_id(server: Server, method: str) -> None:
    key_id = "stranger-" + secrets.token_hex(4)
    stranger = Client(server.url, keys.private_pem(keys.new_private_key()), key_id)
    assert_rejected(server, read_or_write(stranger, method), 401, repr(key_id))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_revoked_key(server: Server, method: str) -> None:
    member = new_member(server, ["admin", "viewer"])
    ok(member.get("/problem", limit="1"), 200)
    ok(server.client("admin").post(f"/nodes/{member.key_id}/revoke", {}), 200)
    assert_rejected(server, read_or_write(member, method), 401, repr(member.key_id), "revoked")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_known_key_id_wrong_private_key(server: Server, method: str) -> None:
    impostor = Client(server.url, keys.private_pem(keys.new_private_key()), "admin")
    assert_rejected(server, read_or_write(impostor, method), 401, "signature")


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "seconds, fragment",
    [(-3600, "ago"), (-301 - 5, "ago"), (3600, "future"), (86400 * 365, "future"), (-86400 * 365 * 20, "ago")],
    ids=["hour-ago", "just-outside-window", "hour-ahead", "year-ahead", "twenty-years-ago"],
)
def test_created_outside_window(server: Server, method: str, seconds: int, fragment: str) -> None:
    client = server.client("admin")
    auth = auth_for(client, shifted(seconds))
    assert_rejected(server, read_or_write(client, method, auth), 401, "created", fragment)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_expired_signature(server: Server, method: str) -> None:
    client = server.client("admin")
    auth = auth_for(client, expires_in=datetime.timedelta(seconds=-5))
    assert_rejected(server, read_or_write(client, method, auth), 401, "expired")


def test_signature_without_nonce(server: Server) -> None:
    client = server.client("admin")
    auth = auth_for(client, use_nonce=False)
    assert_rejected(server, lambda: send_with(client, auth, "POST", "/problem", json=problem_body()), 401, "nonce")


def test_signature_not_covering_method(server: Server) -> None:
    client = server.client("admin")
    auth = auth_for(client, covered_component_ids=("@authority", "@target-uri"))
    assert_rejected(server, lambda: send_with(client, auth, "POST", "/problem", json=problem_body()), 401, "@method")


def test_signature_not_covering_target(server: Server) -> None:
    client = server.client("admin")
    auth = auth_for(client, covered_component_ids=("@method", "@authority"))
    assert_rejected(
        server, lambda: send_with(client, auth, "POST", "/problem", json=problem_body()), 401, "@target-uri"
    )


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_signature_not_covering_content_digest(server: Server, method: str) -> None:
    client = server.client("admin")
    auth = auth_for(client, NoDigest)
    body = problem_body() if method == "POST" else None
    assert_rejected(server, lambda: send_with(client, auth, method, "/problem", json=body), 401, "igest")


def test_nonce_reuse_on_write(server: Server) -> None:
    client = server.client("admin")
    nonce = secrets.token_urlsafe(16)
    auth = auth_for(client, fixed_nonce(nonce))
    ok(send_with(client, auth, "POST", "/problem", json=problem_body()), 201)
    assert_rejected(
        server, lambda: send_with(client, auth, "POST", "/problem", json=problem_body()), 401, "nonce", nonce
    )


def test_nonce_reuse_on_read(server: Server) -> None:
    client = server.client("viewer")
    problem = make_problem(server)
    nonce = secrets.token_urlsafe(16)
    auth = auth_for(client, fixed_nonce(nonce))
    ok(send_with(client, auth, "GET", f"/problem/{problem}"), 200)
    assert_rejected(
        server, lambda: send_with(client, auth, "GET", "/problem", params={"uuid": problem}), 401, "nonce", nonce
    )
    assert_rejected(server, lambda: send_with(client, auth, "GET", f"/problem/{problem}"), 401, "nonce", nonce)


def test_nonce_of_a_write_reused_by_a_read(server: Server) -> None:
    client = server.client("admin")
    nonce = secrets.token_urlsafe(16)
    auth = auth_for(client, fixed_nonce(nonce))
    body = problem_body()
    ok(send_with(client, auth, "POST", "/problem", json=body), 201)
    assert_rejected(server, lambda: send_with(client, auth, "GET", f"/problem/{body['uuid']}"), 401, "nonce", nonce)


def test_nonce_of_a_read_reused_by_a_write(server: Server) -> None:
    client = server.client("admin")
    nonce = secrets.token_urlsafe(16)
    auth = auth_for(client, fixed_nonce(nonce))
    ok(send_with(client, auth, "GET", "/ledger/head"), 200)
    assert_rejected(
        server, lambda: send_with(client, auth, "POST", "/problem", json=problem_body()), 401, "nonce", nonce
    )


def test_same_nonce_other_key_is_fine(server: Server) -> None:
    """Nonces are per key: the control case for the reuse tests above."""
    nonce = secrets.token_urlsafe(16)
    admin, everything = server.client("admin"), server.client("everything")
    ok(send_with(admin, auth_for(admin, fixed_nonce(nonce)), "POST", "/problem", json=problem_body()), 201)
    ok(send_with(everything, auth_for(everything, fixed_nonce(nonce)), "POST", "/problem", json=problem_body()), 201)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("lead", ["", "\\"], ids=["fast-path", "general-path"])
def test_nonce_longer_than_128_characters(server: Server, method: str, lead: str) -> None:
    """A backslash (escaped in the header) makes the server parse with the general library."""
    client = server.client("admin")
    too_long = lead + secrets.token_hex(65)[: 129 - len(lead)]
    auth = auth_for(client, fixed_nonce(too_long))
    assert_rejected(server, read_or_write(client, method, auth), 401, "nonce is longer than 128 characters")
    longest = lead + secrets.token_hex(64)[: 128 - len(lead)]
    ok(read_or_write(client, method, auth_for(client, fixed_nonce(longest)))())


# -- exact resends -------------------------------------------------------------


def test_exact_resend_of_a_write(server: Server) -> None:
    admin = server.client("admin")
    body = problem_body()
    request = signed(admin, "POST", "/problem", json=body)
    before = server.head()
    first = admin.session.send(request, timeout=30)
    second = admin.session.send(request, timeout=30)
    after = server.head()
    assert first.status_code == 201, first.text
    assert (second.status_code, second.json()) == (first.status_code, first.json())
    assert first.json()["new_problem"]["uuid"] == body["uuid"]
    assert after["size"] == before["size"] + 1
    assert first.json()["receipt"]["seq"] == before["size"]


def test_exact_resend_answers_the_very_same_bytes(server: Server) -> None:
    """The first answer and a resend's (recovered from the log's record) are byte for byte the same."""
    problem = make_problem(server)
    writes = [
        ("admin", "/problem", problem_body(test_dataset=[new_uuid()], size_train_dataset=2)),
        ("viewer", "/data", {"uuid": [new_uuid(), new_uuid()], "problems": problem}),
        ("analytics", "/algo", {"uuid": new_uuid(), "name": "an algo", "problem": problem}),
        ("admin", "/nodes", {"key_id": "resend-" + new_uuid()[:8],
                             "public_key": keys.public_b64(keys.new_private_key()), "roles": ["viewer"]}),
    ]
    for who, path, body in writes:
        client = server.client(who)
        request = signed(client, "POST", path, json=body)
        first = client.session.send(request, timeout=30)
        again = client.session.send(request, timeout=30)
        assert first.status_code in (200, 201), first.text
        assert again.status_code == first.status_code and again.content == first.content, (first.text, again.text)


def test_exact_resend_after_other_writes(server: Server) -> None:
    first_uplet = learn_chain(server)[0]
    compute = server.client("compute")
    request = signed(compute, "POST", f"/worker/learnuplet/{first_uplet['uuid']}", json={"worker": new_uuid()})
    original = compute.session.send(request, timeout=30)
    assert original.status_code == 200, original.text
    make_problem(server)  # an unrelated write in between
    before = server.head()
    again = compute.session.send(request, timeout=30)
    assert (again.status_code, again.json()) == (200, original.json())
    assert server.head() == before
    # a fresh claim with a new signature is a conflict, not a resend
    assert_rejected(
        server,
        lambda: compute.post(f"/worker/learnuplet/{first_uplet['uuid']}", {"worker": new_uuid()}),
        409,
        "pending",
    )


def test_concurrent_exact_resends(server: Server) -> None:
    """Retries that overlap the original (e.g. after a client timeout) all get the one original answer."""
    admin = server.client("admin")
    request = signed(admin, "POST", "/problem", json=problem_body())

    def send(_: int) -> tuple[int, Any]:
        with requests.Session() as session:
            response = session.send(request, timeout=30)
        return response.status_code, response.json()

    before = server.head()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert answers[0][0] == 201, answers[0]
    assert all(answer == answers[0] for answer in answers), answers
    assert server.head()["size"] == before["size"] + 1


def test_exact_resend_of_a_rejected_write(server: Server) -> None:
    admin = server.client("admin")
    problem = make_problem(server)
    request = signed(admin, "POST", "/problem", json=problem_body(uuid=problem))
    first = assert_rejected(server, lambda: admin.session.send(request, timeout=30), 409, problem)
    second = assert_rejected(server, lambda: admin.session.send(request, timeout=30), 409, problem)
    assert first == second


# -- 403 ----------------------------------------------------------------------


def _forbidden_cases() -> list[tuple[str, str, str]]:
    cases = []
    allowed = {
        "problem": "admin",
        "algo": "analytics",
        "data": "viewer",
        "prediction": "viewer",
        "worker": "compute",
        "learndone": "compute",
        "preddone": "compute",
        "nodes": "admin",
        "nodes-roles": "admin",
        "nodes-revoke": "admin",
    }
    for endpoint, role in allowed.items():
        for key in ("admin", "analytics", "viewer", "compute", "auditor"):
            if key != role:
                cases.append((endpoint, key, role))
    return cases


@pytest.mark.parametrize("endpoint, key, role", _forbidden_cases())
def test_wrong_role(server: Server, endpoint: str, key: str, role: str) -> None:
    if endpoint == "problem":
        path, body = "/problem", problem_body()
    elif endpoint == "algo":
        path, body = "/algo", {"uuid": new_uuid(), "name": "a", "problem": make_problem(server)}
    elif endpoint == "data":
        path, body = "/data", {"uuid": new_uuid(), "problems": make_problem(server)}
    elif endpoint == "prediction":
        path, body = "/prediction", {"data": new_uuid(), "problem": trained_problem(server)}
    elif endpoint == "worker":
        path, body = f"/worker/learnuplet/{learn_chain(server)[0]['uuid']}", {"worker": new_uuid()}
    elif endpoint == "learndone":
        path, body = f"/learndone/{pending_learnuplet(server)['uuid']}", {"status": "failed"}
    elif endpoint == "preddone":
        path, body = f"/preddone/{pending_preduplet(server)['uuid']}", {"status": "failed"}
    elif endpoint == "nodes":
        path, body = "/nodes", {"key_id": fresh_key_id(), "public_key": fresh_public_key(), "roles": ["viewer"]}
    elif endpoint == "nodes-roles":
        path, body = f"/nodes/{new_member(server, ['viewer']).key_id}", {"roles": ["admin"]}
    else:
        path, body = f"/nodes/{new_member(server, ['viewer']).key_id}/revoke", {}
    assert_rejected(server, lambda: server.client(key).post(path, body), 403, repr(key), repr(role))


@pytest.mark.parametrize("by", ["compute2", "everything"])
def test_learndone_by_another_compute_key(server: Server, by: str) -> None:
    uplet = pending_learnuplet(server)
    body = {"status": "done", "perf": 0.5, "train_perf": [0.5], "test_perf": []}
    assert_rejected(
        server,
        lambda: server.client(by).post(f"/learndone/{uplet['uuid']}", body),
        403,
        uplet["uuid"],
        "claimed by another key",
    )
    ok(server.client("compute").post(f"/learndone/{uplet['uuid']}", body), 200)  # the claimer still can


@pytest.mark.parametrize("by", ["compute2", "everything"])
def test_preddone_by_another_compute_key(server: Server, by: str) -> None:
    pred = pending_preduplet(server)
    body = {"status": "done", "prediction_storage_uuid": new_uuid()}
    assert_rejected(
        server,
        lambda: server.client(by).post(f"/preddone/{pred['uuid']}", body),
        403,
        pred["uuid"],
        "claimed by another key",
    )
    ok(server.client("compute").post(f"/preddone/{pred['uuid']}", body), 200)


# -- 413 and 415 -----------------------------------------------------------------


def _padded_problem(size: int) -> bytes:
    raw = json.dumps(problem_body()).encode()
    return raw + b" " * (size - len(raw))


@pytest.mark.parametrize("size", [LIMIT + 1, 2 * LIMIT])
def test_body_too_large(server: Server, size: int) -> None:
    raw = _padded_problem(size)
    assert len(raw) == size
    assert_rejected(server, lambda: post_raw(server.client("admin"), "/problem", raw), 413, str(LIMIT))


def test_body_at_the_limit_is_accepted(server: Server) -> None:
    """The boundary: exactly the limit is read and accepted (control for the 413 test)."""
    raw = _padded_problem(LIMIT)
    ok(post_raw(server.client("admin"), "/problem", raw), 201)


def test_chunked_body_too_large(server: Server) -> None:
    """Without Content-Length (chunked transfer) the limit is enforced while reading the body."""
    raw = _padded_problem(LIMIT + 1)
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(raw).digest()).decode() + ":"
    client = server.client("admin")
    auth = auth_for(client, use_existing_digest=True)
    chunks = (raw[i : i + 65536] for i in range(0, len(raw), 65536))
    headers = {"Content-Type": "application/json", "Content-Digest": digest}
    assert_rejected(
        server, lambda: send_with(client, auth, "POST", "/problem", data=chunks, headers=headers), 413, str(LIMIT)
    )


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data; boundary=x", None],
)
def test_not_json_media_type(server: Server, content_type: str | None) -> None:
    client = server.client("admin")
    raw = json.dumps(problem_body()).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    assert_rejected(
        server,
        lambda: client.request("POST", "/problem", data=raw, headers=headers),
        415,
        "Content-Type",
        repr((content_type or "absent").split(";")[0]),
    )


def test_json_media_type_with_charset_is_accepted(server: Server) -> None:
    """Control for the 415 test: parameters after the media type are fine."""
    raw = json.dumps(problem_body()).encode()
    ok(post_raw(server.client("admin"), "/problem", raw, "Application/JSON; charset=utf-8"), 201)

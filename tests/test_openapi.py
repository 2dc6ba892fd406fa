"""The OpenAPI contract: a valid OpenAPI 3.1 document, served and rendered unauthenticated,
covering every route of the app, and met by the live server over a whole platform cycle."""

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import test_platform_cycle as cycle
from conftest import Server, new_uuid, orchestrator
from contract import Contract, documented_operations, documented_statuses
from falcon import inspect
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from api import reference
from api.app import create_app
from api.openapi import spec
from ledger import keys, routes
from ledger.config import LedgerConfig
from ledger.documents import COLLECTIONS
from ledger.entry import encode
from ledger.genesis import genesis_entry
from ledger.service import Ledger
from orchestrator.client import Client


def test_the_contract_is_valid_openapi_3_1() -> None:
    document = spec()
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_request_bodies_are_closed_objects() -> None:
    """Every request body schema names its required fields and allows no others (like ledger/schema.py)."""
    schemas = spec()["components"]["schemas"]
    bodies = {
        path: op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for path, item in spec()["paths"].items()
        for op in item.values()
        if "requestBody" in op
    }
    assert len(bodies) == 10, bodies
    for name in bodies.values():
        body = schemas[name]
        assert body["additionalProperties"] is False, name
        assert set(body["required"]) <= set(body["properties"]), name


def _app_operations() -> set[tuple[str, str]]:
    """The app's (METHOD, path) pairs, with the generic /{collection} routes spelled out."""
    node = keys.new_private_key()
    genesis = genesis_entry("test/ledger", keys.public_b64(node), [], 300, int(time.time() * 1000))
    app = create_app(Ledger.in_memory(LedgerConfig(), encode(genesis), node))
    writes = {
        args: sorted(route.segments[0] for route in routes.WRITES
                     if len(route.segments) == args + 1 and route.segments[0] != "nodes")
        for args in (0, 1)
    }
    found = set()
    for route in inspect.inspect_routes(app):
        for responder in route.methods:
            if responder.internal or responder.method == "OPTIONS":  # OPTIONS is implicit, as HTTP has it
                continue
            method, path = responder.method, route.path.rstrip("/") or "/"
            if path == "/{collection}":
                names = COLLECTIONS if method == "GET" else writes[0]
                found |= {(method, f"/{name}") for name in names}
            elif path == "/{collection}/{uuid}":
                names = COLLECTIONS if method == "GET" else writes[1]
                found |= {(method, f"/{name}/{{}}") for name in names}
            elif path == "/{collection}/{uuid}/history":
                found |= {(method, f"/{name}/{{}}/history") for name in COLLECTIONS}
            elif path == "/tile/{path:path}":  # one route; the contract spells out its four shapes
                found |= {(method, p) for p in ("/tile/{}/{}", "/tile/{}/{}.p/{}", "/tile/entries/{}",
                                                 "/tile/entries/{}.p/{}")}
            else:
                found.add((method, path))
    return {(method, re.sub(r"\{[^}]*\}", "{}", path)) for method, path in found}


def test_the_contract_documents_every_route_and_nothing_else() -> None:
    documented = {(method, re.sub(r"\{[^}]*\}", "{}", path)) for method, path in documented_operations()}
    app = _app_operations()
    assert app - documented == set(), "routes missing from api/openapi.py"
    assert documented - app == set(), "documented operations the app does not serve"


def test_openapi_json_and_docs_need_no_signature(server: Server) -> None:
    document = requests.get(server.url + "/openapi.json", timeout=10)
    assert document.status_code == 200 and document.headers["content-type"] == "application/json"
    assert document.json() == json.loads(json.dumps(spec()))

    page = requests.get(server.url + "/docs", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in page.text and "/docs/swagger.json" in page.text
    assert requests.get(server.url + "/docs/swagger.json", timeout=10).json() == document.json()
    for asset in re.findall(r'(?:src|href)="(/docs/static/[^"]+)"', page.text):
        loaded = requests.get(server.url + asset, timeout=10)
        assert loaded.status_code == 200 and loaded.content, asset


def test_the_index_needs_no_signature_and_links_to_the_rest(server: Server) -> None:
    """`GET /` in a browser or with curl: what this is, and where to go next."""
    index = requests.get(server.url + "/", timeout=10)
    assert index.status_code == 200 and index.headers["content-type"] == "application/json", index.text
    Contract().check(index)
    body = index.json()
    assert set(body) == {"name", "origin", "version", "links"} and body["name"] == "Orchestrator ledger"
    checkpoint = server.client("auditor").call("GET", "/ledger/checkpoint")
    assert body["origin"] == checkpoint.splitlines()[0]
    assert f"orchestrator {body['version']}\n" == orchestrator("--version").stdout
    assert {"docs": "/docs", "openapi": "/openapi.json", "healthz": "/healthz"}.items() <= body["links"].items()
    for path in body["links"].values():
        assert requests.get(server.url + path, timeout=10).status_code == 200, path


# -- the live server against the contract ----------------------------------------------


class ValidatingServer(Server):
    """The session server, whose clients check every response against the contract."""

    contract: Contract

    def client(self, name: str) -> Client:
        client = super().client(name)
        client.session.hooks["response"].append(self.contract.hook)
        return client


@pytest.fixture
def checked(server: Server) -> Iterator[ValidatingServer]:
    validating = ValidatingServer(server.data_dir, server.port, server.process)
    validating.contract = Contract()
    yield validating
    validating.process = None  # the session fixture stops the server


def _open(checked: ValidatingServer, path: str) -> requests.Response:
    with requests.Session() as session:
        session.hooks["response"].append(checked.contract.hook)
        return session.get(checked.url + path, timeout=10)


def _rejections(checked: ValidatingServer, problem: str) -> None:
    """One request per error status the contract names for writes and reads."""
    admin, viewer, auditor = (checked.client(n) for n in ("admin", "viewer", "auditor"))
    body: dict[str, Any] = {"uuid": problem, "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
    assert admin.post("/problem", {**body, "uuid": "nope"}).status_code == 400
    assert admin.post("/problem", body).status_code == 409
    assert viewer.post("/problem", {**body, "uuid": new_uuid()}).status_code == 403
    assert viewer.get(f"/problem/{new_uuid()}").status_code == 404
    text, json_type = {"Content-Type": "text/plain"}, {"Content-Type": "application/json"}
    assert admin.request("POST", "/problem", data=json.dumps(body), headers=text).status_code == 415
    big = json.dumps(body).encode() + b" " * (1024 * 1024)
    assert admin.request("POST", "/problem", data=big, headers=json_type).status_code == 413
    stranger = Client(checked.url, keys.private_pem(keys.new_private_key()), "stranger")
    stranger.session.hooks["response"].append(checked.contract.hook)
    assert stranger.get("/problem").status_code == 401
    assert viewer.get("/ledger/checkpoint").status_code == 403
    assert auditor.get("/ledger/entries", start="999999999").status_code == 400
    assert auditor.get("/ledger/entries/999999999").status_code == 404
    assert viewer.get("/learnuplet", colour="red").status_code == 400
    assert admin.post("/nodes/nobody", {"roles": ["viewer"]}).status_code == 404


def test_a_platform_cycle_meets_the_contract(checked: ValidatingServer) -> None:
    """Every response of a whole cycle (tests/test_platform_cycle.py), of the ledger, membership and
    operations endpoints, and of one rejection per error status, conforms to the contract."""
    cycle.test_platform_cycle(checked)
    cycle.test_better_model_moves_model_start(checked)
    cycle.test_collection_paging_and_lookup(checked)

    auditor, admin, viewer = (checked.client(n) for n in ("auditor", "admin", "viewer"))
    size = auditor.get("/ledger/head").json()["size"]
    for path, params in (
        ("/ledger/checkpoint", {}),
        ("/ledger/key", {}),
        ("/ledger/entries", {"start": "0", "end": "3"}),
        ("/ledger/entries/1", {}),
        ("/ledger/proofs/inclusion", {"seq": "1", "tree_size": str(size)}),
        ("/ledger/proofs/consistency", {"first": "1", "second": str(size)}),
        ("/ledger/receipts/1", {}),
        ("/checkpoint", {}),
        ("/tile/0/000.p/1", {}),
        ("/tile/entries/000.p/2", {}),
    ):
        assert auditor.get(path, **params).status_code == 200, path
    body = {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
    for _ in range(256):  # a full tile and bundle
        cycle.ok(admin.post("/problem", {**body, "uuid": new_uuid()}))
    assert auditor.get("/tile/0/000").status_code == 200 and auditor.get("/tile/entries/000").status_code == 200
    assert auditor.get("/tile/1/000.p/1").status_code == 200
    for path in ("/checkpoint", "/tile/0/000", "/tile/0/000.p/1", "/tile/entries/000", "/tile/entries/000.p/2"):
        head = auditor.request("HEAD", path)
        assert head.status_code == 200 and head.content == b"", path
    answer = admin.post("/problem?proof=1", body)
    assert answer.status_code == 201 and answer.json()["receipt"]["proof"].startswith("c2sp.org/tlog-proof@v1\n")

    member = f"contract-{new_uuid()[:8]}"
    public = keys.public_b64(keys.new_private_key())
    assert admin.post("/nodes", {"key_id": member, "public_key": public, "roles": ["viewer"]}).status_code == 201
    assert admin.post(f"/nodes/{member}", {"roles": ["viewer", "auditor"]}).status_code == 200
    assert viewer.get(f"/nodes/{member}").json()["roles"] == ["auditor", "viewer"]
    assert viewer.get("/nodes").status_code == 200
    assert admin.post(f"/nodes/{member}/revoke", {}).status_code == 200

    for path in ("/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/swagger.json", "/console",
                 "/console/console.js", "/console/console.css"):
        assert _open(checked, path).status_code == 200, path
    algo = cycle.ok(viewer.get("/algo", limit="1"))["algos"][0]
    assert cycle.ok(viewer.get(f"/algo/{algo['uuid']}")) == algo
    for collection in COLLECTIONS:  # history, and reads as of the entry that wrote the first version
        uuid = cycle.ok(viewer.get(f"/{collection}", limit="1"))[collection + "s"][0]["uuid"]
        versions = cycle.ok(viewer.get(f"/{collection}/{uuid}/history"))
        seq = str(versions[0]["seq"])
        assert cycle.ok(viewer.get(f"/{collection}/{uuid}", at=seq)) == versions[0]["document"]
        assert cycle.ok(viewer.get(f"/{collection}", at=seq, limit="1"))[collection + "s"]
        assert viewer.get(f"/{collection}/{uuid}", at=str(int(seq) - 1)).status_code == 404
    assert viewer.get("/problem", at="-1").status_code == 400
    problem = cycle.ok(viewer.get("/problem", limit="1"))["problems"][0]["uuid"]
    _rejections(checked, problem)

    missing = documented_operations() - checked.contract.operations()
    assert not missing, f"operations the cycle never called: {sorted(missing)}"
    statuses = {status for _, _, status in checked.contract.seen}
    assert {200, 201, 400, 401, 403, 404, 409, 413, 415} <= statuses
    documented = {seen for seen in checked.contract.seen if seen[1] != "(undocumented)"}
    assert documented <= documented_statuses()


@pytest.mark.parametrize(
    "path, allowed",
    [
        ("/problem", "GET, POST"),
        ("/prediction", "POST"),
        ("/learnuplet", "GET"),
        ("/problem/x", "GET"),
        ("/learndone/x", "POST"),
        ("/nodes", "GET, POST"),
        ("/ledger/head", "GET"),
    ],
)
def test_options_lists_what_the_contract_lists(server: Server, path: str, allowed: str) -> None:
    """On the generic /{collection} routes Allow used to say GET, POST for every name."""
    response = requests.options(server.url + path, timeout=10)
    assert response.status_code == 200 and response.headers["allow"] == allowed
    template = next(p for p in spec()["paths"] if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", p), path))
    assert {m.upper() for m in spec()["paths"][template]} == set(allowed.split(", "))


def test_options_on_an_unknown_name_is_a_json_404(server: Server) -> None:
    response = requests.options(server.url + "/nosuch", timeout=10)
    assert response.status_code == 404 and set(response.json()) == {"title", "description"}


def test_the_reference_page_in_the_repository_is_the_contract() -> None:
    """docs/api.md (linked from the README) is the contract rendered, every operation in it."""
    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "api.md").read_text()
    assert page == reference.markdown(), "docs/api.md is stale: run `python -m api.reference > docs/api.md`"
    for method, path in documented_operations():
        assert f"\n### {method} {path}\n" in page, (method, path)
    readme = (root / "README.md").read_text()
    assert "(docs/api.md)" in readme
    local = [t for t in re.findall(r"\]\(([^)#]+)\)", readme) if "://" not in t]
    for target in local + re.findall(r"`(\.\./[^`]*)`", readme):
        assert not target.startswith(("../", "/")) and (root / target).exists(), f"README points to {target}"

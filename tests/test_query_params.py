"""A query parameter an endpoint does not take is refused with a 400 naming it (and changes
nothing), rather than ignored: a misspelt `?proof=1` or `tree_size` would otherwise answer as if
it had not been sent."""

import pytest
import requests
from conftest import Server, new_uuid


def _problem() -> dict[str, object]:
    return {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}


@pytest.mark.parametrize(
    "path, params",
    [
        ("/ledger/head", {"x": "1"}),
        ("/ledger/checkpoint", {"x": "1"}),
        ("/ledger/key", {"x": "1"}),
        ("/ledger/entries", {"start": "0", "x": "1"}),
        ("/ledger/entries", {"\U001052c49": ""}),  # what schemathesis found: an odd name, no value
        ("/ledger/entries/0", {"x": "1"}),
        ("/ledger/receipts/0", {"proof": "1"}),
        ("/ledger/proofs/inclusion", {"seq": "0", "treesize": "1"}),
        ("/ledger/proofs/consistency", {"first": "1", "secnd": "1"}),
        ("/nodes", {"limit": "1"}),
        ("/nodes/admin", {"x": "1"}),
    ],
)
def test_a_read_with_a_parameter_the_endpoint_does_not_take_is_refused(
    server: Server, path: str, params: dict[str, str]
) -> None:
    answer = server.client("everything").get(path, **params)
    assert answer.status_code == 400, (path, answer.status_code, answer.text)
    unknown = next(name for name in params if name not in ("start", "seq", "first"))
    assert f"unknown query parameter {unknown!r}" in answer.json()["description"]


def test_a_document_read_takes_at_only(server: Server) -> None:
    admin = server.client("admin")
    body = _problem()
    seq = admin.post("/problem", body).json()["receipt"]["seq"]
    assert admin.get(f"/problem/{body['uuid']}", at=str(seq)).status_code == 200
    for path in (f"/problem/{body['uuid']}", f"/problem/{body['uuid']}/history"):
        answer = admin.get(path, when="1")
        assert answer.status_code == 400 and "'when'" in answer.json()["description"], answer.text


def test_a_write_with_a_misspelt_parameter_is_refused_and_appends_nothing(server: Server) -> None:
    admin, auditor = server.client("admin"), server.client("auditor")
    before = auditor.get("/ledger/head").json()
    answer = admin.request("POST", "/problem?prof=1", json=_problem())
    assert answer.status_code == 400 and "unknown query parameter 'prof'" in answer.json()["description"]
    assert auditor.get("/ledger/head").json() == before
    assert admin.request("POST", "/problem?proof=1", json=_problem()).status_code == 201


def test_a_write_is_authenticated_before_its_parameters_are_checked(server: Server) -> None:
    """Who may write is decided first: an auditor's write with a stray parameter is a 403, not a
    400 that would tell an unauthorised client about the endpoint's parameters."""
    answer = server.client("auditor").request("POST", "/problem?prof=1", json=_problem())
    assert answer.status_code == 403, answer.text


def test_a_refused_write_answers_the_same_when_resent(server: Server) -> None:
    admin = server.client("admin")
    request = admin.auth()(requests.Request("POST", admin.url + "/problem?prof=1", json=_problem()).prepare())
    first, again = admin.session.send(request, timeout=30), admin.session.send(request, timeout=30)
    assert first.status_code == again.status_code == 400
    assert first.json() == again.json()

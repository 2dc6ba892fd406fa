"""Membership at runtime: add a key, change its roles, revoke it; verify still passes."""

from pathlib import Path

from conftest import Server, new_uuid, orchestrator

from ledger import keys
from orchestrator.client import Client


def _new_member(server: Server, tmp_path: Path, name: str, roles: list[str]) -> Client:
    key = keys.new_private_key()
    path = tmp_path / f"{name}.pem"
    keys.write_private_key(path, key)
    r = server.client("admin").post("/nodes", {"key_id": name, "public_key": keys.public_b64(key), "roles": roles})
    assert r.status_code == 201, r.text
    assert r.json()["new_node"] == {"key_id": name, "public_key": keys.public_b64(key), "roles": sorted(roles),
                                    "revoked": False}
    return Client.from_file(server.url, path, name)


def _problem() -> dict:
    return {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}


def test_add_change_roles_and_revoke(fresh_server: Server, tmp_path: Path) -> None:
    server, admin = fresh_server, fresh_server.client("admin")
    carol = _new_member(server, tmp_path, "carol", ["viewer"])
    assert carol.get("/problem").status_code == 200
    assert carol.post("/problem", _problem()).status_code == 403

    r = admin.post("/nodes/carol", {"roles": ["admin", "viewer"]})
    assert r.status_code == 200 and r.json()["updated_node"]["roles"] == ["admin", "viewer"]
    assert carol.post("/problem", _problem()).status_code == 201
    assert server.client("viewer").get("/nodes/carol").json()["roles"] == ["admin", "viewer"]

    r = admin.post("/nodes/carol/revoke", {})
    assert r.status_code == 200 and r.json()["revoked_node"]["revoked"] is True
    before = server.head()
    for response in (carol.post("/problem", _problem()), carol.get("/problem")):
        assert response.status_code == 401 and "revoked" in response.json()["description"]
    assert server.head() == before
    assert admin.post("/nodes/carol", {"roles": ["viewer"]}).status_code == 409

    server.stop()
    result = orchestrator("verify", "--data-dir", str(server.data_dir))
    assert result.stdout.startswith("ok: ") and "signers" in result.stdout


def test_membership_rejections(server: Server, tmp_path: Path) -> None:
    admin, viewer = server.client("admin"), server.client("viewer")
    good = keys.public_b64(keys.new_private_key())
    cases = [
        (viewer, "/nodes", {"key_id": "x1", "public_key": good, "roles": ["viewer"]}, 403, "admin"),
        (admin, "/nodes", {"key_id": "admin", "public_key": good, "roles": ["viewer"]}, 409, "already exists"),
        (admin, "/nodes", {"key_id": "bad id!", "public_key": good, "roles": ["viewer"]}, 400, "key_id"),
        (admin, "/nodes", {"key_id": "x2", "public_key": "AAAA", "roles": ["viewer"]}, 400, "public_key"),
        (admin, "/nodes", {"key_id": "x3", "public_key": good, "roles": ["wizard"]}, 400, "wizard"),
        (admin, "/nodes", {"key_id": "x4", "public_key": good, "roles": []}, 400, "roles"),
        (admin, "/nodes/nobody", {"roles": ["viewer"]}, 404, "nobody"),
        (admin, "/nodes/admin/revoke", {}, 409, "cannot revoke itself"),
        (admin, "/nodes/viewer/explode", {}, 404, "explode"),
    ]
    for client, path, body, status, fragment in cases:
        before = server.head()
        r = client.post(path, body)
        assert r.status_code == status, (path, body, r.text)
        assert fragment in r.json()["description"], r.text
        assert server.head() == before
    assert viewer.get("/nodes/nobody").status_code == 404
    assert {n["key_id"] for n in viewer.get("/nodes").json()["nodes"]} >= {"admin", "viewer", "compute"}

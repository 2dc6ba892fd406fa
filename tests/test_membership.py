"""Membership at runtime: add a key, change its roles, revoke it; verify still passes."""

import base64
import secrets
from pathlib import Path
from typing import Any

from conftest import Server, new_uuid, orchestrator

from ledger import keys
from ledger.membership import ROLES
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


def _problem() -> dict[str, Any]:
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


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _refused(server: Server, client: Client, path: str, body: dict[str, Any], status: int, fragment: str) -> None:
    before = server.head()
    r = client.post(path, body)
    assert r.status_code == status, (path, body, r.text)
    assert fragment in r.json()["description"], r.text
    assert server.head() == before


def test_the_last_active_admin_can_neither_lose_the_role_nor_be_revoked(fresh_server: Server, tmp_path: Path) -> None:
    server, admin = fresh_server, fresh_server.client("admin")
    everything = server.client("everything")
    # Two admins (admin, everything): either may be demoted.
    r = admin.post("/nodes/everything", {"roles": ["analytics", "auditor", "compute", "viewer"]})
    assert r.status_code == 200, r.text
    for path, body, action in (("/nodes/admin", {"roles": ["auditor", "viewer"]}, "lose the admin role"),
                               ("/nodes/admin/revoke", {}, "be revoked")):
        _refused(server, admin, path, body, 409, f"node 'admin' is the last active admin and cannot {action}")
    assert admin.post("/nodes/admin", {"roles": ["admin", "viewer"]}).status_code == 200  # keeps admin: fine

    # A revoked admin does not count: carol revokes admin and is then the last one.
    carol = _new_member(server, tmp_path, "carol", ["admin"])
    assert carol.post("/nodes/admin/revoke", {}).status_code == 200
    _refused(server, carol, "/nodes/carol", {"roles": ["viewer"]}, 409, "'carol' is the last active admin")
    _refused(server, carol, "/nodes/carol/revoke", {}, 409, "'carol' is the last active admin")

    # Promoting another admin lets carol step down; then that one is the last.
    assert carol.post("/nodes/everything", {"roles": list(ROLES)}).status_code == 200
    assert carol.post("/nodes/carol", {"roles": ["viewer"]}).status_code == 200
    _refused(server, everything, "/nodes/everything/revoke", {}, 409, "'everything' is the last active admin")
    _refused(server, everything, "/nodes/everything", {"roles": ["auditor"]}, 409, "last active admin")
    assert [n["key_id"] for n in everything.get("/nodes").json()["nodes"]
            if "admin" in n["roles"] and not n["revoked"]] == ["everything"]

    server.stop()  # the state (with the admin count) is what a replay rebuilds
    result = orchestrator("verify", "--data-dir", str(server.data_dir))
    assert result.stdout.startswith("ok: "), result.stdout + result.stderr


def test_a_public_key_is_registered_under_one_key_id_only(server: Server, tmp_path: Path) -> None:
    admin, suffix = server.client("admin"), secrets.token_hex(4)
    genesis_key = server.client("viewer").get("/nodes/viewer").json()["public_key"]
    first = _new_member(server, tmp_path, f"first-{suffix}", ["viewer"])
    held = first.get(f"/nodes/first-{suffix}").json()["public_key"]
    # The same 32 bytes spelt with a non-zero padding bit: still the same key.
    respelt = held[:42] + _B64[_B64.index(held[42]) ^ 1] + "="
    assert respelt != held and base64.b64decode(respelt) == base64.b64decode(held)
    cases = [(genesis_key, "viewer"), (held, f"first-{suffix}"), (respelt, f"first-{suffix}")]
    for public, holder in cases:
        body = {"key_id": f"second-{suffix}", "public_key": public, "roles": ["viewer"]}
        _refused(server, admin, "/nodes", body, 409, f"already registered to node {holder!r}")
    assert admin.post(f"/nodes/first-{suffix}/revoke", {}).status_code == 200
    body = {"key_id": f"second-{suffix}", "public_key": held, "roles": ["viewer"]}
    _refused(server, admin, "/nodes", body, 409, f"already registered to node 'first-{suffix}'")  # revoked or not
    assert admin.get(f"/nodes/second-{suffix}").status_code == 404

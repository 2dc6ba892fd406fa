"""Membership transactions: admins add keys with roles, change roles, revoke keys.

Records live in state under ``m/member/<key id>`` as
``{"public_key": base64 raw Ed25519 key, "roles": [...], "revoked": bool}``.
Revocation is final; a revoked key's earlier entries still verify, because a
verifier checks each entry against the membership in force at that entry.

Two derived keys beside them, kept by :func:`put_genesis_member`, :func:`add`,
:func:`set_roles` and :func:`revoke` (apply reads state by point reads only, so
these stand in for scans):

    m/admins              -> n8, how many members are active (not revoked) and hold ``admin``
    m/pubkey/<base64 key> -> key id holding that public key (revoked or not)

The ledger always keeps one active admin: the last one can neither lose the role
nor be revoked. A public key belongs to one key id for the life of the ledger.
"""

import base64
import re
from collections.abc import Callable
from typing import Any

from ledger.documents import Txn
from ledger.errors import ConflictError, NotFoundError, ValidationError
from ledger.layout import ADMINS_KEY, member_key, n8, pubkey_key

ROLES = ("admin", "analytics", "viewer", "compute", "auditor")
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _add_admins(txn: Txn, delta: int) -> None:
    txn.put(ADMINS_KEY, n8(txn.counter(ADMINS_KEY) + delta))


def put_genesis_member(txn: Txn, record: dict[str, Any]) -> None:
    """Write one member named by the genesis entry, with the derived keys beside it."""
    member_roles = sorted(record["roles"])
    stored = {"public_key": record["public_key"], "roles": member_roles, "revoked": False}
    txn.put_json(member_key(record["key_id"]), stored)
    index = pubkey_key(record["public_key"])
    if txn.get(index) is None:
        txn.put(index, record["key_id"].encode())
    if "admin" in member_roles:
        _add_admins(txn, 1)


def view(key_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"key_id": key_id, **record}


def key_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _KEY_ID.fullmatch(value):
        raise ValidationError(f"field {name!r} must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return value


def public_key(name: str, value: Any) -> str:
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValidationError(f"field {name!r} must be a base64 raw Ed25519 public key (32 bytes)")
    return base64.b64encode(raw).decode()


def roles(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValidationError(f"field {name!r} must be a non-empty list of roles: {', '.join(ROLES)}")
    for item in value:
        if item not in ROLES:
            raise ValidationError(f"field {name!r}: unknown role {item!r}; roles are {', '.join(ROLES)}")
    if len(set(value)) != len(value):
        raise ValidationError(f"field {name!r} lists a role twice")
    return sorted(value)


def _existing(txn: Txn, name: str) -> dict[str, Any]:
    if not _KEY_ID.fullmatch(name):
        raise NotFoundError(f"no node {name!r}")
    record: dict[str, Any] | None = txn.get_json(member_key(name))
    if record is None:
        raise NotFoundError(f"no node {name!r}")
    if record["revoked"]:
        raise ConflictError(f"node {name!r} is revoked; revocation is final")
    return record


def _refuse_last_admin(txn: Txn, name: str, action: str) -> None:
    if txn.counter(ADMINS_KEY) <= 1:
        raise ConflictError(
            f"node {name!r} is the last active admin and cannot {action}; "
            "the ledger must keep at least one (register or promote another admin first)"
        )


def add(txn: Txn, clean: dict[str, Any]) -> dict[str, Any]:
    """Register a key; `clean` is the body as the route checked it (key_id, public_key, roles)."""
    if txn.get(member_key(clean["key_id"])) is not None:
        raise ConflictError(f"node {clean['key_id']!r} already exists")
    index = pubkey_key(clean["public_key"])
    holder = txn.get(index)
    if holder is not None:
        raise ConflictError(
            f"public key {clean['public_key']} is already registered to node {holder.decode()!r}; "
            "each key id needs a key pair of its own"
        )
    record = {"public_key": clean["public_key"], "roles": clean["roles"], "revoked": False}
    txn.put_json(member_key(clean["key_id"]), record)
    txn.put(index, clean["key_id"].encode())
    if "admin" in record["roles"]:
        _add_admins(txn, 1)
    return {"new_node": view(clean["key_id"], record)}


def set_roles(txn: Txn, name: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Replace a key's roles; `body()` checks the body (asked once the key is found)."""
    record = _existing(txn, name)
    clean = body()
    was_admin, is_admin = "admin" in record["roles"], "admin" in clean["roles"]
    if was_admin and not is_admin:
        _refuse_last_admin(txn, name, "lose the admin role")
    if was_admin != is_admin:
        _add_admins(txn, 1 if is_admin else -1)
    record = {**record, "roles": clean["roles"]}
    txn.put_json(member_key(name), record)
    return {"updated_node": view(name, record)}


def revoke(txn: Txn, name: str, requester: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Revoke a key, for good; `body()` checks the (empty) body once the key is found."""
    record = _existing(txn, name)
    body()
    admin = "admin" in record["roles"]
    if admin:
        _refuse_last_admin(txn, name, "be revoked")
    if name == requester:
        raise ConflictError("a key cannot revoke itself")
    if admin:
        _add_admins(txn, -1)
    record = {**record, "revoked": True}
    txn.put_json(member_key(name), record)
    return {"revoked_node": view(name, record)}


def genesis_settings(genesis: Any) -> dict[str, Any]:
    """The genesis body (entry 0) checked for the fields the ledger reads from it.

    Raises ValidationError naming the first missing or malformed field, so that a damaged
    genesis is reported as such rather than failing wherever a field is first read. Only
    types are checked: whatever `orchestrator init` ever wrote passes.
    """
    if not isinstance(genesis, dict):
        raise ValidationError("the genesis must be a JSON object")
    for name in ("origin", "node_key", "signature_window", "members"):
        if name not in genesis:
            raise ValidationError(f"the genesis lacks field {name!r}")
    if not isinstance(genesis["origin"], str) or not genesis["origin"]:
        raise ValidationError("genesis field 'origin' must be a non-empty string")
    _genesis_key("node_key", genesis["node_key"])
    if "node_keys" in genesis:
        _genesis_node_keys(genesis)
    window = genesis["signature_window"]
    if type(window) is not int or window <= 0:
        raise ValidationError("genesis field 'signature_window' must be a positive integer")
    if not isinstance(genesis["members"], list):
        raise ValidationError("genesis field 'members' must be a list")
    for i, record in enumerate(genesis["members"]):
        if not isinstance(record, dict) or not all(k in record for k in ("key_id", "public_key", "roles")):
            raise ValidationError(f"genesis members[{i}] must be an object with key_id, public_key and roles")
        if not isinstance(record["key_id"], str) or not record["key_id"]:
            raise ValidationError(f"genesis field 'members[{i}].key_id' must be a non-empty string")
        _genesis_key(f"members[{i}].public_key", record["public_key"])
        if not isinstance(record["roles"], list) or not all(isinstance(r, str) for r in record["roles"]):
            raise ValidationError(f"genesis field 'members[{i}].roles' must be a list of role names")
    return genesis


def _genesis_node_keys(genesis: dict[str, Any]) -> None:
    listed = genesis["node_keys"]
    if not isinstance(listed, list) or not listed:
        raise ValidationError("genesis field 'node_keys' must be a non-empty list")
    names = []
    for i, record in enumerate(listed):
        if not isinstance(record, dict) or not isinstance(record.get("name"), str) or not record["name"]:
            raise ValidationError(f"genesis node_keys[{i}] must be an object with a name and a public_key")
        _genesis_key(f"node_keys[{i}].public_key", record.get("public_key"))
        names.append(record["name"])
    if len(set(names)) != len(names):
        raise ValidationError("genesis node_keys name a node twice")
    if genesis["node_key"] not in [record["public_key"] for record in listed]:
        raise ValidationError("genesis field 'node_key' must be one of its node_keys")


def node_keys(settings: dict[str, Any]) -> dict[str, str]:
    """The ledger's node keys, name -> base64 public key, from its genesis or its settings: the
    nodes whose signed checkpoints count. A single-node genesis (no ``node_keys``) has one,
    named after the origin."""
    listed = settings.get("node_keys")
    if isinstance(listed, list):
        return {str(record["name"]): str(record["public_key"]) for record in listed}
    return {str(settings["origin"]): str(settings["node_key"])}


def _genesis_key(name: str, value: Any) -> None:
    try:
        public_key(name, value)
    except ValidationError as e:
        raise ValidationError(f"genesis {e.message}") from e

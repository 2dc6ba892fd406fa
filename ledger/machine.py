"""The state machine: one pure function from (state, entry) to (writes, outcome).

Invariants:
- ``apply`` reads nothing but the state view it is given and the entry: no
  clock, randomness, environment, or unordered iteration. Ids derive from the
  entry hash, times from the entry's ledger-assigned time.
- It checks everything before it returns writes; a rejection raises a
  LedgerError and leaves no writes behind (the caller discards the Txn).
- The live writer and replay both call it, so replay reproduces state exactly.

Besides the domain documents it records, per accepted request, the key's
nonce, the signature fingerprint (for safe resends) and the outcome.
"""

import hashlib
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ledger import canonical, httpsig, membership, schema, uplets
from ledger.documents import Readable, Txn, n8
from ledger.entry import Entry, leaf_hash
from ledger.errors import AuthError, ForbiddenError, LedgerError, NotFoundError, ValidationError
from ledger.membership import ROLES as ROLES
from ledger.membership import member_key


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Route:
    role: str
    status: int
    handler: Callable[["Context", list[str]], dict[str, Any]]


@dataclass
class Context:
    txn: Txn
    entry: Entry
    ids: uplets.Ids
    body: Any

    @property
    def now(self) -> int:
        return self.entry.time_s


def _problem(ctx: Context, args: list[str]) -> dict[str, Any]:
    body = schema.fields(
        ctx.body,
        {
            "uuid": schema.uuid,
            "workflow": schema.uuid,
            "test_dataset": schema.possibly_empty_uuid_list,
            "size_train_dataset": schema.positive_int,
        },
    )
    return uplets.new_problem(ctx.txn, ctx.now, body)


def _algo(ctx: Context, args: list[str]) -> dict[str, Any]:
    body = schema.fields(ctx.body, {"uuid": schema.uuid, "name": schema.text, "problem": schema.uuid})
    return uplets.new_algo(ctx.txn, ctx.ids, ctx.now, body)


def _data(ctx: Context, args: list[str]) -> dict[str, Any]:
    body = schema.fields(ctx.body, {"uuid": schema.uuid_or_list, "problems": schema.uuid_or_list})
    return uplets.new_data(ctx.txn, ctx.ids, ctx.now, body)


def _prediction(ctx: Context, args: list[str]) -> dict[str, Any]:
    body = schema.fields(ctx.body, {"data": schema.uuid_or_list, "problem": schema.uuid})
    return uplets.new_prediction(ctx.txn, ctx.ids, ctx.now, body)


def _worker(ctx: Context, args: list[str]) -> dict[str, Any]:
    kind, uuid = args
    if kind not in ("learnuplet", "preduplet"):
        raise NotFoundError(f"no uplet type {kind!r}; use learnuplet or preduplet")
    uuid = _path_uuid(kind, uuid)
    body = schema.fields(ctx.body, {"worker": schema.uuid})
    return uplets.set_worker(ctx.txn, kind, uuid, ctx.entry.key_id, body)


def _learndone(ctx: Context, args: list[str]) -> dict[str, Any]:
    uuid = _path_uuid("learnuplet", args[0])
    optional = {"perf": schema.finite, "train_perf": _any, "test_perf": _any}
    body = schema.fields(ctx.body, {"status": schema.status}, optional)
    if body["status"] == "done":
        for name in ("perf", "train_perf", "test_perf"):
            if name not in body:
                raise ValidationError(f"missing field {name!r} (required when status is 'done')")
    return uplets.learn_done(ctx.txn, ctx.now, uuid, ctx.entry.key_id, body)


def _preddone(ctx: Context, args: list[str]) -> dict[str, Any]:
    uuid = _path_uuid("preduplet", args[0])
    body = schema.fields(ctx.body, {"status": schema.status}, {"prediction_storage_uuid": schema.uuid})
    if body["status"] == "done" and "prediction_storage_uuid" not in body:
        raise ValidationError("missing field 'prediction_storage_uuid' (required when status is 'done')")
    return uplets.pred_done(ctx.txn, ctx.now, uuid, ctx.entry.key_id, body)


def _node_add(ctx: Context, args: list[str]) -> dict[str, Any]:
    return membership.add(ctx.txn, ctx.body)


def _node_roles(ctx: Context, args: list[str]) -> dict[str, Any]:
    return membership.set_roles(ctx.txn, args[0], ctx.body)


def _node_revoke(ctx: Context, args: list[str]) -> dict[str, Any]:
    if args[1] != "revoke":
        raise NotFoundError(f"no write endpoint POST /nodes/{args[0]}/{args[1]}")
    return membership.revoke(ctx.txn, args[0], ctx.entry.key_id, ctx.body)


def _any(name: str, value: Any) -> Any:
    return value


def _path_uuid(kind: str, value: str) -> str:
    if not schema.is_uuid(value):
        raise NotFoundError(f"no {kind} {value!r}")
    return value.lower()


# (first path segment, number of further segments) -> route
ROUTES: dict[tuple[str, int], Route] = {
    ("problem", 0): Route("admin", 201, _problem),
    ("algo", 0): Route("analytics", 201, _algo),
    ("data", 0): Route("viewer", 201, _data),
    ("prediction", 0): Route("viewer", 201, _prediction),
    ("worker", 2): Route("compute", 200, _worker),
    ("learndone", 1): Route("compute", 200, _learndone),
    ("preddone", 1): Route("compute", 200, _preddone),
    ("nodes", 0): Route("admin", 201, _node_add),
    ("nodes", 1): Route("admin", 200, _node_roles),
    ("nodes", 2): Route("admin", 200, _node_revoke),
}
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]*")


def route_of(method: str, path: str) -> tuple[Route, list[str]]:
    """The write route for a method and path; raises NotFoundError."""
    parts = path.strip("/").split("/")
    name, args = parts[0], parts[1:]
    route = ROUTES.get((name, len(args)))
    if method != "POST" or route is None or not all(_SEGMENT.fullmatch(arg) for arg in args):
        raise NotFoundError(f"no write endpoint {method} {path}")
    return route, args


# -- membership ---------------------------------------------------------------


def member(view: Readable, key_id: str) -> dict[str, Any] | None:
    """The membership record of a key id, or None if it was never registered.

    The record is shared (decoded once per distinct stored bytes): read it, never change it.
    """
    raw = view.get(member_key(key_id))
    return None if raw is None else _decoded(raw)


def config(view: Readable) -> dict[str, Any]:
    """The ledger's settings from its genesis (shared, like a membership record: read only)."""
    raw = view.get(b"m/config")
    if raw is None:
        raise LedgerError("the ledger has no genesis")
    return _decoded(raw)


@lru_cache(maxsize=4096)
def _decoded(raw: bytes) -> Any:
    """canonical.loads of records every transaction reads and few change (config, membership)."""
    return canonical.loads(raw)


def _apply_genesis(txn: Txn, entry: Entry) -> Outcome:
    genesis = membership.genesis_settings(entry.genesis)
    if entry.seq != 0 or txn.get(b"m/config") is not None:
        raise ValidationError("genesis must be entry 0")
    txn.put_json(
        b"m/config",
        {
            "origin": genesis["origin"],
            "node_key": genesis["node_key"],
            "signature_window": genesis["signature_window"],
        },
    )
    for record in genesis["members"]:
        txn.put_json(
            member_key(record["key_id"]),
            {"public_key": record["public_key"], "roles": sorted(record["roles"]), "revoked": False},
        )
    return Outcome(200, {"genesis": genesis["origin"]})


# -- apply --------------------------------------------------------------------


def nonce_key(key_id: str, nonce: str) -> bytes:
    """State key recording that key_id used nonce in an accepted write."""
    return b"m/nonce/%s\x00%s" % (key_id.encode(), nonce.encode())


def authorize(view: Readable, key_id: str, role: str | None) -> dict[str, Any]:
    """The key's membership if it is active and holds role (None: any role). Raises Auth/Forbidden."""
    return check_member(member(view, key_id), key_id, role)


def check_member(record: dict[str, Any] | None, key_id: str, role: str | None) -> dict[str, Any]:
    """authorize() on a membership record already read."""
    if record is None:
        raise AuthError(f"unknown key id {key_id!r}")
    if record["revoked"]:
        raise AuthError(f"key {key_id!r} has been revoked")
    if role is not None and role not in record["roles"]:
        raise ForbiddenError(f"key {key_id!r} lacks the {role!r} role this endpoint needs")
    return record


def apply(view: Readable, entry: Entry) -> tuple[dict[bytes, bytes | None], Outcome]:
    """Apply one ordered entry to state.

    Returns the state writes and the outcome; raises a LedgerError to reject
    the entry, in which case the caller must not log it.
    """
    txn = Txn(view)
    if entry.genesis is not None:
        return txn.writes, _apply_genesis(txn, entry)
    request = entry.request
    assert request is not None
    params = httpsig.signature_params(request)
    if params.key_id != entry.key_id:
        raise AuthError("entry key id differs from the signature's keyid")
    route, args = route_of(request.method, request.path)
    authorize(txn, entry.key_id, route.role)
    httpsig.check_window(params, entry.time_s, config(txn)["signature_window"])
    used = nonce_key(entry.key_id, params.nonce)
    if txn.get(used) is not None:
        raise AuthError(f"nonce {params.nonce!r} was already used by key {entry.key_id!r}")
    leaf = leaf_hash(entry.raw)
    ctx = Context(txn, entry, uplets.Ids(leaf), canonical.parse_body(request.body))
    body = route.handler(ctx, args)
    outcome = Outcome(route.status, body)
    txn.put(used, n8(entry.seq))
    txn.put(b"m/sent/" + params.fingerprint, n8(entry.seq))
    txn.put_json(b"m/result/" + n8(entry.seq), {"status": outcome.status, "body": outcome.body, "leaf": leaf.hex()})
    return txn.writes, outcome


def write_set_digest(previous: bytes, seq: int, writes: dict[bytes, bytes | None]) -> bytes:
    """Running state digest: SHA-256(previous || seq || canonical write set)."""
    parts = [previous, n8(seq)]
    for key in sorted(writes):
        value = writes[key]
        if value is None:
            parts.append(_U32(len(key)) + key + b"\x00")
        else:
            parts.append(_U32(len(key)) + key + b"\x01" + _U32(len(value)) + value)
    return hashlib.sha256(b"".join(parts)).digest()


_U32 = struct.Struct(">I").pack

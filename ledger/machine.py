"""The state machine: one pure function from (state, entry) to (writes, outcome).

Invariants:
- ``apply`` reads nothing but the state view it is given and the entry: no
  clock, randomness, environment, or unordered iteration. Ids derive from the
  entry hash, times from the entry's ledger-assigned time.
- It checks everything before it returns writes; a rejection raises a
  LedgerError and leaves no writes behind (the caller discards the Txn).
- The live writer and replay both call it, so replay reproduces state exactly.

Besides the domain documents (and each document's version under the sequence
number of the entry that wrote it) it records, per accepted request, the key's
nonce, the signature fingerprint (for safe resends) and the outcome.
"""

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger import canonical, httpsig, membership, routes, schema, uplets
from ledger.config import DEFAULT_MAX_UPLETS_PER_WRITE
from ledger.documents import Readable, Txn, shared_json
from ledger.entry import Entry, leaf_hash
from ledger.errors import (
    AuthError,
    ForbiddenError,
    IntegrityError,
    InternalError,
    NotFoundError,
    ValidationError,
)
from ledger.layout import CONFIG_KEY, VERSION_PREFIX, from_n8, member_key, n8, nonce_key, result_key, sent_key
from ledger.membership import ROLES as ROLES


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any]


class Context:
    """What a handler gets: the transaction, the entry, its ids, route and parsed (unchecked) body."""

    __slots__ = ("txn", "entry", "ids", "route", "body")

    def __init__(self, txn: Txn, entry: Entry, ids: uplets.Ids, route: routes.WriteRoute, body: Any) -> None:
        self.txn = txn
        self.entry = entry
        self.ids = ids
        self.route = route
        self.body = body

    def clean(self) -> dict[str, Any]:
        """The body checked against the route's fields (ValidationError names the field)."""
        return routes.body(self.route, self.body)

    @property
    def now(self) -> int:
        return self.entry.time_s


def _problem(ctx: Context, args: list[str]) -> dict[str, Any]:
    return uplets.new_problem(ctx.txn, ctx.now, ctx.clean())


def _algo(ctx: Context, args: list[str]) -> dict[str, Any]:
    return uplets.new_algo(ctx.txn, ctx.ids, ctx.now, ctx.clean())


def _data(ctx: Context, args: list[str]) -> dict[str, Any]:
    return uplets.new_data(ctx.txn, ctx.ids, ctx.now, ctx.clean())


def _prediction(ctx: Context, args: list[str]) -> dict[str, Any]:
    return uplets.new_prediction(ctx.txn, ctx.ids, ctx.now, ctx.clean())


def _worker(ctx: Context, args: list[str]) -> dict[str, Any]:
    kind, uuid = args
    if kind not in ("learnuplet", "preduplet"):
        raise NotFoundError(f"no uplet type {kind!r}; use learnuplet or preduplet")
    uuid = _path_uuid(kind, uuid)
    return uplets.set_worker(ctx.txn, kind, uuid, ctx.entry.key_id, ctx.clean())


def _learndone(ctx: Context, args: list[str]) -> dict[str, Any]:
    uuid = _path_uuid("learnuplet", args[0])
    return uplets.learn_done(ctx.txn, ctx.now, uuid, ctx.entry.key_id, ctx.clean())


def _preddone(ctx: Context, args: list[str]) -> dict[str, Any]:
    uuid = _path_uuid("preduplet", args[0])
    return uplets.pred_done(ctx.txn, ctx.now, uuid, ctx.entry.key_id, ctx.clean())


def _node_add(ctx: Context, args: list[str]) -> dict[str, Any]:
    return membership.add(ctx.txn, ctx.clean())


def _node_roles(ctx: Context, args: list[str]) -> dict[str, Any]:
    return membership.set_roles(ctx.txn, args[0], ctx.clean)


def _node_revoke(ctx: Context, args: list[str]) -> dict[str, Any]:
    return membership.revoke(ctx.txn, args[0], ctx.entry.key_id, ctx.clean)


def _path_uuid(kind: str, value: str) -> str:
    if not schema.is_uuid(value):
        raise NotFoundError(f"no {kind} {value!r}")
    return value.lower()


Handler = Callable[[Context, list[str]], dict[str, Any]]
#: The state machine's handler of each write route (:data:`ledger.routes.WRITES`), by name.
HANDLERS: dict[str, Handler] = {
    "problem": _problem,
    "algo": _algo,
    "data": _data,
    "prediction": _prediction,
    "worker": _worker,
    "learndone": _learndone,
    "preddone": _preddone,
    "node": _node_add,
    "nodeRoles": _node_roles,
    "revoke": _node_revoke,
}
if sorted(HANDLERS) != sorted(route.name for route in routes.WRITES):
    raise ImportError("ledger.machine.HANDLERS and ledger.routes.WRITES name different routes")


# -- membership ---------------------------------------------------------------


def member(view: Readable, key_id: str) -> dict[str, Any] | None:
    """The membership record of a key id, or None if it was never registered.

    The record is shared (decoded once per distinct stored bytes): read it, never change it.
    """
    raw = view.get(member_key(key_id))
    return None if raw is None else _decoded(raw)


def config(view: Readable) -> dict[str, Any]:
    """The ledger's settings from its genesis (shared, like a membership record: read only)."""
    raw = view.get(CONFIG_KEY)
    if raw is None:
        raise IntegrityError("the ledger has no genesis")
    settings: dict[str, Any] = _decoded(raw)
    return settings


_decoded = shared_json  # records every transaction reads and few change (config, membership)


def _apply_genesis(txn: Txn, entry: Entry, genesis: dict[str, Any]) -> Outcome:
    genesis = membership.genesis_settings(genesis)
    if entry.seq != 0 or txn.get(CONFIG_KEY) is not None:
        raise ValidationError("genesis must be entry 0")
    settings = {
        "origin": genesis["origin"],
        "node_key": genesis["node_key"],
        "signature_window": genesis["signature_window"],
        "max_uplets_per_write": genesis.get("max_uplets_per_write", DEFAULT_MAX_UPLETS_PER_WRITE),
    }
    if "node_keys" in genesis:  # several nodes (absent from single-node ledgers: their digests stay)
        settings["node_keys"] = genesis["node_keys"]
    txn.put_json(CONFIG_KEY, settings)
    for record in genesis["members"]:
        membership.put_genesis_member(txn, record)
    return Outcome(200, {"genesis": genesis["origin"]})


# -- apply --------------------------------------------------------------------


def authorize(view: Readable, key_id: str, role: str | None) -> dict[str, Any]:
    """The key's membership if it is active and holds role (None: any role). Raises Auth/Forbidden."""
    return check_member(member(view, key_id), key_id, role)


def check_member(record: dict[str, Any] | None, key_id: str, role: str | None) -> dict[str, Any]:
    """authorize() on a membership record already read."""
    if record is None:
        raise AuthError(f"unknown key id {key_id!r}", reason="unknown_key")
    if record["revoked"]:
        raise AuthError(f"key {key_id!r} has been revoked", reason="revoked_key")
    if role is not None and role not in record["roles"]:
        raise ForbiddenError(f"key {key_id!r} lacks the {role!r} role this endpoint needs")
    return record


def apply(view: Readable, entry: Entry, leaf: bytes | None = None) -> tuple[dict[bytes, bytes | None], Outcome]:
    """Apply one ordered entry to state (`leaf`: its leaf hash, when the caller has it).

    Returns the state writes and the outcome; raises a LedgerError to reject
    the entry, in which case the caller must not log it.

    The signature's age is not checked here: the node refuses a signature created more than
    the window before its clock when the request arrives (``Ledger.authenticate``). Here, in
    ledger time, only a signature from the future is refused: ledger time never goes back, so
    after the node's clock has been set back, entries keep the latest time until the clock
    catches up, and an age check in ledger time would refuse every fresh signature meanwhile.
    Old signatures cannot come back: each nonce is recorded for good.
    """
    txn = Txn(view, seq=entry.seq)
    if entry.genesis is not None:
        return txn.writes, _apply_genesis(txn, entry, entry.genesis)
    request = entry.request
    if request is None:
        raise ValidationError("an entry holds either a genesis or a signed request")
    params = httpsig.signature_params(request)
    if params.key_id != entry.key_id:
        raise AuthError("entry key id differs from the signature's keyid", reason="malformed")
    route, args = routes.route_of(request.method, request.path)
    authorize(txn, entry.key_id, route.role)
    httpsig.check_not_ahead(params, entry.time_s, config(txn)["signature_window"])
    used = nonce_key(entry.key_id, params.nonce)
    if txn.get(used) is not None:
        raise AuthError(f"nonce {params.nonce!r} was already used by key {entry.key_id!r}", reason="replay")
    if leaf is None:
        leaf = leaf_hash(entry.raw)
    ctx = Context(txn, entry, uplets.Ids(leaf), route, canonical.parse_body(request.body))
    body = HANDLERS[route.name](ctx, args)
    outcome = Outcome(route.status, body)
    txn.put(used, n8(entry.seq))
    txn.put(sent_key(params.fingerprint), n8(entry.seq))
    txn.put_json(result_key(entry.seq), {"status": outcome.status, "body": outcome.body, "leaf": leaf.hex()})
    return txn.writes, outcome


def recorded_outcome(view: Readable, fingerprint: bytes) -> tuple[int, Outcome, str] | None:
    """(seq, outcome, leaf hash hex) of the entry an exact signed request became, if it became one."""
    sent = view.get(sent_key(fingerprint))
    if sent is None:
        return None
    seq = from_n8(sent)
    raw = view.get(result_key(seq))
    if raw is None:
        raise InternalError(f"entry {seq} has no recorded outcome")
    recorded = canonical.loads(raw)
    return seq, Outcome(recorded["status"], recorded["body"]), recorded["leaf"]


def write_set_digest(previous: bytes, seq: int, writes: dict[bytes, bytes | None]) -> bytes:
    """Running state digest: SHA-256(previous || seq || canonical write set).

    The canonical write set is each key in sorted order as u32 length || key, then 0x00 for a
    deletion or 0x01 || u32 length || value. Document versions (``v/...``) are left out: each is
    the bytes of the ``d/`` write beside it under the entry's seq, so the digest already commits
    to them, and ledgers signed before versions were kept keep their digests."""
    parts = [previous, n8(seq)]
    extend = parts.extend
    for key in sorted(writes):
        if key.startswith(VERSION_PREFIX):
            continue
        value = writes[key]
        if value is None:
            extend((_U32(len(key)), key, b"\x00"))
        else:
            extend((_U32(len(key)), key, b"\x01", _U32(len(value)), value))
    return hashlib.sha256(b"".join(parts)).digest()


_U32 = struct.Struct(">I").pack

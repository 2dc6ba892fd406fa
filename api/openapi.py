"""The service's OpenAPI 3.1 contract, built from the engine's own tables.

:func:`spec` returns the document ``GET /openapi.json`` serves; ``GET /docs`` renders it with
swagger-ui-py. Write operations and their request bodies are generated from :mod:`ledger.routes` (path, role,
status, required fields, ``additionalProperties: false``), each field's schema from the check the
engine applies to it, so a body that breaks the contract is one the engine refuses. Collection documents
list the fields of :data:`ledger.documents.FIELDS`.
"""

import copy
from functools import lru_cache
from typing import Any

import falcon
import falcon.asgi
import orjson

from api.waits import MAX_WAIT_S
from ledger import membership, routes
from ledger import schema as checks
from ledger.documents import COLLECTIONS, FIELDS
from ledger.membership import ROLES
from ledger.schema import MAX_INT, Check

Schema = dict[str, Any]

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
KEY_ID_PATTERN = "^[A-Za-z0-9._-]{1,64}$"
HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
WAIT = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT_S}
BASE64 = {"type": "string", "contentEncoding": "base64"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    """A closed object: exactly these properties, the listed ones (default: all) required."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
        **extra,
    }


UUID = _ref("Uuid")
UUID_LIST = {"type": "array", "items": UUID, "minItems": 1, "uniqueItems": True}
UUID_OR_LIST = {"oneOf": [UUID, UUID_LIST]}
TIMESTAMP = {"type": "integer", "description": "Unix seconds, from the entry's ledger time"}
PERF_MAP = {
    "type": "object",
    "propertyNames": UUID,
    "additionalProperties": {"type": "number"},
    "description": "each data uuid of the learnuplet mapped to a finite number",
}
PERF_INPUT = {
    "oneOf": [{"type": "array", "items": {"type": "number"}}, PERF_MAP],
    "description": "a finite number per data uuid: a list in the learnuplet's data order, or a mapping",
}

# -- documents -----------------------------------------------------------------

_DOCUMENT_FIELDS: dict[str, dict[str, Schema]] = {
    "problem": {
        "uuid": UUID,
        "workflow": UUID,
        "test_dataset": {"type": "array", "items": UUID},
        "size_train_dataset": {"type": "integer", "minimum": 1},
        "timestamp_upload": TIMESTAMP,
    },
    "algo": {"uuid": UUID, "name": {"type": "string"}, "problem": UUID, "timestamp_upload": TIMESTAMP},
    "data": {"uuid": UUID, "problems": {"type": "array", "items": UUID}, "timestamp_upload": TIMESTAMP},
    "learnuplet": {
        "uuid": UUID,
        "problem": UUID,
        "workflow": UUID,
        "algo": UUID,
        "train_data": {"type": "array", "items": UUID},
        "test_data": {"type": "array", "items": UUID},
        "rank": {"type": "integer", "minimum": 0},
        "model_start": _nullable(UUID),
        "model_end": UUID,
        "worker": _nullable(UUID),
        "status": {"enum": ["waiting", "todo", "pending", "done", "failed"]},
        "perf": _nullable({"type": "number"}),
        "train_perf": _nullable(PERF_MAP),
        "test_perf": _nullable(PERF_MAP),
        "timestamp_creation": TIMESTAMP,
        "timestamp_done": _nullable(TIMESTAMP),
    },
    "preduplet": {
        "uuid": UUID,
        "problem": UUID,
        "workflow": UUID,
        "data": UUID,
        "model": UUID,
        "worker": _nullable(UUID),
        "status": {"enum": ["todo", "pending", "done", "failed"]},
        "prediction_storage_uuid": _nullable(UUID),
        "timestamp_request": TIMESTAMP,
        "timestamp_done": _nullable(TIMESTAMP),
    },
}
if any(tuple(_DOCUMENT_FIELDS[c]) != FIELDS[c] for c in COLLECTIONS):
    raise ImportError("api.openapi's document schemas drifted from ledger.documents.FIELDS")


def _title(collection: str) -> str:
    return collection.capitalize()


# -- request bodies: generated from ledger.routes, each field's schema from the check it passes --

_DONE = {"status": {"const": "done"}}
CHECK_SCHEMAS: dict[Check, Schema] = {
    checks.uuid: UUID,
    checks.possibly_empty_uuid_list: {"type": "array", "items": UUID, "uniqueItems": True},
    checks.uuid_or_list: UUID_OR_LIST,
    checks.positive_int: {"type": "integer", "minimum": 1, "maximum": MAX_INT},
    checks.text: {"type": "string", "minLength": 1, "maxLength": 1000, "description": "not only whitespace"},
    checks.finite: {"type": "number", "description": "finite; integers at most 2**53 in magnitude"},
    checks.status: {"enum": ["done", "failed"]},
    routes.perf_input: PERF_INPUT,
    membership.key_id: {"type": "string", "pattern": KEY_ID_PATTERN},
    membership.public_key: {
        "type": "string",
        "pattern": "^[A-Za-z0-9+/]{43}=$",
        "description": "base64 of the raw 32-byte Ed25519 public key",
    },
    membership.roles: _ref("Roles"),
}


def _request_body(route: routes.WriteRoute) -> Schema:
    fields = {**route.required, **route.optional}
    extra: Schema = {}
    if route.required_when_done:
        extra = {"if": {"properties": _DONE}, "then": {"required": list(route.required_when_done)}}
    if not fields:
        extra["description"] = "an empty object"
    return _object({name: CHECK_SCHEMAS[check] for name, check in fields.items()}, list(route.required), **extra)


REQUESTS: dict[str, Schema] = {route.request: _request_body(route) for route in routes.WRITES}

# -- responses -------------------------------------------------------------------

RECEIPT = _object(
    {
        "seq": {"type": "integer", "minimum": 1},
        "hash": HEX64,
        "proof": {
            "type": "string",
            "description": "with ?proof=1 or `Prefer: return=proof`: the C2SP tlog-proof@v1 receipt (the entry's "
            "bytes, its index, the inclusion proof and the checkpoint, cosigned when witnesses answered in time)",
        },
    },
    ["seq", "hash"],
    description="where the write sits in the log: its sequence number and RFC 9162 leaf hash (hex)",
)
NODE = _object(
    {"key_id": {"type": "string"}, "public_key": BASE64, "roles": _ref("Roles"), "revoked": {"type": "boolean"}}
)
ENTRY = {
    "type": "object",
    "description": "a log entry, as canonical JSON: the genesis, or a signed request as received",
    "properties": {
        "v": {"const": 1},
        "seq": {"type": "integer", "minimum": 0},
        "time": {"type": "integer", "description": "ledger time, Unix milliseconds"},
        "key": {"type": "string"},
        "genesis": {"type": "object"},
        "method": {"type": "string"},
        "target": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "body": BASE64,
    },
    "required": ["v", "seq", "time", "key"],
    "additionalProperties": False,
}
ENTRY_VIEW = _object({"seq": {"type": "integer", "minimum": 0}, "raw": BASE64, "entry": ENTRY})
WRITE_RESULTS: dict[str, Schema] = {
    "ProblemCreated": _object({"new_problem": _ref("Problem"), "receipt": _ref("Receipt")}),
    "AlgoCreated": _object(
        {"new_algo": _ref("Algo"), "new_learnuplets": {"type": "integer", "minimum": 0}, "receipt": _ref("Receipt")}
    ),
    "DataCreated": _object(
        {
            "new_datas": {"type": "array", "items": _ref("Data")},
            "new_learnuplets": {"type": "integer", "minimum": 0},
            "receipt": _ref("Receipt"),
        }
    ),
    "PredictionCreated": _object(
        {"new_preduplets": {"type": "integer", "minimum": 1}, "receipt": _ref("Receipt")}
    ),
    "WorkerSet": {
        "oneOf": [
            _object({"learnuplet_worker_set": UUID, "receipt": _ref("Receipt")}),
            _object({"preduplet_worker_set": UUID, "receipt": _ref("Receipt")}),
        ]
    },
    "LearnupletUpdated": _object({"updated_learnuplet": UUID, "receipt": _ref("Receipt")}),
    "PredupletUpdated": _object({"updated_preduplet": UUID, "receipt": _ref("Receipt")}),
    "NodeCreated": _object({"new_node": _ref("Node"), "receipt": _ref("Receipt")}),
    "NodeUpdated": _object({"updated_node": _ref("Node"), "receipt": _ref("Receipt")}),
    "NodeRevoked": _object({"revoked_node": _ref("Node"), "receipt": _ref("Receipt")}),
}

ERRORS: dict[int, str] = {
    400: "malformed or invalid body or query (the description names the field), unknown referenced entity",
    401: "unauthenticated: missing or bad signature, unknown or revoked key, `created` outside the window, "
    "nonce already used",
    403: "the key lacks the role this endpoint needs, or reports on an uplet another key claimed",
    404: "unknown uuid, key id, sequence number or collection in the path",
    409: "duplicate uuid or key id, or a state the entity's status forbids",
    413: "body larger than the server's limit (refused without reading it)",
    415: "Content-Type is not application/json",
    421: "the authority the signature covers (the Host) is not one this node answers to (its public URLs)",
    503: "storage trouble (the description says what); nothing was written",
}
#: What the HTTP server itself answers, before any endpoint, to a request line or header block
#: over its limits (a request it cannot parse at all is a 400): possible on every operation.
PROTOCOL_ERRORS: dict[int, str] = {
    414: "request line (path and query) too long",
    431: "header fields too large",
}

SECURITY: list[dict[str, list[str]]] = [{"Signature": [], "SignatureInput": [], "ContentDigest": []}]
SECURITY_SCHEMES = {
    "Signature": {
        "type": "apiKey",
        "in": "header",
        "name": "Signature",
        "description": "RFC 9421 HTTP Message Signature: exactly one `ed25519` signature, e.g. "
        "`sig1=:<base64>:`. Sign with the stock client: Python `requests` with `requests-http-signature` "
        "(`HTTPSignatureAuth(signature_algorithm=algorithms.ED25519, key=<PEM>, key_id=<name>, "
        "use_nonce=True)`).",
    },
    "SignatureInput": {
        "type": "apiKey",
        "in": "header",
        "name": "Signature-Input",
        "description": "RFC 9421 signature parameters: `keyid` (a registered key id), `created` (Unix seconds, "
        "within the ledger's window around its clock), `nonce` (never reused by that key), `alg=\"ed25519\"`; "
        "the covered components must include `@method`, the target (`@target-uri`, or `@path` and `@query`) "
        "and `content-digest`.",
    },
    "ContentDigest": {
        "type": "apiKey",
        "in": "header",
        "name": "Content-Digest",
        "description": "RFC 9530 digest of the body (`sha-256=:<base64>:`), also for an empty body; covered by "
        "the signature.",
    },
}


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _responses(success: dict[int, tuple[str, Schema]], errors: list[int]) -> Schema:
    responses: Schema = {
        str(status): {"description": text, "content": content} for status, (text, content) in success.items()
    }
    for status in [*errors, *PROTOCOL_ERRORS]:
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return responses


def _signed(
    summary: str,
    role: str | None,
    success: dict[int, tuple[str, Schema]],
    *,
    write: bool = False,
    not_found: bool = False,
    body: str | None = None,
    parameters: list[Schema] | None = None,
    tag: str,
) -> Schema:
    """A signed operation: its summary names the role; errors follow from what it does."""
    errors = [400, 401, 421]
    if role is not None:
        errors.append(403)
    if not_found or write:
        errors.append(404)
    if write:
        errors.append(409)
    errors.append(413)
    if write:
        errors.append(415)
    errors.append(503)
    operation: Schema = {
        "summary": summary,
        "description": f"Signed; needs the `{role}` role." if role else "Signed; any registered key.",
        "tags": [tag],
        "security": SECURITY,
        "responses": _responses(success, errors),
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(_ref(body))}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path_param(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _query_param(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _int_query(name: str, description: str, required: bool = False, minimum: int = 0) -> Schema:
    return _query_param(name, {"type": "integer", "minimum": minimum, "maximum": 10**18 - 1}, description, required)


def _at(answer: str) -> Schema:
    """The ``at`` query parameter of a read."""
    return _query_param(
        "at",
        {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
        f"a sequence number (from 0, the genesis, as /ledger/entries numbers entries): {answer} as of right "
        "after that entry was applied. 400 if it is not an integer or the log does not hold that entry",
    )


def _version(collection: str) -> Schema:
    """One item of a document's history."""
    return _object(
        {
            "seq": {"type": "integer", "minimum": 1, "description": "the entry that wrote this version"},
            "time": {"type": "integer", "description": "that entry's ledger time, Unix milliseconds (its `time`)"},
            "keyid": {"type": "string", "description": "who signed that entry"},
            "request": {"type": "string", "description": "that entry's request, `METHOD /path`"},
            "document": _ref(_title(collection)),
        },
        description=f"the {collection} as the entry `seq` left it (its GET right after that entry)",
    )


def _collection_paths() -> dict[str, Schema]:
    paths: dict[str, Schema] = {}
    for collection in COLLECTIONS:
        title = _title(collection)
        filters = [
            _query_param(
                field,
                {"type": "string"},
                "equality filter; a list field matches when it contains the value, a mapping field when it has "
                "the value as a key; numbers match their JSON text, `null` matches null",
            )
            for field in FIELDS[collection]
        ]
        filters += [
            _query_param(
                "limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "page size (default 1000)"
            ),
            _query_param("after", UUID, "the `next_after` of the previous page"),
            _query_param(
                "wait",
                WAIT,
                "seconds to wait for a match: answered at once when something matches, else as soon as a "
                "matching document appears, or with the empty list once the seconds pass (not with `at`)",
            ),
            _at("the documents that existed, as they were and filtered on their values,"),
        ]
        page = _object(
            {f"{collection}s": {"type": "array", "items": _ref(title)}, "next_after": UUID},
            [f"{collection}s"],
        )
        paths[f"/{collection}"] = {
            "get": _signed(
                f"List {collection}s, filtered, in ledger order",
                None,
                {200: (f"a page of {collection}s; `next_after` when more remain", _json(page))},
                parameters=filters,
                tag="collections",
            )
        }
        uuid = _path_param("uuid", {"type": "string"}, f"the {collection}'s uuid")
        paths[f"/{collection}/{{uuid}}"] = {
            "get": _signed(
                f"One {collection} (with `at`: as it was then; 404 if it did not exist yet)",
                None,
                {200: (f"the {collection}", _json(_ref(title)))},
                not_found=True,
                parameters=[uuid, _at(f"the {collection}")],
                tag="collections",
            )
        }
        history = {"type": "array", "items": _version(collection), "minItems": 1}
        paths[f"/{collection}/{{uuid}}/history"] = {
            "get": _signed(
                f"Every version of one {collection}, oldest first, each with the entry that wrote it: every "
                "change counts, side effects included (a learnuplet made todo by the report on the rank before "
                "it names that report). With `at`: the versions written by entries 0..at",
                None,
                {200: (f"the {collection}'s versions", _json(history))},
                not_found=True,
                parameters=[uuid, _at("the versions written")],
                tag="collections",
            )
        }
    return paths


PROOF_PARAMETERS: list[Schema] = [
    _query_param(
        "proof", {"enum": ["1", "0", "true", "false"]},
        "1 (or true): the receipt also carries `proof`, a C2SP tlog-proof@v1 that needs no further call",
    ),
    {
        "name": "Prefer", "in": "header", "required": False, "schema": {"type": "string"},
        "description": "`return=proof` asks for the same as ?proof=1 (answered with `Preference-Applied`)",
    },
]


def _write(summary: str, role: str, status: int, body: str, result: str, tag: str, **kwargs: Any) -> Schema:
    text = "created" if status == 201 else "updated"
    kwargs["parameters"] = [*(kwargs.get("parameters") or []), *PROOF_PARAMETERS]
    return _signed(summary, role, {status: (text, _json(_ref(result)))}, write=True, body=body, tag=tag, **kwargs)


def _tile_paths() -> dict[str, Schema]:
    """tlog-tiles at the prefix /: the checkpoint, hash tiles and entry bundles.

    An index of 1000 or more takes several path segments (``x001/x234/067``), which OpenAPI path
    templates cannot express: the templates below show the one-segment form."""
    octets: Schema = {"application/octet-stream": {}}  # OpenAPI 3.1: raw bytes need no schema
    unsigned = " Unsigned when the node serves a public log (`public_log`)."
    index = _path_param("index", {"type": "string", "pattern": "^[0-9]{3}$"},
                        "the tile index: 3 digits (larger ones are x-prefixed groups: x001/x234/067)")
    width = _path_param("width", {"type": "string", "pattern": "^[1-9][0-9]{0,2}$"}, "a partial tile's width, 1-255")
    level = _path_param("level", {"type": "string", "pattern": "^(0|[1-9][0-9]?)$"}, "the tile level, 0-63")
    paths: dict[str, Schema] = {
        "/checkpoint": {
            "get": _signed("The checkpoint /ledger/checkpoint serves, at the tlog-tiles prefix." + unsigned, "auditor",
                           {200: ("the signed note", {"text/plain": {"schema": {"type": "string"}}})}, tag="tiles")
        }
    }
    paths["/checkpoint"]["head"] = _head(paths["/checkpoint"]["get"])
    for path, what, parameters in (
        ("/tile/{level}/{index}", "A full hash tile: 256 hashes of 32 bytes", [level, index]),
        ("/tile/{level}/{index}.p/{width}", "A partial hash tile: its first `width` hashes", [level, index, width]),
        ("/tile/entries/{index}", "A full entry bundle: 256 entries, each a big-endian uint16 length and its bytes",
         [index]),
        ("/tile/entries/{index}.p/{width}", "A partial entry bundle: its first `width` entries", [index, width]),
    ):
        get = _signed(
            what + " (C2SP tlog-tiles; immutable, cached for a year; 404 beyond the tree)." + unsigned,
            "auditor", {200: ("the tile", octets)}, not_found=True, parameters=parameters, tag="tiles",
        )
        paths[path] = {"get": get, "head": _head(get)}
    return paths


def _head(get: Schema) -> Schema:
    """HEAD of a tlog-tiles path, as a file server answers it: the GET's headers, no body."""
    responses = {status: ({"description": "the headers of the GET, without its body"} if status == "200" else answer)
                 for status, answer in get["responses"].items()}
    summary = "The headers GET gives, without the body (as a file server answers HEAD)"
    unsigned = " Unsigned when the node serves a public log (`public_log`)."
    return {**get, "summary": summary + "." + unsigned, "responses": responses}


def _uplet_uuid(kind: str) -> Schema:
    return _path_param("uuid", {"type": "string"}, f"the {kind}'s uuid")


def _ledger_paths() -> dict[str, Schema]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    inclusion = _object(
        {
            "seq": {"type": "integer", "minimum": 0},
            "tree_size": {"type": "integer", "minimum": 1},
            "leaf_hash": BASE64,
            "root": BASE64,
            "proof": {"type": "array", "items": BASE64},
        }
    )
    consistency = _object(
        {
            "first": {"type": "integer", "minimum": 1},
            "second": {"type": "integer", "minimum": 1},
            "first_root": BASE64,
            "second_root": BASE64,
            "proof": {"type": "array", "items": BASE64},
        }
    )
    entries = _object(
        {
            "entries": {"type": "array", "items": ENTRY_VIEW, "maxItems": 1000},
            "size": {"type": "integer", "minimum": 1},
            "next": _nullable({"type": "integer", "minimum": 1}),
        }
    )
    head = _object({"size": {"type": "integer", "minimum": 1}, "state_digest": HEX64})
    auditor = "auditor"
    return {
        "/ledger/head": {
            "get": _signed(
                "Log size and the state digest after it",
                None,
                {200: ("the head", _json(head))},
                tag="ledger",
            )
        },
        "/ledger/checkpoint": {
            "get": _signed(
                "The latest C2SP signed checkpoint (origin, size, base64 root, state digest; a signed note). With "
                "witnesses: the newest one a quorum of them cosigned, with every cosignature line collected",
                auditor,
                {200: ("the signed note", text)},
                tag="ledger",
            )
        },
        "/ledger/key": {
            "get": _signed(
                "The node's C2SP verifier key `origin+keyhash+base64(0x01 || key)`",
                auditor,
                {200: ("the verifier key, one line", text)},
                tag="ledger",
            )
        },
        "/ledger/entries": {
            "get": _signed(
                "Log entries start..end-1 (at most 1000)",
                auditor,
                {200: ("a page of entries; `next` is the start of the next page, or null", _json(entries))},
                parameters=[
                    _int_query("start", "first sequence number (default 0)"),
                    _int_query("end", "one past the last (default start+100)"),
                    _query_param(
                        "wait",
                        WAIT,
                        "with a start equal to the log size: seconds to wait for the next entry (else that "
                        "start is a 400); the entries that came by then, or none once the seconds pass",
                    ),
                ],
                tag="ledger",
            )
        },
        "/ledger/entries/{seq}": {
            "get": _signed(
                "One log entry; `raw` is base64 of the stored bytes",
                auditor,
                {200: ("the entry", _json(ENTRY_VIEW))},
                not_found=True,
                parameters=[_path_param("seq", {"type": "string"}, "sequence number")],
                tag="ledger",
            )
        },
        "/ledger/receipts/{seq}": {
            "get": _signed(
                "Entry seq's C2SP tlog-proof@v1 receipt under the checkpoint served (save it as `<seq>.tlog-proof`; "
                "`orchestrator verify-receipt` checks it offline)",
                auditor,
                {200: ("the receipt", text)},
                not_found=True,
                parameters=[_path_param("seq", {"type": "string"}, "sequence number")],
                tag="ledger",
            )
        },
        **_tile_paths(),
        "/ledger/proofs/inclusion": {
            "get": _signed(
                "RFC 9162 inclusion proof of entry seq in the tree of tree_size entries",
                auditor,
                {200: ("the proof (base64 hashes)", _json(inclusion))},
                parameters=[
                    _int_query("seq", "the entry", required=True),
                    _int_query("tree_size", "the tree (default: the current size)", minimum=1),
                ],
                tag="ledger",
            )
        },
        "/ledger/proofs/consistency": {
            "get": _signed(
                "RFC 9162 consistency proof between trees of first and second entries",
                auditor,
                {200: ("the proof (base64 hashes)", _json(consistency))},
                parameters=[
                    _int_query("first", "the smaller tree", required=True, minimum=1),
                    _int_query("second", "the larger tree (default: the current size)", minimum=1),
                ],
                tag="ledger",
            )
        },
    }


def _node_paths() -> dict[str, Schema]:
    key_id = _path_param("key_id", {"type": "string"}, "the key id")
    return {
        "/nodes": {
            "get": _signed(
                "Every membership record, in key id order",
                None,
                {200: ("the members", _json(_object({"nodes": {"type": "array", "items": _ref("Node")}})))},
                tag="membership",
            ),
        },
        "/nodes/{key_id}": {
            "get": _signed(
                "One membership record",
                None,
                {200: ("the record", _json(_ref("Node")))},
                not_found=True,
                parameters=[key_id],
                tag="membership",
            ),
        },
    }


def _open_paths() -> dict[str, Schema]:
    """Unauthenticated endpoints: documentation, probes, metrics."""

    def plain(summary: str, success: dict[int, tuple[str, Schema]], errors: list[int], tag: str) -> Schema:
        return {"get": {"summary": summary, "tags": [tag], "security": [], "responses": _responses(success, errors)}}

    def status(value: str) -> Schema:
        return _json(_object({"status": {"const": value}}))

    index = _object(
        {
            "name": {"type": "string"},
            "origin": {"type": "string", "description": "the ledger's origin, as its checkpoints name it"},
            "version": {"type": "string", "description": "the serving package's version"},
            "links": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "paths that need no signature: console, docs, openapi, healthz, readyz, metrics",
            },
        }
    )
    return {
        "/": plain("What this service is (name, ledger origin, version) and links to the rest",
                   {200: ("the index", _json(index))}, [], "operations"),
        "/openapi.json": plain("This contract (OpenAPI 3.1)", {200: ("the document", _json({"type": "object"}))}, [],
                               "operations"),
        "/docs": plain("This contract, rendered (Swagger UI)",
                       {200: ("an HTML page", {"text/html": {"schema": {"type": "string"}}})}, [], "operations"),
        "/docs/swagger.json": plain("This contract, as the /docs page loads it",
                                    {200: ("the document", _json({"type": "object"}))}, [], "operations"),
        "/console": plain("The web console: a page that signs its calls and checks proofs in the browser",
                          {200: ("an HTML page", {"text/html": {"schema": {"type": "string"}}})}, [], "operations"),
        "/console/{name}": {"get": {**plain("One of the web console's files (script, style sheet)",
                                            {200: ("the file", {"text/javascript": {"schema": {}},
                                                                "text/css": {"schema": {}}})},
                                            [404], "operations")["get"],
                                    "parameters": [{"name": "name", "in": "path", "required": True,
                                                    "schema": {"type": "string"},
                                                    "description": "the file's name"}]}},
        "/healthz": plain("Liveness: the process answers", {200: ("alive", status("ok"))}, [], "operations"),
        "/readyz": plain(
            "Readiness: the last log write succeeded and state is caught up with the log; with witnesses, their "
            "states (a refusing or down witness never makes the node unready)",
            {200: ("ready", _json(_object({"status": {"const": "ready"}, "witnessing": WITNESSING}, ["status"])))},
            [503],
            "operations",
        ),
        "/metrics": plain(
            "Prometheus metrics (text exposition format)",
            {200: ("the metrics", {"text/plain": {"schema": {"type": "string"}}})},
            [],
            "operations",
        ),
    }


WITNESS_STATE = _object(
    {
        "name": {"type": "string", "description": "the name in the witness's verifier key"},
        "url": {"type": "string"},
        "state": {"enum": ["pending", "ok", "refused", "down"],
                  "description": "ok: it cosigned the last checkpoint sent to it"},
        "cosigned_size": _nullable({"type": "integer", "minimum": 1}),
        "detail": _nullable({"type": "string", "description": "why the last call got no cosignature"}),
        "failures": {"type": "object", "additionalProperties": {"type": "integer"},
                     "description": "calls without a cosignature so far, by state (down, refused)"},
        "cosignatures": {"type": "integer", "description": "calls that got a valid cosignature so far"},
        "cpu_seconds": {"type": "number", "description": "CPU time this witness's calls took the node so far"},
    }
)
WITNESSING = _object(
    {
        "quorum": {"type": "integer", "minimum": 1},
        "witnessed_size": _nullable({"type": "integer", "minimum": 1,
                                     "description": "the newest tree with a quorum of cosignatures"}),
        "witnesses": {"type": "array", "items": WITNESS_STATE},
    }
)


PATH_PARAMETERS: dict[str, tuple[Schema, str]] = {
    "uplet_type": ({"enum": ["learnuplet", "preduplet"]}, "the uplet type"),
    "uplet_uuid": ({"type": "string"}, "the uplet's uuid"),
    "uuid": ({"type": "string"}, "the uplet's uuid"),
    "key_id": ({"type": "string"}, "the key id"),
}


def _write_paths() -> dict[str, Schema]:
    """Every write operation, from ledger.routes."""
    paths: dict[str, Schema] = {}
    for route in routes.WRITES:
        names = [segment[1:-1] for segment in route.segments if segment.startswith("{")]
        parameters = [_path_param(name, *PATH_PARAMETERS[name]) for name in names]
        operation = _write(route.summary, route.role, route.status, route.request, route.result, route.tag,
                           parameters=parameters or None)
        paths[route.path] = {"post": operation}
    return paths


DESCRIPTION = """\
The Orchestrator of a collaborative machine-learning platform, as a signed, append-only ledger.

Every operation but the documentation, probes and metrics is signed (RFC 9421, `ed25519`, with
`keyid`, `created` and `nonce`, covering `@method`, the target URI and `content-digest`): see the
security schemes. Every accepted write is one log entry; its answer carries a `receipt`.

Errors are JSON `{"title", "description"}`: the title is the status's standard reason phrase
(one per status, e.g. 400 `Bad Request`, 413 `Content Too Large`), the description says what went
wrong. A rejected request appends nothing and changes nothing; resending exactly the same signed
write returns the original answer, byte for byte, and appends nothing.
A method a path does not list is answered 405 with an `Allow` header, except on the seed's
generic paths `/{collection}` and `/{collection}/{uuid}`: there `GET /prediction` or
`POST /learnuplet` name an unknown collection or write endpoint, 404.
"""


@lru_cache(maxsize=1)
def _build() -> Schema:
    schemas: dict[str, Schema] = {
        "Uuid": {"type": "string", "pattern": UUID_PATTERN},
        "Roles": {"type": "array", "items": {"enum": list(ROLES)}, "minItems": 1, "uniqueItems": True},
        "Error": _object(
            {
                "title": {"type": "string", "description": "the status's standard reason phrase"},
                "description": {"type": "string", "description": "what went wrong"},
            }
        ),
        "Receipt": RECEIPT,
        "Node": NODE,
    }
    for collection in COLLECTIONS:
        schemas[_title(collection)] = _object(_DOCUMENT_FIELDS[collection])
    schemas.update(REQUESTS)
    schemas.update(WRITE_RESULTS)
    responses = {
        f"E{status}": {"description": text, "content": _json(_ref("Error"))}
        for status, text in {**ERRORS, **PROTOCOL_ERRORS}.items()
    }
    paths: dict[str, Schema] = {}
    for group in (_write_paths(), _collection_paths(), _ledger_paths(), _node_paths(), _open_paths()):
        for path, item in group.items():
            paths.setdefault(path, {}).update(item)  # /problem: the seed's POST and the collection's GET
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {"title": "Orchestrator ledger", "version": "1", "description": DESCRIPTION},
        "tags": [
            {"name": "writes", "description": "the seed's write endpoints"},
            {"name": "collections", "description": "the seed's read endpoints"},
            {"name": "ledger", "description": "the log, its checkpoints and RFC 9162 proofs"},
            {"name": "tiles", "description": "the log as C2SP tlog-tiles: checkpoint, hash tiles, entry bundles"},
            {"name": "membership", "description": "keys and their roles"},
            {"name": "operations", "description": "unauthenticated: documentation, probes and metrics"},
        ],
        "paths": paths,
        "components": {"schemas": schemas, "responses": responses, "securitySchemes": SECURITY_SCHEMES},
        "security": SECURITY,
    }


def spec() -> Schema:
    """The OpenAPI 3.1 document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_build())


class OpenApi:
    """GET /openapi.json: the contract, unauthenticated."""

    def __init__(self) -> None:
        self._data = orjson.dumps(_build())

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._data


def add_docs(app: "falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]") -> None:
    """GET /docs: the contract rendered by swagger-ui-py (its assets under /docs/static)."""
    from swagger_ui import api_doc

    api_doc(app, config=spec(), url_prefix="/docs", title="Orchestrator ledger API", host_inject=False)

"""Documents, their ledger order and their secondary indexes, as state keys.

Layout (all keys are bytes; ``n8`` is an 8-byte big-endian position):

    d/<coll>/<uuid>                      -> canonical JSON document
    p/<coll>/<uuid>                      -> n8, the document's position in ledger order
    o/<coll>/<n8>                        -> uuid
    c/<coll>                             -> n8, the next position
    i/<coll>/<field>/<len4><value><n8>   -> uuid, one per indexed value of the field

A field's indexed values are its value's filter form (:func:`filter_form`), one
per element for list fields and one per key for mapping fields. Positions give
ledger order: index prefixes list matches in the order documents were created.
"""

from collections.abc import Iterable
from typing import Any, Protocol

from ledger import canonical
from ledger.store import Store

COLLECTIONS = ("problem", "algo", "data", "learnuplet", "preduplet")

FIELDS: dict[str, tuple[str, ...]] = {
    "problem": ("uuid", "workflow", "test_dataset", "size_train_dataset", "timestamp_upload"),
    "algo": ("uuid", "name", "problem", "timestamp_upload"),
    "data": ("uuid", "problems", "timestamp_upload"),
    "learnuplet": (
        "uuid",
        "problem",
        "workflow",
        "algo",
        "train_data",
        "test_data",
        "rank",
        "model_start",
        "model_end",
        "worker",
        "status",
        "perf",
        "train_perf",
        "test_perf",
        "timestamp_creation",
        "timestamp_done",
    ),
    "preduplet": (
        "uuid",
        "problem",
        "workflow",
        "data",
        "model",
        "worker",
        "status",
        "prediction_storage_uuid",
        "timestamp_request",
        "timestamp_done",
    ),
}

#: The fields of each collection whose values are uuids (stored lowercase): for a list field each
#: item, for train_perf/test_perf each key. Queries match them case-insensitively.
UUID_FIELDS: dict[str, frozenset[str]] = {
    "problem": frozenset({"uuid", "workflow", "test_dataset"}),
    "algo": frozenset({"uuid", "problem"}),
    "data": frozenset({"uuid", "problems"}),
    "learnuplet": frozenset(
        {
            "uuid",
            "problem",
            "workflow",
            "algo",
            "train_data",
            "test_data",
            "model_start",
            "model_end",
            "worker",
            "train_perf",
            "test_perf",
        }
    ),
    "preduplet": frozenset({"uuid", "problem", "workflow", "data", "model", "worker", "prediction_storage_uuid"}),
}


def n8(n: int) -> bytes:
    return n.to_bytes(8, "big")


def filter_form(value: Any) -> str:
    """The string a query parameter must equal to match this scalar value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def indexed_values(value: Any) -> list[str]:
    kind = type(value)  # the common cases first, as filter_form() would have them
    if kind is str:
        return [value]
    if value is None:
        return ["null"]
    if kind is int:
        return [str(value)]
    if isinstance(value, list):
        items: Iterable[Any] = value
    elif isinstance(value, dict):
        items = sorted(value)
    else:
        items = (value,)
    return sorted({filter_form(v) for v in items})


def index_prefix(coll: str, field: str, form: str) -> bytes:
    encoded = form.encode()
    return b"i/%s/%s/%s%s" % (coll.encode(), field.encode(), len(encoded).to_bytes(4, "big"), encoded)


#: Per collection, each field with the start of its index keys (index_prefix without the value).
_INDEXES: dict[str, tuple[tuple[str, bytes], ...]] = {
    coll: tuple((field, b"i/%s/%s/" % (coll.encode(), field.encode())) for field in fields)
    for coll, fields in FIELDS.items()
}


def doc_key(coll: str, uuid: str) -> bytes:
    return b"d/%s/%s" % (coll.encode(), uuid.encode())


def pos_key(coll: str, uuid: str) -> bytes:
    return b"p/%s/%s" % (coll.encode(), uuid.encode())


def order_prefix(coll: str) -> bytes:
    return b"o/%s/" % coll.encode()


class Txn:
    """Reads through to a base view, collects writes; nothing is stored until the caller commits."""

    def __init__(self, base: "Readable") -> None:
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        self.writes[key] = value

    def get_json(self, key: bytes) -> Any:
        raw = self.get(key)
        return None if raw is None else canonical.loads(raw)

    def put_json(self, key: bytes, value: Any) -> None:
        self.put(key, canonical.dumps(value))

    def counter(self, key: bytes) -> int:
        raw = self.get(key)
        return 0 if raw is None else int.from_bytes(raw, "big")

    # -- documents ---------------------------------------------------------

    def doc(self, coll: str, uuid: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.get_json(doc_key(coll, uuid))
        return result

    def insert_doc(self, coll: str, doc: dict[str, Any]) -> None:
        # The hot loop of a large write (one call per uplet): the same keys as put() with
        # index_prefix() would write, built with fewer calls.
        uuid = doc["uuid"]
        count_key = b"c/" + coll.encode()
        n = self.counter(count_key)
        pos, value, writes = n8(n), uuid.encode(), self.writes
        writes[count_key] = n8(n + 1)
        writes[pos_key(coll, uuid)] = pos
        writes[order_prefix(coll) + pos] = value
        writes[doc_key(coll, uuid)] = canonical.dumps(doc)
        for field, prefix in _INDEXES[coll]:
            for form in indexed_values(doc[field]):
                encoded = form.encode()
                writes[prefix + len(encoded).to_bytes(4, "big") + encoded + pos] = value

    def update_doc(self, coll: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        uuid = new["uuid"]
        pos = self.get(pos_key(coll, uuid))
        assert pos is not None, f"update of a missing {coll} {uuid}"
        self.put_json(doc_key(coll, uuid), new)
        for field in FIELDS[coll]:
            if old[field] == new[field]:
                continue
            before, after = set(indexed_values(old[field])), set(indexed_values(new[field]))
            for form in sorted(before - after):
                self.put(index_prefix(coll, field, form) + pos, None)
            for form in sorted(after - before):
                self.put(index_prefix(coll, field, form) + pos, uuid.encode())


class Readable(Protocol):
    """Anything with get(key) -> bytes | None (a Store, a Txn, a group overlay)."""

    def get(self, key: bytes) -> bytes | None: ...


class Overlay:
    """A store seen through writes not yet committed to it (one commit group)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.pending:
            return self.pending[key]
        return self.store.get(key)

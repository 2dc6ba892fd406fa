"""Documents, their ledger order and their secondary indexes, as state keys.

The keys (``d/``, ``p/``, ``o/``, ``c/``, ``i/``) are named in :mod:`ledger.layout`. A field's
indexed values are its value's filter form (:func:`filter_form`), one per element for list
fields and one per key for mapping fields. Positions give ledger order: index prefixes list
matches in the order documents were created.
"""

from collections.abc import Iterable
from typing import Any, Protocol

from ledger import canonical
from ledger.errors import InternalError
from ledger.layout import count_key, doc_key, index_field_prefix, index_prefix, n8, order_prefix, pos_key

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


#: Per collection, each field with the start of its index keys (index_prefix without the value).
_INDEXES: dict[str, tuple[tuple[str, bytes], ...]] = {
    coll: tuple((field, index_field_prefix(coll, field)) for field in fields)
    for coll, fields in FIELDS.items()
}


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
        counter = count_key(coll)
        n = self.counter(counter)
        pos, value, writes = n8(n), uuid.encode(), self.writes
        writes[counter] = n8(n + 1)
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
        if pos is None:
            raise InternalError(f"update of a missing {coll} {uuid}")
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
    """A view seen through writes not yet committed to it (one batch)."""

    def __init__(self, store: "Readable") -> None:
        self.store = store
        self.pending: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.pending:
            return self.pending[key]
        return self.store.get(key)

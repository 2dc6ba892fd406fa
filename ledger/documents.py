"""Documents, their ledger order, their secondary indexes and their versions, as state keys.

The keys (``d/``, ``p/``, ``o/``, ``c/``, ``i/``, ``v/``) are named in :mod:`ledger.layout`. A field's
indexed values are its value's filter form (:func:`filter_form`), one per element for list
fields and one per key for mapping fields. Positions give ledger order: index prefixes list
matches in the order documents were created. A transaction given the entry's sequence number
also writes the document's version under that number (``v/<coll>/<uuid>/<n8 seq>``, the same bytes
as ``d/``), each time it creates or changes a document: the document's history, and what a read as
of an earlier entry answers (:func:`ledger.query.document_at`).
"""

import struct
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Protocol

from ledger import canonical
from ledger.errors import InternalError
from ledger.layout import count_key, doc_key, index_field_prefix, n8, order_prefix, pos_key, version_prefix
from ledger.layout import index_prefix as index_prefix  # the key of one indexed value (tests use it)

_ABSENT = object()  # a dict.get default no stored value can be

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


@lru_cache(maxsize=4096)
def shared_json(raw: bytes) -> Any:
    """canonical.loads of a record many transactions read and few change (the ledger's settings,
    membership), decoded once per distinct stored bytes: shared, so read it, never change it."""
    return canonical.loads(raw)


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
#: Per collection, its keys' prefixes: (count key, pos_key prefix, order prefix, doc_key prefix);
#: pos_key(coll, uuid) is the second followed by the uuid, doc_key(coll, uuid) the fourth.
_KEYS: dict[str, tuple[bytes, bytes, bytes, bytes]] = {
    coll: (count_key(coll), pos_key(coll, ""), order_prefix(coll), doc_key(coll, "")) for coll in FIELDS
}
#: Per collection, the start of its version keys (version_prefix without the uuid and its slash).
_VERSIONS: dict[str, bytes] = {coll: version_prefix(coll, "")[:-1] for coll in FIELDS}
_U32 = struct.Struct(">I").pack
_NULL = _U32(4) + b"null"  # the length and text of a None value's one filter form


def _index_keys(prefix: bytes, value: Any, pos: bytes) -> list[bytes]:
    """The index keys of a field's value (whose index keys start with prefix) at position pos."""
    kind = type(value)  # the common cases first, as indexed_values() would have them
    if kind is str:
        encoded = value.encode()
        return [prefix + _U32(len(encoded)) + encoded + pos]
    if value is None:
        return [prefix + _NULL + pos]
    keys = []
    for form in indexed_values(value):
        encoded = form.encode()
        keys.append(prefix + _U32(len(encoded)) + encoded + pos)
    return keys


class Txn:
    """Reads through to a base view, collects writes; nothing is stored until the caller commits.

    seq: the sequence number of the entry the writes are for; given, every document written is
    also written as that entry's version of it (the state machine always gives it)."""

    def __init__(self, base: "Readable", *, seq: int | None = None) -> None:
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}
        self._version = b"" if seq is None else b"/" + n8(seq)  # what a version key ends with

    def get(self, key: bytes) -> bytes | None:
        value = self.writes.get(key, _ABSENT)
        return self.base.get(key) if value is _ABSENT else value  # type: ignore[return-value]

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
        raw = self.get(_KEYS[coll][3] + uuid.encode())  # doc_key(coll, uuid)
        return None if raw is None else canonical.loads(raw)

    def insert_doc(self, coll: str, doc: dict[str, Any]) -> None:
        # The hot loop of a large write (one call per uplet): the same keys as put() with
        # index_prefix() would write, built with fewer calls.
        uuid = doc["uuid"]
        counter, pos_prefix, order, doc_prefix = _KEYS[coll]
        n = self.counter(counter)
        pos, value, writes = n8(n), uuid.encode(), self.writes
        writes[counter] = n8(n + 1)
        writes[pos_prefix + value] = pos
        writes[order + pos] = value
        writes[doc_prefix + value] = dumped = canonical.dumps(doc)
        if self._version:
            writes[_VERSIONS[coll] + value + self._version] = dumped
        for field, prefix in _INDEXES[coll]:
            field_value = doc[field]
            if type(field_value) is str:  # the common cases inline, as _index_keys() has them
                encoded = field_value.encode()
                writes[prefix + _U32(len(encoded)) + encoded + pos] = value
            elif field_value is None:
                writes[prefix + _NULL + pos] = value
            else:
                for key in _index_keys(prefix, field_value, pos):
                    writes[key] = value

    def update_doc(self, coll: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        uuid = new["uuid"]
        _, pos_prefix, _, doc_prefix = _KEYS[coll]
        value = uuid.encode()
        pos = self.get(pos_prefix + value)
        if pos is None:
            raise InternalError(f"update of a missing {coll} {uuid}")
        writes = self.writes
        writes[doc_prefix + value] = dumped = canonical.dumps(new)
        if self._version:
            writes[_VERSIONS[coll] + value + self._version] = dumped
        for field, prefix in _INDEXES[coll]:
            before, after = old[field], new[field]
            if before == after:
                continue
            # The keys of the forms the old value had and the new one has not, then the reverse
            # (as sets of forms: each form's key is unique to it).
            removed, added = _index_keys(prefix, before, pos), _index_keys(prefix, after, pos)
            if len(removed) == 1 and len(added) == 1:
                if removed[0] != added[0]:
                    writes[removed[0]] = None
                    writes[added[0]] = value
                continue
            kept = set(removed) & set(added)
            for key in removed:
                if key not in kept:
                    writes[key] = None
            for key in added:
                if key not in kept:
                    writes[key] = value


class Readable(Protocol):
    """Anything with get(key) -> bytes | None (a Store, a Txn, a group overlay)."""

    def get(self, key: bytes) -> bytes | None: ...


class Overlay:
    """A view seen through writes not yet committed to it (one batch).

    It also remembers what it read from the store: a batch reads the same records entry after
    entry (the key's membership, counters, the problem its data joins), and the store does not
    change while a batch is applied (the caller writes the batch's state after it)."""

    def __init__(self, store: "Readable") -> None:
        self.store = store
        self.pending: dict[bytes, bytes | None] = {}
        self._read: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        value = self.pending.get(key, _ABSENT)
        if value is _ABSENT:
            value = self._read.get(key, _ABSENT)
            if value is _ABSENT:
                value = self._read[key] = self.store.get(key)
        return value  # type: ignore[return-value]

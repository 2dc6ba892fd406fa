"""Reads from materialized state: one document, or a filtered page of a collection.

Filters are equalities on a field's filter form (see :mod:`ledger.documents`),
membership for list fields, ANDed; a uuid given for a uuid-valued field (and
``after``) matches in any case, like paths. Each filter is an index prefix whose keys
end in ledger positions; a leapfrog join over those prefixes finds matches in
ledger order, so a query costs time in proportion to its result (and to the
smallest index it touches), not to the collection.

Reads as of an earlier entry (``at``) go through the documents' versions (``v/``, written by the
state machine with every document change): one document costs time in proportion to its
versions; a list walks the collection in ledger order, looking up each document's version at that
entry, and stops at the first one created later (positions follow ledger order), matching filters
on the old version's fields as the indexes would have.
"""

from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

from ledger import canonical, schema
from ledger.documents import COLLECTIONS, FIELDS, UUID_FIELDS, indexed_values
from ledger.errors import InternalError, NotFoundError, ValidationError
from ledger.layout import (
    MEMBER_PREFIX,
    doc_key,
    from_n8,
    index_prefix,
    member_key,
    n8,
    order_prefix,
    pos_key,
    version_prefix,
)
from ledger.store import Store

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000


@dataclass(frozen=True)
class Page:
    documents: list[bytes]  # canonical JSON documents, in ledger order
    next_after: str | None  # pass as `after` for the next page; None when this is the last


def check_collection(coll: str) -> None:
    if coll not in COLLECTIONS:
        raise NotFoundError(f"no collection {coll!r}; collections are {', '.join(COLLECTIONS)}")


def get_document(store: Store, coll: str, uuid: str) -> bytes:
    check_collection(coll)
    raw = store.get(doc_key(coll, uuid.lower()))
    if raw is None:
        raise NotFoundError(f"no {coll} {uuid}")
    return raw


def _first_from(store: Store, prefix: bytes, pos: int) -> tuple[int, bytes] | None:
    for key, value in store.scan(prefix, prefix + n8(pos)):
        return int.from_bytes(key[-8:], "big"), value
    return None


def _matches(store: Store, prefixes: list[bytes], start: int, want: int) -> list[bytes]:
    """Up to `want` uuids present under every prefix, at positions >= start, in order."""
    found: list[bytes] = []
    candidate = start
    while len(found) < want:
        agreed, i, uuid = 0, 0, b""
        while agreed < len(prefixes):
            hit = _first_from(store, prefixes[i], candidate)
            if hit is None:
                return found
            pos, uuid = hit
            if pos == candidate:
                agreed += 1
            else:
                candidate, agreed = pos, 1
            i = (i + 1) % len(prefixes)
        found.append(uuid)
        candidate += 1
    return found


def _filter_value(coll: str, field: str, value: str) -> str:
    """A uuid given for a uuid-valued field matches in any case (uuids are stored lowercase)."""
    return value.lower() if field in UUID_FIELDS[coll] and schema.is_uuid(value) else value


def read_prefixes(coll: str, filters: Mapping[str, str]) -> tuple[bytes, ...]:
    """The key prefixes :func:`find` reads for these filters: one index prefix per filter, or the
    collection's order when there is none. Each key under them is the prefix and an n8 position.

    A document can only start to match the filters in a write that adds a key under one of them
    (a new document adds all of its keys; a changed field adds the keys of its new values), so
    whoever waits for a match need look again only after such a write (:func:`added_under`), and
    for a document the write created, only if it added all of them (:func:`may_match`).

    Raises NotFoundError for an unknown collection, ValidationError for an unknown filter field.
    """
    check_collection(coll)
    for field in filters:
        if field not in FIELDS[coll]:
            raise ValidationError(f"unknown filter field {field!r} for {coll}; fields are {', '.join(FIELDS[coll])}")
    if not filters:
        return (order_prefix(coll),)
    return tuple(
        index_prefix(coll, field, _filter_value(coll, field, value)) for field, value in sorted(filters.items())
    )


def added_under(writes: Mapping[bytes, bytes | None], watched: Container[bytes]) -> dict[bytes, list[bytes]]:
    """The prefixes among ``watched`` (from :func:`read_prefixes`) that these state writes add a key
    under, each with the positions (n8) of the documents whose keys they add."""
    found: dict[bytes, list[bytes]] = {}
    for key, value in writes.items():
        if value is not None:
            prefix = key[:-8]
            if prefix in watched:
                found.setdefault(prefix, []).append(key[-8:])
    return found


def may_match(
    coll: str, prefixes: tuple[bytes, ...], writes: Mapping[bytes, bytes | None], positions: list[bytes]
) -> bool:
    """Whether a document at one of ``positions`` (where these writes added a key under one of the
    query's ``prefixes``) may match the query now: one the writes created matches only if they
    gave it a key under every prefix; one that existed before may (its other keys are in state)."""
    order = order_prefix(coll)
    for pos in positions:
        if writes.get(order + pos) is None:
            return True  # an existing document changed: only reading says whether it matches now
        if all(writes.get(prefix + pos) is not None for prefix in prefixes):
            return True
    return False


def find(
    store: Store, coll: str, filters: Mapping[str, str], *, limit: int = DEFAULT_LIMIT, after: str | None = None
) -> Page:
    """A page of documents of coll matching every filter, in ledger order.

    Raises NotFoundError for an unknown collection, ValidationError for an
    unknown filter field, a bad limit or an unknown `after` cursor.
    """
    prefixes = list(read_prefixes(coll, filters))
    if not 0 < limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}")
    start = 0
    if after is not None:
        pos = store.get(pos_key(coll, after.lower()))
        if pos is None:
            raise ValidationError(f"after: no {coll} {after}")
        start = int.from_bytes(pos, "big") + 1
    uuids = _matches(store, prefixes, start, limit + 1)
    more = len(uuids) > limit
    uuids = uuids[:limit]
    documents = []
    for uuid in uuids:
        raw = store.get(doc_key(coll, uuid.decode()))
        if raw is None:
            raise InternalError(f"index points at a missing {coll} {uuid!r}")
        documents.append(raw)
    return Page(documents, uuids[-1].decode() if more else None)


# -- as of an earlier entry -------------------------------------------------------


def versions(store: Store, coll: str, uuid: str, *, until: int) -> list[tuple[int, bytes]]:
    """(seq, canonical JSON document) of each version of a document written by entries 0..until,
    oldest first. Raises NotFoundError for an unknown collection, or when there is none."""
    check_collection(coll)
    found = _versions(store, coll, uuid.lower(), until) if schema.is_uuid(uuid) else []
    if not found:
        raise NotFoundError(f"no {coll} {uuid} as of entry {until}")
    return found


def _versions(store: Store, coll: str, uuid: str, until: int) -> list[tuple[int, bytes]]:
    found = []
    for key, value in store.scan(version_prefix(coll, uuid)):
        seq = from_n8(key[-8:])
        if seq > until:
            break
        found.append((seq, value))
    return found


def _version_at(store: Store, coll: str, uuid: str, seq: int) -> bytes | None:
    """The document as entry seq left it (uuid lowercase); None if it did not exist yet."""
    found = _versions(store, coll, uuid, seq)
    return found[-1][1] if found else None


def document_at(store: Store, coll: str, uuid: str, seq: int) -> bytes:
    """The document as it was right after entry seq. Raises NotFoundError (unknown collection, or
    no such document by then)."""
    return versions(store, coll, uuid, until=seq)[-1][1]


def _fits(doc: dict[str, Any], wanted: list[tuple[str, str]]) -> bool:
    """Whether a document matches the filters as the indexes match them (its values' filter forms)."""
    return all(form in indexed_values(doc[field]) for field, form in wanted)


def find_at(
    store: Store, coll: str, filters: Mapping[str, str], *, seq: int, limit: int = DEFAULT_LIMIT,
    after: str | None = None,
) -> Page:
    """:func:`find` as of right after entry seq: the documents that existed then, as they were,
    matching the filters then, in ledger order. Raises as find does (an ``after`` cursor must name
    a document that existed then)."""
    read_prefixes(coll, filters)  # checks the collection and the fields
    if not 0 < limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}")
    wanted = [(field, _filter_value(coll, field, value)) for field, value in sorted(filters.items())]
    start = 0
    if after is not None:
        pos = store.get(pos_key(coll, after.lower()))
        if pos is None or _version_at(store, coll, after.lower(), seq) is None:
            raise ValidationError(f"after: no {coll} {after} as of entry {seq}")
        start = from_n8(pos) + 1
    order = order_prefix(coll)
    documents: list[bytes] = []
    last = b""
    for _, uuid in store.scan(order, order + n8(start)):
        raw = _version_at(store, coll, uuid.decode(), seq)
        if raw is None:
            break  # created after seq, and so was every later one
        if wanted and not _fits(canonical.loads(raw), wanted):
            continue
        if len(documents) == limit:
            return Page(documents, last.decode())
        documents.append(raw)
        last = uuid
    return Page(documents, None)


def members(store: Store) -> list[bytes]:
    """Every membership record, with its key id, in key id order (canonical JSON)."""
    prefix = MEMBER_PREFIX
    return [
        canonical.dumps({"key_id": key[len(prefix) :].decode(), **canonical.loads(value)})
        for key, value in store.scan(prefix)
    ]


def member(store: Store, key_id: str) -> bytes:
    raw = store.get(member_key(key_id))
    if raw is None:
        raise NotFoundError(f"no node {key_id!r}")
    return canonical.dumps({"key_id": key_id, **canonical.loads(raw)})

"""The fast paths of a large write build exactly the state keys of their plain definitions."""

import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ledger import canonical
from ledger.documents import FIELDS, Txn, doc_key, index_prefix, indexed_values, n8, order_prefix, pos_key
from ledger.layout import version_key
from ledger.machine import write_set_digest
from ledger.uplets import _NAMESPACE, Ids

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(st.text(max_size=8), SCALARS, max_size=4))


def _filter_form(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _reference_indexed_values(value: Any) -> list[str]:
    items = value if isinstance(value, list) else sorted(value) if isinstance(value, dict) else (value,)
    return sorted({_filter_form(v) for v in items})


def _reference_insert(txn: Txn, coll: str, doc: dict[str, Any]) -> None:
    """Txn.insert_doc as plain put() calls (what it was before it was made fast)."""
    uuid, count_key = doc["uuid"], b"c/" + coll.encode()
    n = txn.counter(count_key)
    txn.put(count_key, n8(n + 1))
    txn.put(pos_key(coll, uuid), n8(n))
    txn.put(order_prefix(coll) + n8(n), uuid.encode())
    txn.put(doc_key(coll, uuid), canonical.dumps(doc))
    for field in FIELDS[coll]:
        for form in _reference_indexed_values(doc[field]):
            txn.put(index_prefix(coll, field, form) + n8(n), uuid.encode())


@given(VALUES)
def test_indexed_values_are_the_sorted_distinct_filter_forms(value: Any) -> None:
    assert indexed_values(value) == _reference_indexed_values(value)


@given(st.data())
def test_insert_doc_writes_what_plain_puts_would(data: st.DataObject) -> None:
    coll = data.draw(st.sampled_from(sorted(FIELDS)))
    docs = [
        {**{field: data.draw(VALUES) for field in FIELDS[coll]}, "uuid": str(uuid.UUID(int=i))} for i in range(3)
    ]
    fast, plain = Txn({}), Txn({})
    for doc in docs:
        fast.insert_doc(coll, doc)
        _reference_insert(plain, coll, doc)
    assert fast.writes == plain.writes and list(fast.writes) == list(plain.writes)


@given(st.binary(min_size=32, max_size=32))
def test_ids_are_uuid5_of_the_entry_hash_and_a_counter(entry_hash: bytes) -> None:
    ids = Ids(entry_hash)
    assert [ids.new() for _ in range(12)] == [str(uuid.uuid5(_NAMESPACE, f"{entry_hash.hex()}/{i}")) for i in range(12)]


def test_a_transaction_of_an_entry_writes_each_document_it_changes_as_that_entry_s_version() -> None:
    uuid_ = str(uuid.UUID(int=1))
    doc = {**{field: None for field in FIELDS["problem"]}, "uuid": uuid_}
    created = Txn({}, seq=7)
    created.insert_doc("problem", doc)
    assert created.writes[version_key("problem", uuid_, 7)] == created.writes[doc_key("problem", uuid_)]
    changed = Txn(dict(created.writes), seq=9)
    changed.update_doc("problem", doc, {**doc, "workflow": "w"})
    versions = {key: value for key, value in changed.writes.items() if key.startswith(b"v/")}
    assert versions == {version_key("problem", uuid_, 9): changed.writes[doc_key("problem", uuid_)]}
    untracked = Txn({})
    untracked.insert_doc("problem", doc)
    assert not any(key.startswith(b"v/") for key in untracked.writes)


def test_the_state_digest_leaves_versions_out_and_so_commits_to_them_through_the_documents() -> None:
    """A version is the d/ write beside it under the entry's seq: the digest of an entry's writes
    is the digest of those writes without their versions (so ledgers signed before versions were
    kept keep their digests), and still changes with any document write."""
    txn = Txn({}, seq=7)
    doc = {**{field: None for field in FIELDS["problem"]}, "uuid": str(uuid.UUID(int=2)), "size_train_dataset": 1}
    txn.insert_doc("problem", doc)
    with_versions = dict(txn.writes)
    assert any(key.startswith(b"v/") for key in with_versions)
    without = {key: value for key, value in with_versions.items() if not key.startswith(b"v/")}
    previous = bytes(32)
    assert write_set_digest(previous, 7, with_versions) == write_set_digest(previous, 7, without)
    changed = dict(with_versions)
    changed[doc_key("problem", doc["uuid"])] = canonical.dumps({**doc, "size_train_dataset": 2})
    assert write_set_digest(previous, 7, changed) != write_set_digest(previous, 7, with_versions)

"""The records several nodes keep in etcd (ledger.applied), the head a node left behind catches up
to (ledger.catchup.goal) and how far etcd may be compacted (EtcdSequencer.compaction_target):
in-process, no etcd."""

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import applied, canonical, catchup, etcd_codec, keys
from ledger.committer import Notary
from ledger.errors import IntegrityError
from ledger.etcd_sequencer import EtcdSequencer

ORIGIN = "test/records"
NODE_KEYS: dict[str, Ed25519PrivateKey] = {f"n{i}": keys.new_private_key() for i in (1, 2, 3)}
PUBLICS = {name: key.public_key() for name, key in NODE_KEYS.items()}
ROOT, DIGEST = bytes(range(32)), bytes(range(32, 64))


def _record(node: str, size: int, revision: int, count: int = 1, *, key: Ed25519PrivateKey | None = None,
            origin: str = ORIGIN, note_size: int | None = None, position: bytes | None = None) -> bytes:
    """A node's record of a head, signed by its key (or by `key`), its note for that size (or another)."""
    key = key or NODE_KEYS[node]
    note = Notary(origin, key).sign(size if note_size is None else note_size, ROOT, DIGEST)
    where = etcd_codec.position(revision, count) if position is None else position
    return applied.encode(origin, node, size, where, note, key)


def _refused(raw: bytes, why: str) -> None:
    with pytest.raises(IntegrityError, match=why):
        applied.decode(raw, ORIGIN, PUBLICS)


def _edited(raw: bytes, **fields: object) -> bytes:
    value = json.loads(raw)
    value.update(fields)
    return canonical.dumps(value)


# -- ledger.applied ---------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(node=st.sampled_from(sorted(NODE_KEYS)), size=st.integers(0, 2**40),
       revision=st.integers(0, 2**63), count=st.integers(0, etcd_codec.WHOLE))
def test_a_record_decodes_to_what_its_node_signed(node: str, size: int, revision: int, count: int) -> None:
    record = applied.decode(_record(node, size, revision, count), ORIGIN, PUBLICS)
    assert (record.node, record.size, record.revision) == (node, size, revision)
    assert record.position == etcd_codec.position(revision, count)
    assert (record.checkpoint.size, record.checkpoint.root, record.checkpoint.state_digest) == (size, ROOT, DIGEST)
    assert record.line.line() in record.note  # the line another node adds to its own note


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_bytes_that_are_not_a_record_are_refused_as_such(raw: bytes) -> None:
    with pytest.raises(IntegrityError):
        applied.decode(raw, ORIGIN, PUBLICS)


@pytest.mark.parametrize("value", [
    [], "n1", 7, None, {}, {"node": "n1"},
    {"node": "n1", "size": "3", "position": "", "note": "", "signature": ""},
    {"node": 1, "size": 3, "position": "", "note": "", "signature": ""},
    {"node": "n1", "size": 3, "position": "zz", "note": "", "signature": ""},
    {"node": "n1", "size": 3, "position": "", "note": "", "signature": "not base64!"},
])
def test_json_that_is_not_a_record_is_refused_as_such(value: object) -> None:
    _refused(canonical.dumps(value), "not a node record")


@settings(max_examples=200, deadline=None)
@given(at=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_record_changed_anywhere_is_refused_or_means_the_same(at: int, bit: int) -> None:
    raw = _record("n2", 12, 40, 3)
    flipped = bytearray(raw)
    flipped[at % len(raw)] ^= 1 << bit
    try:
        record = applied.decode(bytes(flipped), ORIGIN, PUBLICS)
    except IntegrityError:
        return
    # Only a change that does not change a byte signed (e.g. base64's unused padding bits) passes.
    assert record == applied.decode(raw, ORIGIN, PUBLICS)


def test_a_record_with_a_field_changed_after_signing_is_refused() -> None:
    raw = _record("n1", 12, 40)
    _refused(_edited(raw, size=13), "not signed by its key")
    _refused(_edited(raw, position=etcd_codec.position(41, 1).hex()), "not signed by its key")
    _refused(_edited(raw, node="n2"), "not signed by its key")  # another node's name, n1's signature
    other = json.loads(_record("n1", 12, 41))["signature"]
    _refused(_edited(raw, signature=other), "not signed by its key")
    _refused(_edited(raw, signature=base64.b64encode(b"short").decode()), "not signed by its key")


def test_a_record_signed_by_a_key_the_genesis_does_not_give_that_node_is_refused() -> None:
    _refused(_record("n1", 5, 9, key=NODE_KEYS["n2"]), "not signed by its key")
    _refused(_record("n1", 5, 9, key=keys.new_private_key()), "not signed by its key")


def test_a_record_of_a_node_the_genesis_does_not_name_is_refused() -> None:
    stranger = keys.new_private_key()
    _refused(_record("n4", 5, 9, key=stranger), "'n4', which is not a genesis node")
    _refused(_record("", 5, 9, key=stranger), "which is not a genesis node")


def test_a_record_whose_note_does_not_hold_for_it_is_refused() -> None:
    _refused(_record("n1", 5, 9, note_size=6), "checkpoint of another size")
    _refused(_record("n1", 5, 9, origin="another/ledger"), "not signed by its key")  # for another ledger
    note_by_n2 = Notary(ORIGIN, NODE_KEYS["n2"]).sign(5, ROOT, DIGEST)
    raw = applied.encode(ORIGIN, "n1", 5, etcd_codec.position(9, 1), note_by_n2, NODE_KEYS["n1"])
    _refused(raw, "signature")  # the record is n1's, the checkpoint n2's
    _refused(_record("n1", 5, 9, position=b"\x00\x01\x02"), "not an etcd position")


# -- ledger.catchup.goal ------------------------------------------------------------------

_heads = st.lists(st.tuples(st.integers(0, 50), st.integers(0, 60), st.integers(0, 3), st.booleans()),
                  min_size=len(NODE_KEYS), max_size=len(NODE_KEYS))


@settings(max_examples=60, deadline=None)
@given(heads=_heads, since=st.integers(0, 60), size=st.integers(0, 50))
def test_the_goal_is_the_largest_valid_head_at_or_past_the_compaction_and_this_node(
    heads: list[tuple[int, int, int, bool]], since: int, size: int
) -> None:
    records, eligible = {}, []
    for node, (head_size, revision, count, forged) in zip(sorted(NODE_KEYS), heads, strict=True):
        key = keys.new_private_key() if forged else NODE_KEYS[node]
        records[node] = _record(node, head_size, revision, count, key=key)
        if not forged and (revision, count) >= (since, 0) and head_size >= size:
            eligible.append((head_size, etcd_codec.position(revision, count)))
    found = catchup.goal(records, ORIGIN, PUBLICS, etcd_codec.position(since, 0), size)
    if not eligible:
        assert found is None
        return
    assert found is not None and (found.size, found.position) == max(eligible)  # of equal heads, any
    assert records[found.node] == _record(found.node, found.size, *etcd_codec.parse_position(found.position))


def test_no_goal_without_records_or_with_only_ones_behind() -> None:
    since = etcd_codec.position(100, 0)
    assert catchup.goal({}, ORIGIN, PUBLICS, since, 0) is None
    behind = {"n1": _record("n1", 30, 99, 5), "n2": b"garbage", "n3": _record("n3", 10, 120)}
    assert catchup.goal(behind, ORIGIN, PUBLICS, since, 11) is None  # n3 is past etcd but not past this node
    found = catchup.goal(behind, ORIGIN, PUBLICS, since, 10)
    assert found is not None and found.node == "n3"


# -- EtcdSequencer.compaction_target -------------------------------------------------------


def _target(retain: int, current: int, revisions: dict[str, int | None]) -> int:
    sequencer = EtcdSequencer(["127.0.0.1:1"], retain=retain)  # not started: nothing connects
    positions = {node: etcd_codec.EMPTY if r is None else etcd_codec.position(r, 2) for node, r in revisions.items()}
    return sequencer.compaction_target(current, positions)


def test_when_every_node_reported_etcd_is_compacted_up_to_the_one_furthest_behind() -> None:
    assert _target(1000, 5000, {"n1": 4990, "n2": 4200, "n3": 5000}) == 4200


def test_a_node_more_than_retain_revisions_behind_no_longer_holds_compaction_back() -> None:
    assert _target(1000, 5000, {"n1": 4990, "n2": 3999, "n3": 4500}) == 4500
    assert _target(1000, 5000, {"n1": 4990, "n2": 4000, "n3": 4500}) == 4000  # exactly retain behind: kept


def test_a_node_without_a_record_holds_compaction_back_only_for_the_first_retain_revisions() -> None:
    assert _target(1000, 800, {"n1": 790, "n2": None, "n3": 700}) == 0
    assert _target(1000, 5000, {"n1": 4990, "n2": None, "n3": 4500}) == 4500


def test_nothing_is_compacted_when_every_node_is_left_out() -> None:
    assert _target(1000, 5000, {"n1": None, "n2": 100, "n3": 3000}) == 0
    assert _target(1000, 5000, {}) == 0


@settings(max_examples=300, deadline=None)
@given(retain=st.integers(1, 10_000), current=st.integers(1, 100_000),
       behind=st.lists(st.none() | st.integers(0, 100_000), min_size=1, max_size=5))
def test_compaction_never_passes_a_node_kept_and_stops_at_one(
    retain: int, current: int, behind: list[int | None]
) -> None:
    revisions = {f"n{i}": None if b is None else max(current - b, 0) for i, b in enumerate(behind)}
    target = _target(retain, current, revisions)
    kept = [r if r is not None else 0 for r in revisions.values() if (r or 0) >= current - retain]
    assert all(target <= r for r in kept)  # no node within retain finds its history gone
    assert target == (min(kept) if kept else 0)
    assert 0 <= target <= current

"""`orchestrator verify` on tampered copies of a stopped node's data dir.

One ledger is built over HTTP against a real server, then stopped. Each case copies its data
dir, tampers with the copy's LevelDBs directly (plyvel) and expects `verify` to exit non-zero
with `FAILED at <where>: ...` naming the tampered entry or part.

The ledger (sequence numbers are checked when it is built):

    0 genesis            5 algo (analytics)           10 data (viewer)
    1 problem (admin)    6 worker/learnuplet          11 prediction (viewer)
    2 data (viewer)      7 learndone (compute)        12 problem (admin)
    3 data (viewer)      8 problem (admin)
    4 data (viewer)      9 problem (admin)

`old_checkpoint` is the genuine signed checkpoint the node served at size 8.

Besides tampering, damage: bytes that are not an entry or a checkpoint at all, LevelDB files
broken on disk, a log cut back to an older state that the checkpoint file (the node's last
signature, kept outside LevelDB) gives away. Whatever it is, `verify` reports it in one line,
never with a traceback.
"""

import base64
import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plyvel  # type: ignore[import-untyped]
import pytest
from conftest import Server, free_port, init_ledger, new_uuid, orchestrator

from ledger import canonical, checkpoint, keys
from ledger.config import LedgerConfig
from ledger.local import LocalSource
from ledger.verify import VerificationError, verify

SIZE = 13
OLD_SIZE = 8


@dataclass
class Built:
    data_dir: Path
    other_dir: Path  # a second, unrelated ledger (never served)
    problem: str  # uuid of the problem of entry 1
    old_checkpoint: bytes


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("tamper")
    data_dir = root / "data"
    init_ledger(data_dir)
    server = Server(data_dir, free_port()).start()
    try:
        admin, analytics, viewer, compute = (server.client(n) for n in ("admin", "analytics", "viewer", "compute"))
        seqs: list[int] = []

        def ok(response) -> dict:
            assert response.status_code in (200, 201), response.text
            body = response.json()
            seqs.append(body["receipt"]["seq"])
            return body

        def problem() -> str:
            uuid = new_uuid()
            ok(
                admin.post(
                    "/problem",
                    {"uuid": uuid, "workflow": new_uuid(), "test_dataset": [new_uuid()], "size_train_dataset": 2},
                )
            )
            return uuid

        first = problem()
        for _ in range(3):
            ok(viewer.post("/data", {"uuid": [new_uuid(), new_uuid()], "problems": first}))
        algo = new_uuid()
        ok(analytics.post("/algo", {"uuid": algo, "name": "logreg", "problem": first}))
        chain = analytics.get("/learnuplet", algo=algo).json()["learnuplets"]
        rank0 = next(u["uuid"] for u in chain if u["rank"] == 0)
        ok(compute.post(f"/worker/learnuplet/{rank0}", {"worker": new_uuid()}))
        ok(
            compute.post(
                f"/learndone/{rank0}", {"status": "done", "perf": 0.7, "train_perf": [0.8, 0.9], "test_perf": [0.7]}
            )
        )
        response = server.client("everything").get("/ledger/checkpoint")
        assert response.status_code == 200, response.text
        old_checkpoint = response.content
        problem()
        problem()
        ok(viewer.post("/data", {"uuid": [new_uuid()], "problems": [first]}))
        ok(viewer.post("/prediction", {"data": [new_uuid()], "problem": first}))
        problem()
        assert seqs == list(range(1, SIZE))
        assert server.head()["size"] == SIZE
    finally:
        server.stop()
    assert old_checkpoint.split(b"\n")[1] == str(OLD_SIZE).encode()
    other_dir = root / "other"
    init_ledger(other_dir)
    return Built(data_dir, other_dir, first, old_checkpoint)


# --- tampering helpers -------------------------------------------------------------------------

DB = Any  # a plyvel.DB
Tamper = Callable[[DB, DB, Path, Built], None]  # (log db, state db, copy dir, built)


def ekey(seq: int) -> bytes:
    return b"e" + seq.to_bytes(8, "big")


def tile_key(level: int, index: int) -> bytes:
    return b"h" + bytes([level]) + index.to_bytes(8, "big")


def tile_rows(value: bytes, width: int) -> list[bytes]:
    """A stored tile's rows (ledger.merkle's layout: row k holds width >> k hashes)."""
    rows, at = [], 0
    for k in range(8):
        rows.append(value[at : at + 32 * (width >> k)])
        at += 32 * (width >> k)
    assert at == len(value)
    return rows


EDGE = b"h\xff"  # the tree's right edge: n8 size, its perfect subtrees' hashes from the left, their folds


def _cut_tree(log: DB, size: int) -> None:
    """Keep only the tree of the first `size` entries (the ledger's one tile, 0/000, narrowed)."""
    assert [key for key, _ in log.iterator(prefix=b"h")] == [tile_key(0, 0), EDGE]
    rows = tile_rows(log.get(tile_key(0, 0)), SIZE)
    log.put(tile_key(0, 0), b"".join(row[: 32 * (size >> k)] for k, row in enumerate(rows)))
    edge = [rows[k][32 * ((size >> k) - 1) : 32 * (size >> k)] for k in reversed(range(8)) if size >> k & 1]
    folds = list(edge)
    for i in range(len(folds) - 2, -1, -1):
        folds[i] = hashlib.sha256(b"\x01" + edge[i] + folds[i + 1]).digest()
    log.put(EDGE, size.to_bytes(8, "big") + b"".join(edge) + b"".join(folds))


def _replace_in_entry(seq: int, old: bytes, new: bytes) -> Tamper:
    def tamper(log: DB, state: DB, copy: Path, built: Built) -> None:
        raw = log.get(ekey(seq))
        assert raw.count(old) == 1, (old, raw)
        changed = raw.replace(old, new)
        assert len(changed) == len(raw) and changed != raw
        log.put(ekey(seq), changed)

    return tamper


def _flip_in_string_field(seq: int, field: bytes, offset: int) -> Tamper:
    """Change one character inside the JSON string value of `field` (same length, still valid JSON)."""

    def tamper(log: DB, state: DB, copy: Path, built: Built) -> None:
        raw = bytearray(log.get(ekey(seq)))
        at = raw.index(b'"' + field + b'":"') + len(field) + 4 + offset
        assert raw[at] not in b'"\\'
        raw[at] = ord("A") if raw[at] != ord("A") else ord("B")
        log.put(ekey(seq), bytes(raw))

    return tamper


def _shift_time(seq: int, delta_ms: int | None = None) -> Tamper:
    """Move entry seq's ledger time (not covered by the client's signature).

    With delta_ms None: by 1 ms, staying between its neighbours' times, so only the
    bytes (hence the leaf hash) change, not the ordering.
    """

    def tamper(log: DB, state: DB, copy: Path, built: Built) -> None:
        times = [json.loads(log.get(ekey(s)))["time"] for s in (seq - 1, seq, seq + 1)]
        if delta_ms is None:
            new = times[1] + 1 if times[1] + 1 <= times[2] else times[1] - 1
            assert times[0] <= new <= times[2] and new != times[1]
        else:
            new = times[1] + delta_ms
        _replace_in_entry(seq, f'"time":{times[1]},'.encode(), f'"time":{new},'.encode())(log, state, copy, built)

    return tamper


def _time_before_previous(seq: int) -> Tamper:
    def tamper(log: DB, state: DB, copy: Path, built: Built) -> None:
        previous = json.loads(log.get(ekey(seq - 1)))["time"]
        current = json.loads(log.get(ekey(seq)))["time"]
        _shift_time(seq, previous - 1000 - current)(log, state, copy, built)

    return tamper


def truncate(log: DB, state: DB, copy: Path, built: Built) -> None:
    log.delete(ekey(12))
    log.delete(ekey(11))
    log.put(b"size", (11).to_bytes(8, "big"))


def truncate_keep_size(log: DB, state: DB, copy: Path, built: Built) -> None:
    log.delete(ekey(12))
    log.delete(ekey(11))


def delete_middle(log: DB, state: DB, copy: Path, built: Built) -> None:
    log.delete(ekey(6))


def swap(log: DB, state: DB, copy: Path, built: Built) -> None:
    five, six = log.get(ekey(5)), log.get(ekey(6))
    log.put(ekey(5), six)
    log.put(ekey(6), five)


def duplicate(log: DB, state: DB, copy: Path, built: Built) -> None:
    log.put(ekey(6), log.get(ekey(5)))


def _flip_node(level: int, index: int) -> Tamper:
    """Flip a bit of node (level, index) in the tile holding it (all of them are in tile 0/000)."""

    def tamper(log: DB, state: DB, copy: Path, built: Built) -> None:
        value = bytearray(log.get(tile_key(0, 0)))
        at = sum(32 * (SIZE >> k) for k in range(level)) + 32 * index
        assert index < SIZE >> level
        value[at + 7] ^= 0x01
        log.put(tile_key(0, 0), bytes(value))

    return tamper


def delete_tile(log: DB, state: DB, copy: Path, built: Built) -> None:
    log.delete(tile_key(0, 0))


def narrow_tile(log: DB, state: DB, copy: Path, built: Built) -> None:
    _cut_tree(log, SIZE - 1)


def extra_tile(log: DB, state: DB, copy: Path, built: Built) -> None:
    log.put(tile_key(0, 1), bytes(32))


def edge_flipped(log: DB, state: DB, copy: Path, built: Built) -> None:
    value = bytearray(log.get(EDGE))
    value[-1] ^= 0x01
    log.put(EDGE, bytes(value))


def malformed_tile(log: DB, state: DB, copy: Path, built: Built) -> None:
    log.put(tile_key(0, 0), log.get(tile_key(0, 0))[:-1])


def delete_checkpoint(log: DB, state: DB, copy: Path, built: Built) -> None:
    log.delete(b"checkpoint")


def checkpoint_state_line(log: DB, state: DB, copy: Path, built: Built) -> None:
    note = log.get(b"checkpoint")
    body, _, signatures = note.partition(b"\n\n")
    lines = body.split(b"\n")
    assert lines[3].startswith(b"state ")
    digest = bytes.fromhex(lines[3][6:].decode())
    lines[3] = b"state " + bytes([digest[0] ^ 1]).hex().encode() + digest[1:].hex().encode()
    log.put(b"checkpoint", b"\n".join(lines) + b"\n\n" + signatures)


def checkpoint_root(log: DB, state: DB, copy: Path, built: Built) -> None:
    note = log.get(b"checkpoint")
    lines = note.split(b"\n")
    lines[2] = lines[2][:5] + (b"A" if lines[2][5:6] != b"A" else b"B") + lines[2][6:]
    log.put(b"checkpoint", b"\n".join(lines))


def checkpoint_of_other_ledger(log: DB, state: DB, copy: Path, built: Built) -> None:
    other = plyvel.DB(str(built.other_dir / "log"))
    try:
        log.put(b"checkpoint", other.get(b"checkpoint"))
    finally:
        other.close()


def old_checkpoint(log: DB, state: DB, copy: Path, built: Built) -> None:
    """A genuine but older checkpoint: the log holds entries it does not cover."""
    log.put(b"checkpoint", built.old_checkpoint)


def hidden_tail(log: DB, state: DB, copy: Path, built: Built) -> None:
    """Roll the checkpoint back to size 8, cut the tree and drop the state past it, and
    forge entry 10's body: the log holds 13 entries, one of them with a broken signature."""
    log.put(b"checkpoint", built.old_checkpoint)
    _cut_tree(log, OLD_SIZE)
    _flip_in_string_field(10, b"body", 12)(log, state, copy, built)
    for key, _ in list(state.iterator()):
        state.delete(key)


def state_of_other_ledger(log: DB, state: DB, copy: Path, built: Built) -> None:
    pass  # done on the directory, see SWAP_STATE


def state_document(log: DB, state: DB, copy: Path, built: Built) -> None:
    key = f"d/problem/{built.problem}".encode()
    doc = state.get(key)
    assert doc is not None and b'"size_train_dataset":2' in doc
    state.put(key, doc.replace(b'"size_train_dataset":2', b'"size_train_dataset":3'))


def state_version_changed(log: DB, state: DB, copy: Path, built: Built) -> None:
    """A past version of a document rewritten: the digest leaves versions out, verify still sees it."""
    prefix = f"v/problem/{built.problem}/".encode()
    versions = list(state.iterator(prefix=prefix))
    assert versions and b'"size_train_dataset":2' in versions[0][1]
    key, doc = versions[0]
    state.put(key, doc.replace(b'"size_train_dataset":2', b'"size_train_dataset":3'))


def state_key_deleted(log: DB, state: DB, copy: Path, built: Built) -> None:
    key = f"d/problem/{built.problem}".encode()
    assert state.get(key) is not None
    state.delete(key)


def state_key_added(log: DB, state: DB, copy: Path, built: Built) -> None:
    state.put(f"d/problem/{new_uuid()}".encode(), b'{"size_train_dataset":1}')


def _rewrite_entry(seq: int, edit: Callable[[dict[str, Any]], None]) -> Tamper:
    """Decode entry seq, edit the document, store it canonically encoded again."""

    def tamper(log: DB, state: DB, copy: Path, built: Built) -> None:
        doc = json.loads(log.get(ekey(seq)))
        edit(doc)
        log.put(ekey(seq), canonical.dumps(doc))

    return tamper


def _put(key: bytes, value: bytes) -> Tamper:
    def tamper(log: DB, state: DB, copy: Path, built: Built) -> None:
        log.put(key, value)

    return tamper


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(name) and None


def _set(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.__setitem__(name, value)


def _drop_genesis_field(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["genesis"].pop(name) and None


def restored_older_log(log: DB, state: DB, copy: Path, built: Built) -> None:
    """The log as it was at size 8 (as if an older copy of the log directory were restored, or
    LevelDB had dropped the tail of a damaged write-ahead log), state rebuilt from nothing: a
    whole, self-consistent shorter ledger. Only the checkpoint file, signed at 13, tells."""
    for key, _ in list(log.iterator(prefix=b"e")):
        if int.from_bytes(key[1:], "big") >= OLD_SIZE:
            log.delete(key)
    _cut_tree(log, OLD_SIZE)
    log.put(b"size", OLD_SIZE.to_bytes(8, "big"))
    log.put(b"checkpoint", built.old_checkpoint)
    for key, _ in list(state.iterator()):
        state.delete(key)


def checkpoint_file_signature(log: DB, state: DB, copy: Path, built: Built) -> None:
    note = (copy / "checkpoint").read_bytes()
    body, _, signature = note.rpartition(b" ")
    blob = bytearray(base64.b64decode(signature))
    blob[10] ^= 0x01
    (copy / "checkpoint").write_bytes(body + b" " + base64.b64encode(bytes(blob)) + b"\n")


def checkpoint_file_of_other_ledger(log: DB, state: DB, copy: Path, built: Built) -> None:
    shutil.copy(built.other_dir / "checkpoint", copy / "checkpoint")


def checkpoint_file_other_history(log: DB, state: DB, copy: Path, built: Built) -> None:
    """A checkpoint for the same size, genuinely signed by the node key, over another root."""
    signed = checkpoint.parse_body(log.get(b"checkpoint").decode().partition("\n\n")[0] + "\n")
    forged = checkpoint.Checkpoint(signed.origin, signed.size, bytes(32), signed.state_digest)
    node = keys.load_private_key(copy / "node.pem")
    (copy / "checkpoint").write_text(checkpoint.sign(forged, node))


def _checkpoint_file(content: bytes) -> Tamper:
    def tamper(log: DB, state: DB, copy: Path, built: Built) -> None:
        (copy / "checkpoint").write_bytes(content)

    return tamper


def on_files(log: DB, state: DB, copy: Path, built: Built) -> None:
    pass  # done on the closed LevelDB's files, see FILES


def _break_table_footers(directory: Path) -> None:
    """Overwrite the last bytes (the footer's magic number) of every table file."""
    tables = sorted(directory.glob("*.ldb")) + sorted(directory.glob("*.sst"))
    assert tables, sorted(p.name for p in directory.iterdir())
    for table in tables:
        with open(table, "r+b") as f:
            f.seek(-8, 2)
            f.write(bytes(8))


def _remove_tables(directory: Path) -> None:
    tables = sorted(directory.glob("*.ldb")) + sorted(directory.glob("*.sst"))
    assert tables
    for table in tables:
        table.unlink()


SWAP_STATE = {"state_of_other_ledger"}
FILES: dict[str, Callable[[Path], None]] = {
    "log_table_footers": lambda copy: _break_table_footers(copy / "log"),
    "log_tables_removed": lambda copy: _remove_tables(copy / "log"),
    "state_table_footers": lambda copy: _break_table_footers(copy / "state"),
}

ENTRY = r"FAILED at {}: "


def tree(level: int, index: int) -> str:
    return rf"FAILED at tree: .*stored node {level}/{index}\b"


def entry_or_its_leaf(seq: int) -> str:
    """The entry itself, or its stored leaf node (level 0, index seq) that no longer matches it."""
    return rf"FAILED at ({seq}: |tree: .*stored node 0/{seq}\b)"


CASES: list[tuple[str, Tamper, str]] = [
    # Entry bytes.
    ("body_byte_of_entry_5", _flip_in_string_field(5, b"body", 30), ENTRY.format(5)),
    ("signature_byte_of_entry_5", _flip_in_string_field(5, b"signature", 20), ENTRY.format(5)),
    ("non_canonical_entry_5", _replace_in_entry(5, b'"date":', b'"zate":'), ENTRY.format(5) + ".*canonical"),
    ("entry_5_not_json", _replace_in_entry(5, b'{"body":', b'["body":'), ENTRY.format(5)),
    ("key_field_of_entry_5", _replace_in_entry(5, b'"key":"analytics"', b'"key":"analytica"'), ENTRY.format(5)),
    ("seq_field_of_entry_5", _replace_in_entry(5, b'"seq":5,', b'"seq":4,'), ENTRY.format(5)),
    ("time_of_entry_9_before_entry_8", _time_before_previous(9), ENTRY.format(9)),
    # The ledger time is not covered by the client's signature: only the leaf hash changes.
    ("time_ms_of_entry_9", _shift_time(9), entry_or_its_leaf(9)),
    ("time_ms_of_entry_5", _shift_time(5), entry_or_its_leaf(5)),
    # Entries removed, moved, repeated.
    ("truncated_with_size_rewritten", truncate, ENTRY.format(11)),
    ("truncated_keeping_size", truncate_keep_size, ENTRY.format(11)),
    ("entry_6_deleted", delete_middle, ENTRY.format(6)),
    ("entries_5_and_6_swapped", swap, ENTRY.format(5)),
    ("entry_5_copied_over_6", duplicate, ENTRY.format(6)),
    # Stored Merkle tree nodes.
    ("tree_leaf_0_3", _flip_node(0, 3), tree(0, 3)),
    ("tree_node_1_4", _flip_node(1, 4), tree(1, 4)),
    ("tree_node_2_1", _flip_node(2, 1), tree(2, 1)),
    ("tree_node_3_0", _flip_node(3, 0), tree(3, 0)),
    ("tree_tile_deleted", delete_tile, r"FAILED at tree: .*tiles are missing"),
    ("tree_tile_narrowed", narrow_tile, r"FAILED at (tree: .*stored node 0/12 .*is missing|12: )"),
    ("tree_tile_beyond_log", extra_tile, tree(0, 256) + ".*beyond the log"),
    ("tree_tile_malformed", malformed_tile, r"FAILED at tree: .*not a tile"),
    ("tree_edge_changed", edge_flipped, r"FAILED at tree: .*right edge"),
    # Checkpoint.
    ("checkpoint_deleted", delete_checkpoint, r"FAILED at checkpoint: "),
    ("checkpoint_state_line", checkpoint_state_line, r"FAILED at checkpoint: "),
    ("checkpoint_root", checkpoint_root, r"FAILED at checkpoint: "),
    ("checkpoint_of_other_ledger", checkpoint_of_other_ledger, r"FAILED at checkpoint: "),
    # A genuine older checkpoint over a longer log: the log holds entries no checkpoint covers.
    # The tree nodes past size 8 give it away (reported at the tree, the checkpoint, or entry 8).
    ("old_checkpoint", old_checkpoint, r"FAILED at (checkpoint|tree|8): "),
    # Same, with the other evidence past size 8 (tree nodes, state) removed and entry 10 forged:
    # entries 8..12 are still in the log, unchecked, so verify must not report the ledger ok.
    ("old_checkpoint_hiding_forged_tail", hidden_tail, r"FAILED at (checkpoint|8|10): "),
    # Damaged entries: not an entry at all, or one with a field missing or of the wrong type.
    ("entry_5_bytes_not_utf8_json", _put(ekey(5), b"\xff\xfe\x00 not json"), ENTRY.format(5) + ".*decodable"),
    ("entry_5_not_an_object", _put(ekey(5), b"[5]"), ENTRY.format(5) + ".*decodable"),
    ("entry_5_key_missing", _rewrite_entry(5, _drop("key")), ENTRY.format(5) + ".*'key' is missing"),
    ("entry_5_headers_missing", _rewrite_entry(5, _drop("headers")), ENTRY.format(5) + ".*'headers' is missing"),
    ("entry_5_time_a_string", _rewrite_entry(5, _set("time", "soon")), ENTRY.format(5) + ".*'time'"),
    ("entry_5_seq_a_float", _rewrite_entry(5, _set("seq", 5.5)), ENTRY.format(5) + ".*'seq'"),
    ("entry_5_headers_not_strings", _rewrite_entry(5, _set("headers", {"signature": 1})), ENTRY.format(5)),
    ("entry_5_body_not_base64", _rewrite_entry(5, _set("body", "%%%")), ENTRY.format(5) + ".*decodable"),
    # A damaged genesis: whatever else it breaks, entry 0 is named.
    ("genesis_not_json", _put(ekey(0), b"\x00\x01garbage"), ENTRY.format(0)),
    ("genesis_not_an_object", _rewrite_entry(0, _set("genesis", 5)), ENTRY.format(0)),
    ("genesis_without_node_key", _rewrite_entry(0, _drop_genesis_field("node_key")), ENTRY.format(0) + ".*node_key"),
    ("genesis_without_members", _rewrite_entry(0, _drop_genesis_field("members")), ENTRY.format(0) + ".*members"),
    ("genesis_without_origin", _rewrite_entry(0, _drop_genesis_field("origin")), ENTRY.format(0) + ".*origin"),
    # A malformed checkpoint in the log.
    ("checkpoint_not_utf8", _put(b"checkpoint", b"\xff\xfe\xfd"), r"FAILED at checkpoint: .*UTF-8"),
    ("checkpoint_empty", _put(b"checkpoint", b""), r"FAILED at checkpoint: "),
    ("checkpoint_garbage", _put(b"checkpoint", b"hello\n\nworld"), r"FAILED at checkpoint: "),
    ("checkpoint_size_not_a_number", _put(b"checkpoint", b"o\nmany\nroot\nstate 00\n\n"), r"FAILED at checkpoint: "),
    # A Merkle key that is no node key.
    ("tree_key_malformed", _put(b"h", b"x"), r"FAILED at tree: .*not a Merkle tile key"),
    ("tree_old_layout_key_malformed", _put(b"t", b"x"), r"FAILED at tree: .*not a Merkle node key"),
    # LevelDB files damaged on disk.
    ("log_table_footers", on_files, r"FAILED at log: .*Corruption"),
    ("log_tables_removed", on_files, r"FAILED at log: "),
    ("state_table_footers", on_files, r"FAILED at state: .*Corruption"),
    # A shorter log than the node signed (an older copy restored, a write-ahead log's tail lost):
    # whole and self-consistent, but the checkpoint file holds the node's signature for 13 entries.
    ("restored_older_log", restored_older_log, ENTRY.format(OLD_SIZE) + f"log is truncated: .* {SIZE} entries"),
    # The checkpoint file itself.
    ("checkpoint_file_signature", checkpoint_file_signature, r"FAILED at checkpoint file: .*does not verify"),
    ("checkpoint_file_of_other_ledger", checkpoint_file_of_other_ledger, r"FAILED at checkpoint file: "),
    ("checkpoint_file_other_history", checkpoint_file_other_history, r"FAILED at checkpoint file: .*history"),
    ("checkpoint_file_garbage", _checkpoint_file(b"garbage"), r"FAILED at checkpoint file: "),
    ("checkpoint_file_not_utf8", _checkpoint_file(b"\xff\xfe"), r"FAILED at checkpoint file: .*UTF-8"),
    # State directory.
    ("state_of_other_ledger", state_of_other_ledger, r"FAILED at state: "),
    ("state_document_changed", state_document, r"FAILED at state: "),
    ("state_version_changed", state_version_changed, r"FAILED at state: "),
    ("state_key_deleted", state_key_deleted, r"FAILED at state: "),
    ("state_key_added", state_key_added, r"FAILED at state: "),
]


def _copy(built: Built, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(built.data_dir, copy)
    return copy


def _tampered_copy(built: Built, tmp_path: Path, name: str, tamper: Tamper) -> Path:
    """A copy of the built data dir with the named case's tampering applied."""
    copy = _copy(built, tmp_path)
    if name in SWAP_STATE:
        shutil.rmtree(copy / "state")
        shutil.copytree(built.other_dir / "state", copy / "state")
    log, state = plyvel.DB(str(copy / "log")), plyvel.DB(str(copy / "state"))
    try:
        tamper(log, state, copy, built)
    finally:
        log.close()
        state.close()
    if name in FILES:
        FILES[name](copy)
    return copy


def _verify(copy: Path):
    return orchestrator("verify", "--data-dir", str(copy), check=False, timeout=60)


def test_untampered_copy_verifies(built: Built, tmp_path: Path) -> None:
    result = _verify(_copy(built, tmp_path))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"ok: {SIZE} entries, "), line
    assert f"tree size {SIZE}," in line
    assert "Traceback" not in result.stderr


def test_untampered_copy_is_consistent_with_the_older_checkpoint(built: Built, tmp_path: Path) -> None:
    copy = _copy(built, tmp_path)
    trusted, saved = tmp_path / "old.txt", tmp_path / "saved.txt"
    trusted.write_bytes(built.old_checkpoint)
    result = orchestrator(
        "verify",
        "--data-dir",
        str(copy),
        "--trusted-checkpoint",
        str(trusted),
        "--save-checkpoint",
        str(saved),
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {SIZE} entries, ")
    log = plyvel.DB(str(copy / "log"))
    try:
        assert saved.read_bytes() == log.get(b"checkpoint")
    finally:
        log.close()


@pytest.mark.parametrize("name, tamper, expected", CASES, ids=[c[0] for c in CASES])
def test_tampered_copy_fails_at_the_right_place(
    built: Built, tmp_path: Path, name: str, tamper: Tamper, expected: str
) -> None:
    copy = _tampered_copy(built, tmp_path, name, tamper)
    result = _verify(copy)
    assert result.returncode != 0, f"verify passed a tampered ledger ({name}): {result.stdout}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(expected, lines[0]), f"expected {expected!r}, got {result.stderr!r}"


@pytest.mark.parametrize("name, tamper", [(c[0], c[1]) for c in CASES], ids=[c[0] for c in CASES])
def test_signature_worker_processes_report_the_same_failure(
    built: Built, tmp_path: Path, name: str, tamper: Tamper
) -> None:
    """Big ledgers check signatures in worker processes, small ones on threads: same verdicts."""
    copy = _tampered_copy(built, tmp_path, name, tamper)
    verdicts = []
    for processes in (0, 1):
        # LocalSource itself refuses a log shorter than the checkpoint file
        with pytest.raises(VerificationError) as caught, LocalSource(LedgerConfig(data_dir=copy)) as source:
            verify(source, processes=processes)
        verdicts.append((caught.value.where, caught.value.reason))
    assert verdicts[0] == verdicts[1]


def test_signature_worker_processes_pass_an_untampered_copy(built: Built, tmp_path: Path) -> None:
    copy = _copy(built, tmp_path)
    reports = []
    for processes in (0, 1):
        with LocalSource(LedgerConfig(data_dir=copy)) as source:
            reports.append(verify(source, processes=processes))
    assert reports[0].entries == reports[1].entries == SIZE
    assert (reports[0].root, reports[0].state_digest, reports[0].signers) == (
        reports[1].root,
        reports[1].state_digest,
        reports[1].signers,
    )

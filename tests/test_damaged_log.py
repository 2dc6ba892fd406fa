"""A damaged log is never served as a shorter ledger.

LevelDB can lose the tail of a log without a word: it skips a damaged write-ahead log from the
first bad record on, and an older copy of the log directory restored by hand is a whole, shorter
ledger. Until the node re-signed a checkpoint for that shorter tree, and then signed new entries
over it: two histories under one key. Now the log is opened with LevelDB's paranoid checks, and
the node keeps its latest signed checkpoint in DATA_DIR/checkpoint too, outside LevelDB: `serve`
refuses a log shorter than that (one line on stderr, nothing served), and so does `verify`.

Each test stops a real server, damages its data dir, and runs the real commands.
"""

import re
import shutil
import subprocess
from pathlib import Path

import plyvel  # type: ignore[import-untyped]
import pytest
from conftest import Server, free_port, init_ledger, new_uuid, orchestrator

from ledger import checkpoint
from ledger.checkpoint_file import CheckpointFile
from ledger.config import LedgerConfig
from ledger.errors import IntegrityError
from ledger.log import Log
from ledger.service import Ledger
from ledger.store import LevelStore, MemoryStore


def _write(server: Server, count: int) -> None:
    admin = server.client("admin")
    for _ in range(count):
        body = {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
        response = admin.post("/problem", body)
        assert response.status_code == 201, response.text


def _served_checkpoint(server: Server) -> str:
    response = server.client("everything").get("/ledger/checkpoint")
    assert response.status_code == 200, response.text
    return response.text


def _size(note: str | bytes) -> int:
    text = note.decode() if isinstance(note, bytes) else note
    return int(text.split("\n")[1])


def _serve(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`orchestrator serve` on a data dir it must refuse (a served one would run until the timeout)."""
    return orchestrator("serve", "--data-dir", str(data_dir), "--bind", f"127.0.0.1:{free_port()}", check=False,
                        timeout=120)


def _refused(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {result.stderr!r}"
    assert re.search(pattern, lines[0]), lines[0]
    assert "Listening at" not in result.stdout + result.stderr


def _verify_fails(data_dir: Path, pattern: str) -> None:
    result = orchestrator("verify", "--data-dir", str(data_dir), check=False, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(pattern, lines[0]), result.stderr


def _verify_ok(data_dir: Path, size: int) -> None:
    result = orchestrator("verify", "--data-dir", str(data_dir), check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {size} entries, "), result.stdout


def test_a_normal_restart_serves_on_and_the_checkpoint_file_follows(fresh_server: Server) -> None:
    server, data = fresh_server, fresh_server.data_dir
    _write(server, 2)
    assert (data / "checkpoint").read_text() == _served_checkpoint(server)
    server.stop()
    server.start()
    assert server.head()["size"] == 3
    _write(server, 1)
    note = _served_checkpoint(server)
    assert (data / "checkpoint").read_text() == note and _size(note) == 4
    server.stop()
    _verify_ok(data, 4)


def test_a_ledger_made_before_the_checkpoint_file_starts_and_gets_one(fresh_server: Server) -> None:
    server, data = fresh_server, fresh_server.data_dir
    _write(server, 2)
    server.stop()
    (data / "checkpoint").unlink()
    _verify_ok(data, 3)  # a missing file is accepted, and verify writes nothing
    assert not (data / "checkpoint").exists()
    server.start()
    assert (data / "checkpoint").read_text() == _served_checkpoint(server)
    _write(server, 1)
    assert _size((data / "checkpoint").read_text()) == 4


def test_a_log_restored_from_an_older_copy_is_refused(fresh_server: Server, tmp_path: Path) -> None:
    server, data = fresh_server, fresh_server.data_dir
    _write(server, 2)
    server.stop()
    older = tmp_path / "older-log"
    shutil.copytree(data / "log", older)  # a backup at 3 entries
    server.start()
    _write(server, 3)
    server.stop()
    signed = (data / "checkpoint").read_bytes()
    assert _size(signed) == 6
    shutil.rmtree(data / "log")
    shutil.copytree(older, data / "log")
    shutil.rmtree(data / "state")  # nothing else is ahead of the log: only the file tells
    _refused(_serve(data), r"^orchestrator: error: log is truncated: this node signed a checkpoint for 6 entries "
                           r"\(.*checkpoint\), the log holds 3; refusing to open it$")
    _verify_fails(data, r"^FAILED at 3: log is truncated: this node signed a checkpoint for 6 entries")
    assert (data / "checkpoint").read_bytes() == signed


def test_a_log_that_lost_its_last_entries_is_refused_and_nothing_is_re_signed(fresh_server: Server) -> None:
    server, data = fresh_server, fresh_server.data_dir
    _write(server, 4)
    server.stop()
    signed = (data / "checkpoint").read_bytes()
    log = plyvel.DB(str(data / "log"))
    try:
        stored = log.get(b"checkpoint")
        for seq in (3, 4):
            log.delete(b"e" + seq.to_bytes(8, "big"))
        log.put(b"size", (3).to_bytes(8, "big"))
    finally:
        log.close()
    shutil.rmtree(data / "state")
    _refused(_serve(data), r"log is truncated: this node signed a checkpoint for 5 entries .*the log holds 3")
    _verify_fails(data, r"^FAILED at 3: log is truncated")
    # The node did not sign the shorter tree (it used to, at start-up).
    assert (data / "checkpoint").read_bytes() == signed
    log = plyvel.DB(str(data / "log"))
    try:
        assert log.get(b"checkpoint") == stored
    finally:
        log.close()


def test_a_damaged_write_ahead_log_is_refused(fresh_server: Server) -> None:
    """Without paranoid checks LevelDB drops the damaged record and all after it: a shorter log."""
    server, data = fresh_server, fresh_server.data_dir
    _write(server, 5)
    server.stop()
    (wal,) = [p for p in (data / "log").glob("*.log") if p.stat().st_size > 0]
    damaged = bytearray(wal.read_bytes())
    damaged[len(damaged) - 1500] ^= 0xFF  # inside the last writes' records
    wal.write_bytes(bytes(damaged))
    _refused(_serve(data), r"^orchestrator: error: .*log is damaged: Corruption: ")
    _verify_fails(data, r"^FAILED at log: .*log is damaged: Corruption: ")


def test_a_damaged_log_table_is_refused(fresh_server: Server) -> None:
    server, data = fresh_server, fresh_server.data_dir
    _write(server, 2)
    server.stop()
    plyvel.DB(str(data / "log")).close()  # the write-ahead log becomes a table
    tables = list((data / "log").glob("*.ldb"))
    assert tables
    for table in tables:
        with open(table, "r+b") as f:
            f.seek(-8, 2)
            f.write(bytes(8))  # the footer's magic number
    _refused(_serve(data), r"^orchestrator: error: .*log is damaged: Corruption: ")
    _verify_fails(data, r"^FAILED at log: .*log is damaged: Corruption: ")


@pytest.mark.parametrize("damage", ["signature", "other ledger", "garbage"])
def test_a_checkpoint_file_the_node_did_not_sign_is_refused(fresh_server: Server, tmp_path: Path, damage: str) -> None:
    server, data = fresh_server, fresh_server.data_dir
    _write(server, 1)
    server.stop()
    path = data / "checkpoint"
    if damage == "signature":
        note = path.read_text()
        cut = note.rindex(" ") + 8
        path.write_text(note[:cut] + ("A" if note[cut] != "A" else "B") + note[cut + 1 :])
    elif damage == "other ledger":
        other = tmp_path / "other"
        orchestrator("init", "--data-dir", str(other), "--origin", "elsewhere.example/ledger")
        shutil.copy(other / "checkpoint", path)
    else:
        path.write_bytes(b"\xff\xfe not a checkpoint")
    _refused(_serve(data), r"^orchestrator: error: .*checkpoint")
    _verify_fails(data, r"^FAILED at checkpoint file: ")


def test_ledger_open_refuses_a_shorter_log_and_releases_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init_ledger(data, {"admin": "admin"})
    config = LedgerConfig(data_dir=data)
    longer = (data / "checkpoint").read_text()
    log = plyvel.DB(str(data / "log"))
    try:
        log.put(b"size", (0).to_bytes(8, "big"))
    finally:
        log.close()
    with pytest.raises(IntegrityError, match="log is truncated"):
        Ledger.open(config)
    LevelStore(config.log_dir, create=False).close()  # not left locked by the refused open
    assert (data / "checkpoint").read_text() == longer


def test_the_node_never_signs_a_smaller_tree_than_its_checkpoint_file(tmp_path: Path) -> None:
    """The writer prepares (then signs) each commit's tree; neither happens below the file's size."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    file = CheckpointFile(tmp_path / "checkpoint")
    log = Log(MemoryStore(), file)
    log.append(0, [b"genesis", b"one", b"two"])
    note = checkpoint.sign(checkpoint.Checkpoint("o", 3, log.tree().root(3), bytes(32)), key)
    log.commit({}, note)
    assert file.path.read_text() == note and file.signed_size == 3
    with pytest.raises(IntegrityError, match="refusing to sign a checkpoint for 2 entries"):
        log.prepare(1, [b"other"])
    smaller = checkpoint.sign(checkpoint.Checkpoint("o", 2, log.tree().root(2), bytes(32)), key)
    with pytest.raises(IntegrityError, match="already signed one for 3"):
        log.commit({}, smaller)
    assert log.checkpoint() == note and file.path.read_text() == note
    log.prepare(3, [b"three"])  # growing is fine


def test_a_checkpoint_file_that_cannot_be_written_does_not_fail_the_commit(tmp_path: Path) -> None:
    """After the synced log batch the entries are kept whatever happens to the file (a full disk):
    the commit succeeds, the file lags behind (safe: it claims less than the log holds), and the
    guard still knows the size signed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    file = CheckpointFile(tmp_path / "no such directory" / "checkpoint")
    log = Log(MemoryStore(), file)
    log.append(0, [b"genesis", b"one"])
    note = checkpoint.sign(checkpoint.Checkpoint("o", 2, log.tree().root(2), bytes(32)), key)
    log.commit({}, note)
    assert log.checkpoint() == note and not file.path.exists()
    with pytest.raises(IntegrityError, match="already signed one for 2"):
        log.prepare(0, [b"other"])

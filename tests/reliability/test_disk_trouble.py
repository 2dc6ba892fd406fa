"""Disk trouble: when LevelDB cannot write (disk full, I/O error), writes get 503 with a clear
message, nothing half-written remains, reads keep working, and writes resume once the disk
takes writes again, without a restart.

Two engine facts this relies on, both checked here against real LevelDB:
- after a failed write LevelDB may keep a sticky error (a failed compaction) that fails every
  later write until the DB is reopened;
- a write-ahead log record torn by a full disk makes LevelDB drop, at its next open, every
  write that followed it in that log file: writes acknowledged after the disk came back would
  vanish at the next restart unless the store is reopened before it is written again.
So ``LevelStore`` marks itself failed on a write error and reopens before its next write, once a
probe shows the disk takes writes; the writer reopens the log after a failed append and takes its
size and state from what is durable.

The disk: a real small filesystem (a tmpfs mounted for the test, filled with a filler file) when
this machine allows mounting; otherwise, and also always as a second case, a file-size limit
(RLIMIT_FSIZE, set on the server's processes with prlimit) that makes every file growth fail
with EFBIG. Both make LevelDB itself fail; nothing in the engine is mocked. The engine's
recovery logic is also tested in-process with stores that fail on demand.

    ORCHESTRATOR_FULL=1 python -m pytest -q -s tests/reliability/test_disk_trouble.py
"""

import errno
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import report, scale
from ledger_checks import Server, free_port, init_ledger, new_uuid, stop_verify_replay
from signing import Signer

from ledger import keys
from ledger.config import LedgerConfig
from ledger.entry import SignedRequest, encode
from ledger.errors import NotFoundError, StorageError
from ledger.genesis import genesis_entry
from ledger.log import Log
from ledger.sequencer import LocalSequencer
from ledger.service import Ledger
from ledger.state import catch_up, read_meta
from ledger.store import MemoryStore, Writes

ROOT = Path(__file__).resolve().parent.parent.parent

# -- the disk -------------------------------------------------------------------------------


class Disk:
    """Where a data dir lives, and a way to make its disk refuse writes and take them again."""

    name = ""
    reason = ""  # what the OS says when the disk refuses a write

    def __init__(self, root: Path) -> None:
        self.root = root

    def refuse(self, pids: list[int]) -> None:
        raise NotImplementedError

    def accept(self, pids: list[int]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SmallFilesystem(Disk):
    """A tmpfs of a few MB mounted at root; refuse = fill it with a filler file; accept = delete it."""

    name = "small tmpfs, filled"
    reason = os.strerror(errno.ENOSPC)

    def __init__(self, root: Path, size_mb: int = 32) -> None:
        super().__init__(root)
        root.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(root)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise PermissionError(result.stderr.strip() or f"mount exited with {result.returncode}")
        self.filler = root / "filler"

    def refuse(self, pids: list[int]) -> None:
        with open(self.filler, "ab", buffering=0) as f:
            for chunk in (1 << 20, 1 << 12, 1 << 9, 1):
                try:
                    while True:
                        f.write(bytes(chunk))
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e

    def accept(self, pids: list[int]) -> None:
        self.filler.unlink()

    def close(self) -> None:
        subprocess.run(["umount", str(self.root)], check=True)


class FileSizeLimit(Disk):
    """RLIMIT_FSIZE on the processes: refuse = no file may grow past 1 byte (EFBIG); accept = unlimited."""

    name = "file-size limit (RLIMIT_FSIZE)"
    reason = os.strerror(errno.EFBIG)

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        root.mkdir(parents=True, exist_ok=True)

    def refuse(self, pids: list[int]) -> None:
        for pid in pids:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, resource.prlimit(pid, resource.RLIMIT_FSIZE)[1]))

    def accept(self, pids: list[int]) -> None:
        for pid in pids:
            hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)[1]
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))


@pytest.fixture(params=["small-filesystem", "file-size-limit"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Disk]:
    """The small filesystem where mounting is allowed (else the file-size limit), and the limit."""
    root = tmp_path / "data"
    made: Disk
    if request.param == "small-filesystem":
        try:
            made = SmallFilesystem(root)
        except (PermissionError, FileNotFoundError) as e:  # not root, no mount(8), or not permitted here
            print(f"\nmounting a tmpfs is not permitted here ({e}); using the file-size limit", flush=True)
            made = FileSizeLimit(root)
    else:
        made = FileSizeLimit(root)
    try:
        yield made
    finally:
        made.close()


def descendants(pid: int) -> list[int]:
    """pid and every process below it (the serve command, gunicorn's master and its worker)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


# -- in-process: the writer recovers from failing stores ---------------------------------------


class FailingStore:
    """A MemoryStore whose writes fail on demand, the way LevelDB fails.

    ``fail(n)``: the next n writes raise StorageError. With ``sticky`` every write after a
    failure fails too until :meth:`recover` (LevelDB's sticky error, cleared by a reopen).
    With ``durable`` a failing write still reaches the store (an fsync error after the
    record was written: the batch shows up when the store is reopened). ``refuse_recover``
    makes that many recover() calls fail (the disk is still full).
    """

    def __init__(self, inner: MemoryStore | None = None) -> None:
        self.inner = inner or MemoryStore()
        self.failures = 0
        self.sticky = False
        self.durable = False
        self.broken = False  # a sticky failure happened and no recover() since
        self.refuse_recover = 0
        self.recovers = 0
        self.failed_writes = 0

    def fail(self, n: int = 1, *, sticky: bool = False, durable: bool = False) -> None:
        self.failures, self.sticky, self.durable = n, sticky, durable

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(prefix, start)

    def write(self, writes: Writes, *, sync: bool) -> None:
        if self.broken:
            self.failed_writes += 1
            raise StorageError("write failed: IO error: sticky background error (the store was not reopened)")
        if self.failures > 0:
            self.failures -= 1
            self.failed_writes += 1
            self.broken = self.sticky
            if self.durable:
                self.inner.write(writes, sync=sync)
            raise StorageError("write failed: IO error: No space left on device")
        self.inner.write(writes, sync=sync)

    def recover(self) -> None:
        if self.refuse_recover > 0:
            self.refuse_recover -= 1
            raise StorageError("still cannot be written (No space left on device)")
        self.recovers += 1
        self.broken = False

    def close(self) -> None:
        pass


@pytest.fixture
def alice() -> Signer:
    return Signer(keys.private_pem(keys.new_private_key()), "alice")


def _ledger(alice: Signer, log_store: FailingStore, state_store: FailingStore) -> Ledger:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    public = keys.public_b64(load_pem_private_key(alice.key_pem, None))  # type: ignore[arg-type]
    members = [{"key_id": "alice", "public_key": public, "roles": ["admin", "analytics", "compute", "viewer"]}]
    node = keys.new_private_key()
    genesis = genesis_entry("test/disk", keys.public_b64(node), members, 300, int(time.time() * 1000))
    Log(log_store.inner).append(0, [encode(genesis)])
    return Ledger(LedgerConfig(), log_store, state_store, node_key=node,  # type: ignore[arg-type]
                  sequencer=LocalSequencer()).start()


def _problem(alice: Signer) -> tuple[str, SignedRequest]:
    problem = str(uuid.uuid4())
    body = {"uuid": problem, "workflow": str(uuid.uuid4()), "test_dataset": [], "size_train_dataset": 1}
    return problem, alice.sign("POST", "/problem", json=body)


def _write(ledger: Ledger, request: SignedRequest) -> Any:
    return ledger.write(request).result(timeout=10)


def _replayed_digest(ledger: Ledger) -> bytes:
    return catch_up(ledger.log, MemoryStore()).digest


def test_sticky_log_failure_is_cleared_by_reopening_the_log(alice: Signer) -> None:
    log_store, state_store = FailingStore(), FailingStore()
    ledger = _ledger(alice, log_store, state_store)
    try:
        before, request = _problem(alice)
        _write(ledger, request)
        size, digest = ledger.head()
        log_store.fail(1, sticky=True)
        lost, refused = _problem(alice)
        with pytest.raises(StorageError, match="No space left on device"):
            _write(ledger, refused)
        assert ledger.head() == (size, digest) and ledger.log.size() == size
        assert ledger.document("problem", before)  # reads go on
        # The disk is still full: the reopen fails, writes keep failing, nothing is appended.
        log_store.refuse_recover = 2
        for _ in range(2):
            with pytest.raises(StorageError, match="still cannot be written"):
                _write(ledger, _problem(alice)[1])
        assert ledger.head() == (size, digest) and ledger.log.size() == size
        # Space is back: the next write reopens the log and goes through, without a restart.
        resumed, request = _problem(alice)
        assert _write(ledger, request).receipt.seq == size
        assert log_store.recovers == 1
        # The refused request was not recorded: resent as it was, it is a new write now.
        assert _write(ledger, refused).receipt.seq == size + 1
        for problem in (before, resumed, lost):
            assert ledger.document("problem", problem)
        assert ledger.head()[1] == _replayed_digest(ledger)
    finally:
        ledger.close()


def test_failed_append_that_reached_the_disk_is_taken_from_the_log(alice: Signer) -> None:
    """An fsync error after the record was written: the client got 503, but after the reopen the
    entry is in the log. The writer must continue after it (not overwrite it), bring state up to
    it, and answer a resend of that request with its recorded outcome."""
    log_store, state_store = FailingStore(), FailingStore()
    ledger = _ledger(alice, log_store, state_store)
    try:
        size, _ = ledger.head()
        log_store.fail(1, sticky=True, durable=True)
        problem, request = _problem(alice)
        with pytest.raises(StorageError):
            _write(ledger, request)
        assert ledger.head()[0] == size  # not acknowledged: the head does not move
        other, second = _problem(alice)
        assert _write(ledger, second).receipt.seq == size + 1  # after the entry that turned out durable
        resent = _write(ledger, request)
        assert resent.resent and resent.receipt.seq == size
        assert ledger.document("problem", problem) and ledger.document("problem", other)
        assert ledger.head() == (size + 2, _replayed_digest(ledger))
        assert read_meta(ledger.state).applied == size + 2
    finally:
        ledger.close()


def test_sticky_state_failure_is_cleared_and_state_catches_up(alice: Signer) -> None:
    log_store, state_store = FailingStore(), FailingStore()
    ledger = _ledger(alice, log_store, state_store)
    try:
        size, _ = ledger.head()
        state_store.fail(1, sticky=True)
        first, request = _problem(alice)
        assert _write(ledger, request).receipt.seq == size  # durable in the log: acknowledged
        with pytest.raises(NotFoundError):  # state lags until the next write catches it up
            ledger.document("problem", first)
        state_store.refuse_recover = 1
        with pytest.raises(StorageError, match="still cannot be written"):
            _write(ledger, _problem(alice)[1])  # state cannot catch up yet: nothing is appended
        assert ledger.log.size() == size + 1
        second, request = _problem(alice)
        assert _write(ledger, request).receipt.seq == size + 1
        assert state_store.recovers == 1
        assert ledger.document("problem", first) and ledger.document("problem", second)
        assert ledger.head() == (size + 2, _replayed_digest(ledger))
    finally:
        ledger.close()


# -- LevelStore on a real refusing disk ------------------------------------------------------

STORE_CHILD = r"""
import json, sys, threading
from pathlib import Path
from ledger.errors import StorageError
from ledger.store import LevelStore

path, rounds = Path(sys.argv[1]), int(sys.argv[2])
say = lambda *words: print(*words, flush=True)
hear = sys.stdin.readline
store = LevelStore(path)
store.write({b"base%05d" % i: b"x" * 100 for i in range(100)}, sync=True)
stop, read_errors, reads = threading.Event(), [], [0]

def reader():  # reads go on through every failure and reopen, from other threads
    while not stop.is_set():
        try:
            assert store.get(b"base00042") == b"x" * 100
            assert sum(1 for _ in store.scan(b"base")) == 100
            reads[0] += 1
        except Exception as e:
            read_errors.append(repr(e))

threads = [threading.Thread(target=reader) for _ in range(4)]
for t in threads:
    t.start()
acked, refused, messages = [], 0, []
for r in range(rounds):
    say("refuse"); hear()
    value = b"v" * 3000
    for i in range(100000):  # write until the disk refuses
        try:
            store.write({b"r%02d-%06d" % (r, i): value}, sync=True)
            acked.append(b"r%02d-%06d" % (r, i))
        except StorageError as e:
            refused += 1; messages.append(str(e)); break
    for i in range(3):  # still refused: writes fail (without touching LevelDB), reads work
        try:
            store.write({b"again%02d-%d" % (r, i): b"y"}, sync=True)
            acked.append(b"again%02d-%d" % (r, i))
        except StorageError as e:
            refused += 1; messages.append(str(e))
    say("accept"); hear()
    for i in range(200):  # the disk takes writes again: every one succeeds
        store.write({b"after%02d-%05d" % (r, i): b"z" * 500}, sync=True)
        acked.append(b"after%02d-%05d" % (r, i))
stop.set()
for t in threads:
    t.join()
store.close()
store = LevelStore(path)  # the next start: is every acknowledged write still there?
missing = [k.decode() for k in acked if store.get(k) is None]
store.close()
say("result", json.dumps({"acked": len(acked), "refused": refused, "messages": messages, "missing": missing,
                          "reads": reads[0], "read_errors": read_errors[:5]}))
"""


def test_level_store_reopens_after_a_refused_write(disk: Disk) -> None:
    """Against real LevelDB: writes fail while the disk refuses, with the OS's reason; reads go on
    from other threads; writes succeed again once it accepts; and every acknowledged write is
    still there when the store is next opened (the torn-log loss does not happen)."""
    rounds = scale(2, 5)
    child = subprocess.Popen(
        [sys.executable, "-c", STORE_CHILD, str(disk.root / "store"), str(rounds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        for _ in range(rounds):
            for step in (disk.refuse, disk.accept):
                line = child.stdout.readline().strip()
                assert line in ("refuse", "accept"), f"child said {line!r}"
                step([child.pid])
                child.stdin.write("go\n")
                child.stdin.flush()
        line = child.stdout.readline()
        assert child.wait(timeout=60) == 0 and line.startswith("result "), line
    finally:
        if child.poll() is None:
            child.kill()
    result = json.loads(line.split(" ", 1)[1])
    assert result["refused"] == 4 * rounds, result
    assert all(disk.reason in m for m in result["messages"]), result["messages"]
    assert not result["read_errors"] and result["reads"] > 0, result
    assert not result["missing"], f"{len(result['missing'])} acknowledged writes lost, first {result['missing'][:3]}"
    report(
        f"disk trouble, LevelStore ({disk.name})",
        rounds=rounds,
        acknowledged_writes_checked=result["acked"],
        refused_writes=result["refused"],
        concurrent_reads=result["reads"],
    )


def test_level_store_scan_resumes_across_a_reopen(tmp_path: Path) -> None:
    """A scan that is under way when the store is reopened goes on from where it was, on the new
    handle, and sees exactly what a scan without the reopen sees."""
    from ledger.store import LevelStore

    store, reference = LevelStore(tmp_path / "db"), MemoryStore()
    items = {b"%c/%05d" % (c, i): b"%d" % i for c in b"abc" for i in range(0, 3000, 7)}
    store.write(items, sync=False)
    reference.write(items, sync=False)
    for prefix, start in ((b"b/", None), (b"", b"a/01000"), (b"c/", b"c/02500"), (b"b/", b"z")):
        scan, expected = store.scan(prefix, start), list(reference.scan(prefix, start))
        seen = [item for _, item in zip(range(5), scan, strict=False)]
        store._failed = "injected"  # as after a failed write: the next recover() reopens
        store.recover()
        seen += list(scan)
        assert seen == expected, (prefix, start, len(seen), len(expected))
    store.close()


# -- black box: a live server on a refusing disk ----------------------------------------------


def _data_write(client: Any, problem: str) -> tuple[list[str], Any]:
    uuids = [new_uuid(), new_uuid()]
    return uuids, client.post("/data", {"uuid": uuids, "problems": problem})


def _present(reader: Any, uuids: list[str]) -> list[bool]:
    answers = [reader.get(f"/data/{u}") for u in uuids]
    assert all(a.status_code in (200, 404) for a in answers), [a.text for a in answers]
    return [a.status_code == 200 for a in answers]


def test_disk_trouble_over_http(disk: Disk) -> None:
    init_ledger(disk.root)
    server = Server(disk.root, free_port()).start()
    try:
        _run_disk_trouble(server, disk)
    finally:
        server.stop(9)


def _run_disk_trouble(server: Any, disk: Disk) -> None:
    admin, viewer, reader = server.client("admin"), server.client("viewer"), server.client("everything")
    problem, test_data = new_uuid(), new_uuid()
    answer = admin.post(
        "/problem", {"uuid": problem, "workflow": new_uuid(), "test_dataset": [test_data], "size_train_dataset": 2}
    )
    assert answer.status_code == 201, answer.text
    algo = new_uuid()
    answer = server.client("analytics").post("/algo", {"uuid": algo, "name": "disk", "problem": problem})
    assert answer.status_code == 201, answer.text
    acked: list[list[str]] = []
    refused: list[list[str]] = []
    messages: set[str] = set()
    episodes = scale(2, 5)
    for _ in range(episodes):
        for _ in range(3):
            uuids, answer = _data_write(viewer, problem)
            assert answer.status_code == 201, answer.text
            acked.append(uuids)
        disk.refuse(descendants(server.process.pid))
        # Writes until the disk refuses (a few may still fit in a page LevelDB already holds).
        in_a_row = 0
        for _ in range(300):
            uuids, answer = _data_write(viewer, problem)
            if answer.status_code == 201:
                acked.append(uuids)
                in_a_row = 0
                continue
            assert answer.status_code == 503, f"{answer.status_code} {answer.text}"
            refused.append(uuids)
            error = answer.json()
            assert error["title"] == "Service Unavailable", error
            assert disk.reason in error["description"], error  # names the disk's trouble
            messages.add(error["description"])
            in_a_row += 1
            if in_a_row == 5:
                break
        assert in_a_row == 5, f"the server still accepted writes after the disk refused them ({disk.name})"
        # Reads keep working meanwhile.
        head = reader.get("/ledger/head")
        assert head.status_code == 200, head.text
        for path in (f"/problem/{problem}", f"/algo/{algo}", f"/data/{acked[0][0]}", "/nodes"):
            answer = reader.get(path)
            assert answer.status_code == 200, (path, answer.text)
        listed = reader.get("/learnuplet", algo=algo)
        assert listed.status_code == 200, listed.text
        entries = reader.get("/ledger/entries", start="0")
        assert entries.status_code == 200, entries.text
        # Space returns: the very next write goes through, without a restart.
        disk.accept(descendants(server.process.pid))
        for _ in range(5):
            uuids, answer = _data_write(viewer, problem)
            assert answer.status_code == 201, f"writes did not resume: {answer.status_code} {answer.text}"
            acked.append(uuids)

    def check() -> dict[str, Any]:
        for uuids in acked:
            assert _present(reader, uuids) == [True, True], f"acknowledged data {uuids} is missing"
        for uuids in refused:
            assert _present(reader, uuids) == [False, False], f"refused (503) data {uuids} is present"
        # The learnuplet chain covers exactly the acknowledged train data, in order.
        registered = [d["uuid"] for d in reader.find_all("data", problems=problem)]
        assert registered == [u for uuids in acked for u in uuids]
        chain = sorted(reader.find_all("learnuplet", algo=algo), key=lambda u: u["rank"])
        assert [u["rank"] for u in chain] == list(range(len(chain)))
        assert [u for doc in chain for u in doc["train_data"]] == registered
        return server.head()

    head = check()
    # A crash now must lose nothing acknowledged after the disk came back.
    server.stop(9)
    server.start()
    assert server.head() == head
    check()
    stop_verify_replay(server, head)
    report(
        f"disk trouble, over HTTP ({disk.name})",
        episodes=episodes,
        acknowledged_writes_checked=len(acked),
        refused_writes_checked=len(refused),
        log_size=head["size"],
        message=sorted(messages)[0],
    )

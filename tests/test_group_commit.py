"""Group commit: concurrent writes get distinct receipts, every acknowledged write survives a
SIGKILL, and the writer really commits several transactions per fsync."""

import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from conftest import Server, new_uuid
from signing import Signer

from ledger.config import LedgerConfig
from ledger.errors import LedgerError, UnknownReferenceError
from ledger.genesis import KeySpec, init
from ledger.service import Ledger

THREADS = 32
PER_THREAD = 15


def test_acknowledged_writes_survive_sigkill(fresh_server: Server) -> None:
    server = fresh_server
    problem = new_uuid()
    response = server.client("admin").post(
        "/problem", {"uuid": problem, "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
    )
    assert response.status_code == 201, response.text

    lock = threading.Lock()
    acked: dict[str, int] = {}  # data uuid -> receipt seq, for every 201 received
    errors: list[str] = []  # anything but a 201 before the kill
    finished = 0  # threads done with their PER_THREAD required writes
    kill_now = threading.Event()
    killed = threading.Event()

    def write_until_killed() -> None:
        nonlocal finished
        client = server.client("viewer")
        written = 0
        while True:  # until the server is gone
            data = new_uuid()
            try:
                response = client.post("/data", {"uuid": data, "problems": problem})
            except requests.RequestException as e:
                if not killed.is_set():
                    with lock:
                        errors.append(f"{data}: {e!r}")
                    kill_now.set()  # no point in waiting for the others
                return
            if response.status_code == 201:
                with lock:
                    acked[data] = response.json()["receipt"]["seq"]
            elif not killed.is_set():
                with lock:
                    errors.append(f"{data}: {response.status_code} {response.text}")
            written += 1
            if written == PER_THREAD:
                with lock:
                    finished += 1
                    if finished == THREADS:
                        kill_now.set()  # the last required ack: kill now, with others still writing

    threads = [threading.Thread(target=write_until_killed) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    assert kill_now.wait(timeout=120), "writers stalled"
    killed.set()  # from here on, failures are the kill's doing
    server.stop(signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    assert not errors, f"{len(errors)} writes failed before the kill, first: {errors[0]}"
    assert len(acked) >= THREADS * PER_THREAD
    seqs = sorted(acked.values())
    assert len(set(seqs)) == len(seqs), "two acknowledged writes share a receipt seq"
    assert seqs[0] >= 2  # after genesis (0) and the problem (1)

    server.start()
    head = server.head()
    assert head["size"] >= seqs[-1] + 1, (head, seqs[-1])

    def lost(item: tuple[str, int]) -> str | None:
        data, seq = item
        response = reader.get(f"/data/{data}")
        if response.status_code != 200 or response.json()["problems"] != [problem]:
            return f"data {data} (receipt seq {seq}): {response.status_code} {response.text}"
        return None

    reader = server.client("viewer")
    missing = [m for m in map(lost, sorted(acked.items(), key=lambda i: i[1])) if m is not None]
    assert not missing, f"{len(missing)} acknowledged writes lost after SIGKILL, first: {missing[0]}"

    # State was caught up with the whole log: every entry after the problem is one data write.
    listed = server.client("viewer").get("/data", problems=problem, limit="10000")
    assert listed.status_code == 200, listed.text
    uuids = [d["uuid"] for d in listed.json()["datas"]]
    assert set(acked) <= set(uuids)
    assert len(uuids) == head["size"] - 2


def test_group_commit_commits_several_writes_per_fsync(tmp_path: Path) -> None:
    config = LedgerConfig(data_dir=tmp_path / "data")
    init(config, specs=[KeySpec("admin", ("admin",)), KeySpec("viewer", ("viewer",))])
    admin = Signer.from_file(config.keys_dir / "admin.pem")
    viewer = Signer.from_file(config.keys_dir / "viewer.pem")
    groups: list[int] = []  # entries per synced log append, as the writer reports them
    ledger = Ledger.open(config, on_group=lambda count, seconds: groups.append(count))
    try:
        problem = str(uuid.uuid4())
        setup = admin.sign(
            "POST",
            "/problem",
            json={"uuid": problem, "workflow": str(uuid.uuid4()), "test_dataset": [], "size_train_dataset": 2},
        )
        assert ledger.write(setup).result(timeout=30).receipt.seq == 1
        assert groups == [1]
        groups.clear()
        size_before, _ = ledger.head()

        # 200 writes; every 10th names an unknown problem and must be rejected, appending nothing.
        total = 200
        bodies = [
            {"uuid": str(uuid.uuid4()), "problems": problem if i % 10 else str(uuid.uuid4())} for i in range(total)
        ]
        signed = [viewer.sign("POST", "/data", json=body) for body in bodies]
        start = threading.Barrier(THREADS)

        def write(indexes: range) -> list[tuple[int, int | LedgerError]]:
            start.wait(timeout=30)
            results: list[tuple[int, int | LedgerError]] = []
            for i in indexes:
                request = signed[i]
                try:
                    committed = ledger.write(request).result(timeout=30)
                    results.append((i, committed.receipt.seq))
                except LedgerError as e:
                    results.append((i, e))
            return results

        with ThreadPoolExecutor(THREADS) as pool:
            shares = [range(t, total, THREADS) for t in range(THREADS)]
            outcomes = [item for part in pool.map(write, shares) for item in part]
        groups_seen = list(groups)
        size_after, _ = ledger.head()
    finally:
        ledger.close()

    assert len(outcomes) == total
    accepted = {i: seq for i, seq in outcomes if isinstance(seq, int)}
    rejected = {i: e for i, e in outcomes if not isinstance(e, int)}
    assert sorted(rejected) == list(range(0, total, 10))
    assert all(isinstance(e, UnknownReferenceError) for e in rejected.values()), rejected
    assert sorted(accepted.values()) == list(range(size_before, size_before + len(accepted)))
    assert size_after == size_before + len(accepted)

    assert sum(groups_seen) == len(accepted), (sum(groups_seen), len(accepted))
    assert all(count >= 1 for count in groups_seen)
    assert len(groups_seen) < len(accepted), f"no group held more than one write: {groups_seen}"

    # Everything acknowledged is in the ledger after reopening it.
    reopened = Ledger.open(config)
    try:
        assert reopened.head()[0] == size_after
        for i in accepted:
            assert reopened.document("data", bodies[i]["uuid"])
    finally:
        reopened.close()

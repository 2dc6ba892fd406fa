"""The node and its witnesses: cosigned checkpoints served, refusing and down witnesses, a fork.

The checks use tests/c2sp_spec.py (the spec-only implementation), never the node's own code.
"""

import shutil
import time
from pathlib import Path

import c2sp_spec as spec
import pytest
import requests
from conftest import Server, WitnessServer, free_port, init_ledger, new_uuid, orchestrator

from witness.records import origin_hash


def problem(server: Server) -> None:
    body = {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
    response = server.client("admin").post("/problem", body)
    assert response.status_code == 201, response.text


def checkpoint(server: Server) -> str:
    response = server.client("auditor").get("/ledger/checkpoint")
    assert response.status_code == 200, response.text
    return response.text


def ready(server: Server) -> dict:
    response = requests.get(server.url + "/readyz", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(predicate, what: str, seconds: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def spec_cosigners(note: str, vkeys: list[str]) -> dict[str, int]:
    keys = [(name, public) for name, _, public in map(spec.parse_vkey, vkeys)]
    return spec.cosigners(note, keys)


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A ledger data dir, a copy of it made before any write (a fork to be), two witnesses."""
    data = tmp_path / "a" / "data"
    init_ledger(data)
    fork = tmp_path / "b" / "data"
    fork.parent.mkdir()
    shutil.copytree(data, fork)
    node_vkey = orchestrator("vkey", "--data-dir", str(data)).stdout.strip()
    vkey_file = tmp_path / "node.vkey"
    vkey_file.write_text(node_vkey + "\n")
    witnesses = []
    for name in ("w1", "w2"):
        directory = tmp_path / name
        vkey = orchestrator("witness", "init", "--dir", str(directory), "--name", f"witness.test/{name}").stdout
        (tmp_path / f"{name}.vkey").write_text(vkey)
        witnesses.append((WitnessServer(directory, [vkey_file]).start(), vkey.strip()))
    yield data, fork, node_vkey, witnesses
    for server, _ in witnesses:
        server.stop()


def node(data: Path, *witnesses: tuple[WitnessServer, str], quorum: int = 1, extra: tuple[str, ...] = ()) -> Server:
    args: list[str] = []
    for witness, vkey in witnesses:
        args += ["--witness", f"{witness.url}={vkey}"]
    return Server(data, free_port(), args=(*args, "--witness-quorum", str(quorum), *extra)).start()


def test_checkpoints_get_cosigned_and_are_served_with_their_cosignatures(setup) -> None:  # type: ignore[no-untyped-def]
    data, _, node_vkey, witnesses = setup
    server = node(data, *witnesses, quorum=2)
    try:
        vkeys = [vkey for _, vkey in witnesses]
        for _ in range(3):
            problem(server)
        size = server.head()["size"]
        note = wait_for(lambda: (n := checkpoint(server)) and spec.parse_checkpoint(n)[1] == size and n, "cosigned")
        name, _, public = spec.parse_vkey(node_vkey)
        text = spec.verify_log_signature(note, name, public)
        assert spec.parse_checkpoint(text)[1] == size
        assert set(spec_cosigners(note, vkeys)) == {"witness.test/w1", "witness.test/w2"}
        report = ready(server)["witnessing"]
        assert report["quorum"] == 2 and report["witnessed_size"] == size
        assert [w["state"] for w in report["witnesses"]] == ["ok", "ok"]
        metrics = requests.get(server.url + "/metrics", timeout=10).text
        assert 'orchestrator_witness_up{witness="witness.test/w1"} 1.0' in metrics
        assert f"orchestrator_witnessed_size {float(size)}" in metrics
        # The witness's own record is the same tree, with the node's signature and its cosignature.
        held = requests.get(f"{witnesses[0][0].url}/{origin_hash(name)}/checkpoint", timeout=10).text
        assert spec.split_note(held)[0] == text
        audit = orchestrator("audit", "--url", server.url, "--key-file", str(data / "keys" / "auditor.pem"),
                             "--witness", vkeys[0], "--witness", vkeys[1], "--quorum", "2", check=False)
        assert audit.returncode == 0, audit.stderr
        assert "cosigned by witness.test/w1, witness.test/w2" in audit.stdout
        # A write asking for a proof waits (up to --witness-timeout) for a cosigned checkpoint holding it.
        body = {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
        answer = server.client("admin").post("/problem?proof=1", body)
        assert answer.status_code == 201, answer.text
        proof = spec.parse_tlog_proof(answer.json()["receipt"]["proof"])
        assert set(spec_cosigners(proof.checkpoint, vkeys)) == {"witness.test/w1", "witness.test/w2"}
        admin_key = server.client("auditor").get("/nodes/admin").json()["public_key"]
        # As served, and as `jq -r .receipt.proof > FILE` saves it (one more line end).
        for name, ending in (("exact", ""), ("jq-r", "\n")):
            receipt = data.parent / f"{name}.tlog-proof"
            receipt.write_text(answer.json()["receipt"]["proof"] + ending)
            checked = orchestrator("verify-receipt", str(receipt), "--vkey", node_vkey, "--witness", vkeys[0],
                                   "--witness", vkeys[1], "--quorum", "2", "--public-key", admin_key, check=False)
            assert checked.returncode == 0, (name, checked.stderr)
            assert "cosigned by witness.test/w1, witness.test/w2" in checked.stdout
        size = server.head()["size"]
        wait_for(lambda: ready(server)["witnessing"]["witnessed_size"] == size, "the last write cosigned")
    finally:
        server.stop()
    # Offline: the data dir keeps the witnessed checkpoint.
    verify = orchestrator("verify", "--data-dir", str(data), "--witness", vkeys[0], "--quorum", "1", check=False)
    assert verify.returncode == 0, verify.stderr
    assert f"tree size {size} cosigned by witness.test/w1" in verify.stdout


def test_a_down_witness_shows_and_writes_go_on(setup) -> None:  # type: ignore[no-untyped-def]
    data, _, _, witnesses = setup
    (w1, v1), (w2, v2) = witnesses
    w2.stop()
    server = node(data, (w1, v1), (w2, v2), quorum=1)
    try:
        problem(server)
        size = server.head()["size"]
        wait_for(lambda: ready(server)["witnessing"]["witnessed_size"] == size, "w1's cosignature")
        report = wait_for(lambda: (r := ready(server)["witnessing"]) and r["witnesses"][1]["state"] == "down" and r,
                          "w2 down")
        assert "unreachable" in report["witnesses"][1]["detail"]
        problem(server)  # writes go on
        note = checkpoint(server)
        assert list(spec_cosigners(note, [v1, v2])) == ["witness.test/w1"]
        metrics = requests.get(server.url + "/metrics", timeout=10).text
        assert 'orchestrator_witness_up{witness="witness.test/w2"} 0.0' in metrics
        assert 'orchestrator_witness_failures_total{reason="down",witness="witness.test/w2"}' in metrics
        audit = orchestrator("audit", "--url", server.url, "--key-file", str(data / "keys" / "auditor.pem"),
                             "--witness", v1, "--witness", v2, "--quorum", "2", check=False)
        assert audit.returncode == 1 and "FAILED at checkpoint" in audit.stderr, audit.stderr
        # w2 comes back: it catches up with the latest checkpoint by itself.
        w2.start()
        size = server.head()["size"]
        wait_for(lambda: ready(server)["witnessing"]["witnesses"][1]["cosigned_size"] == size, "w2 back", 60)
    finally:
        server.stop()


def test_a_forked_node_is_refused_and_both_notes_are_kept_as_evidence(setup) -> None:  # type: ignore[no-untyped-def]
    data, fork, node_vkey, witnesses = setup
    (w1, v1), _ = witnesses
    first = node(data, (w1, v1))
    try:
        for _ in range(3):
            problem(first)
        size = first.head()["size"]
        wait_for(lambda: ready(first)["witnessing"]["witnessed_size"] == size, "the first history cosigned")
        honest = checkpoint(first)
    finally:
        first.stop()
    second = node(fork, (w1, v1))  # the same genesis and node key, other writes
    try:
        for _ in range(5):
            problem(second)
        # (Its first checkpoints are smaller than the tree the witness holds: refused too, at once.)
        report = wait_for(lambda: (r := ready(second)["witnessing"]) and "answered 422" in (
            r["witnesses"][0]["detail"] or "") and r, "the witness's refusal of an inconsistent tree")
        assert report["witnesses"][0]["state"] == "refused" and report["witnessed_size"] is None
        forked_note = checkpoint(second)
        assert spec_cosigners(forked_note, [v1]) == {}  # served without any cosignature
    finally:
        second.stop()
    name, _, public = spec.parse_vkey(node_vkey)
    (held, refused), = [(p.read_text(), r.read_bytes()) for p, r in evidence(w1.directory, name)]
    assert held == honest
    refused_note = refused.decode().partition("\n\n")[2]
    # Both are signed by the node key, and they are different trees at the size the witness held.
    text_a = spec.verify_log_signature(held, name, public)
    text_b = spec.verify_log_signature(refused_note, name, public)
    assert refused.decode().startswith(f"old {size}\n")
    assert spec.parse_checkpoint(text_b)[1] > spec.parse_checkpoint(text_a)[1] == size
    verify = orchestrator("verify", "--data-dir", str(fork), "--witness", v1, check=False)
    assert verify.returncode == 1 and "FAILED at checkpoint" in verify.stderr, verify.stderr


def evidence(directory: Path, origin: str) -> list[tuple[Path, Path]]:
    kept = directory / "logs" / origin_hash(origin) / "evidence"
    return [(kept / f"{n}-held.note", kept / f"{n}-refused.txt")
            for n in sorted(int(p.name.split("-")[0]) for p in kept.glob("*-refused.txt"))]


def test_serve_refuses_a_quorum_above_its_witnesses_and_bad_witness_flags(tmp_path: Path) -> None:
    data = tmp_path / "data"
    vkey = "witness.test/w+00000000+BA" + "A" * 42
    bad = orchestrator("serve", "--data-dir", str(data), "--bind", f"127.0.0.1:{free_port()}", "--witness",
                       f"http://127.0.0.1:9={vkey}", check=False)
    assert bad.returncode == 2 and "key id does not match" in bad.stderr, bad.stderr
    from ledger.cosignature import WitnessKey
    from ledger.keys import new_private_key

    good = WitnessKey("witness.test/w", new_private_key().public_key()).vkey()
    over = orchestrator("serve", "--data-dir", str(data), "--bind", f"127.0.0.1:{free_port()}", "--witness",
                        f"http://127.0.0.1:9={good}", "--witness-quorum", "2", check=False)
    assert over.returncode == 2 and "--witness-quorum 2 is more than the 1 witness" in over.stderr, over.stderr
    alone = orchestrator("serve", "--data-dir", str(data), "--bind", f"127.0.0.1:{free_port()}",
                         "--witness-quorum", "1", check=False)
    assert alone.returncode == 2 and "--witness-quorum needs the witnesses" in alone.stderr, alone.stderr
    assert not data.exists()  # refused before anything was created
    audit = orchestrator("audit", "--quorum", "1", check=False)
    assert audit.returncode == 2 and "--quorum 1 needs at least 1 distinct --witness" in audit.stderr, audit.stderr

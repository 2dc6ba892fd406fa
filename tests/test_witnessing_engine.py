"""ledger/witnessing.py in one process: witnesses (witness.service) called directly, a log made by
the spec implementation (tests/c2sp_spec.py)."""

import time
from pathlib import Path

import c2sp_spec as spec
import pytest
from test_witness import FakeLog

from ledger import cosignature
from ledger.errors import IntegrityError
from ledger.witnessing import Reply, Unreachable, WitnessConfig, Witnessing
from witness.records import Records
from witness.server import init, load
from witness.service import Witness


def until(predicate, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Rig:
    def __init__(self, tmp_path: Path, names: tuple[str, ...] = ("w1", "w2")) -> None:
        self.log = FakeLog()
        self.log.append(b"genesis")
        self.witnesses: dict[str, Witness] = {}
        self.configs = []
        self.down: set[str] = set()
        for name in names:
            directory = tmp_path / name
            if not (directory / "name").exists():
                init(directory, f"w.test/{name}")
            witness = Witness(*load(directory), {self.log.origin: [self.log.key.public_key()]}, Records(directory))
            self.witnesses[f"http://{name}"] = witness
            self.configs.append(WitnessConfig(f"http://{name}", witness.key))
        self.path = tmp_path / "witnessed"

    def post(self, url: str, body: bytes) -> Reply:
        base = url.removesuffix("/add-checkpoint")
        if base in self.down:
            raise Unreachable("connection refused")
        answer = self.witnesses[base].add_checkpoint(body)
        return Reply(answer.status, answer.content_type, answer.body)

    def witnessing(self, quorum: int) -> Witnessing:
        return Witnessing(
            self.configs, quorum, latest=self.log.note,
            consistency=lambda a, b: spec.consistency(a, self.log.leaves[:b]),
            root=lambda n: spec.mth(self.log.leaves[:n]), post=self.post, path=self.path, interval=0.0,
            retry_max=0.05,
        )


def test_a_quorum_of_cosignatures_is_served_kept_and_found_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    witnessing = rig.witnessing(2).start()
    try:
        rig.log.append(b"a", b"b")
        witnessing.notify()
        until(lambda: witnessing.served_size() == 3, "both cosignatures at size 3")
        served = witnessing.served()
        assert served is not None
        vkeys = [c.key.vkey() for c in rig.configs]
        keys = [(n, p) for n, _, p in map(spec.parse_vkey, vkeys)]
        assert set(spec.cosigners(served, keys)) == {"w.test/w1", "w.test/w2"}
        assert spec.verify_log_signature(served, rig.log.origin, rig.log.key.public_key())
        future = witnessing.covering(4)
        assert not future.done()
        rig.log.append(b"c", b"d")
        witnessing.notify()
        assert spec.parse_checkpoint(future.result(timeout=30))[1] == 5
        assert rig.path.read_text() == witnessing.served()
    finally:
        witnessing.close()
    again = rig.witnessing(2)  # a restart: the kept note is served at once
    assert again.served() == rig.path.read_text() and again.served_size() == 5


def test_down_and_refusing_witnesses_are_reported_and_caught_up(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.down.add("http://w2")
    witnessing = rig.witnessing(1).start()
    try:
        until(lambda: witnessing.status["w.test/w2"].state == "down", "w2 down")
        until(lambda: witnessing.served_size() == 1, "w1's cosignature")
        assert witnessing.status["w.test/w2"].failures["down"] >= 1
        rig.down.clear()
        rig.log.append(b"a")
        witnessing.notify()
        until(lambda: witnessing.status["w.test/w2"].cosigned_size == 2, "w2 caught up")
        report = witnessing.report()
        assert report["witnessed_size"] == 2 and report["quorum"] == 1
    finally:
        witnessing.close()


def test_a_witness_holding_a_bigger_tree_and_a_bad_cosignature_are_refusals(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ("w1",))
    rig.log.append(b"a", b"b", b"c")
    assert rig.post("http://w1/add-checkpoint", rig.log.body(0)).status == 200
    rig.log.leaves = rig.log.leaves[:2]  # the log "lost" entries
    witnessing = rig.witnessing(1).start()
    try:
        until(lambda: witnessing.status["w.test/w1"].state == "refused", "the refusal")
        assert "beyond this log's 2" in (witnessing.status["w.test/w1"].detail or "")
    finally:
        witnessing.close()

    other = Rig(tmp_path / "other", ("w1",))
    impostor = cosignature.WitnessKey("w.test/w1", FakeLog().key.public_key())  # a key the witness does not hold
    other.configs = [WitnessConfig("http://w1", impostor)]
    witnessing = other.witnessing(1).start()
    try:
        until(lambda: witnessing.status["w.test/w1"].state == "refused", "the refusal")
        assert "without a cosignature by its key" in (witnessing.status["w.test/w1"].detail or "")
        assert witnessing.served() is None
    finally:
        witnessing.close()


def test_a_kept_note_of_another_tree_is_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ("w1",))
    witnessing = rig.witnessing(1).start()
    until(lambda: witnessing.served_size() == 1, "cosigned")
    witnessing.close()
    rig.log.leaves = [spec.leaf(b"another genesis")]
    with pytest.raises(IntegrityError, match="not this log's tree"):
        rig.witnessing(1)


def test_witness_configs_parse() -> None:
    key = FakeLog().key
    vkey = cosignature.WitnessKey("w.test/x", key.public_key()).vkey()
    config = WitnessConfig.parse(f"http://127.0.0.1:9/={vkey}")
    assert config.url == "http://127.0.0.1:9" and config.key.name == "w.test/x"
    for bad in ("127.0.0.1:9=" + vkey, "http://x", f"http://x={vkey[:-2]}"):
        with pytest.raises(ValueError):
            WitnessConfig.parse(bad)

"""The witness (witness/), held to C2SP tlog-witness and tlog-cosignature by tests/c2sp_spec.py.

The logs here are made by the spec-only implementation (its own notes, tree and proofs); the
witness's answers are checked with it too. Plus C2SP's published examples as vectors.
"""

import base64
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import c2sp_spec as spec
import pytest
import requests
from conftest import WitnessServer, free_port
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import cosignature, note, tlog_witness
from ledger.errors import IntegrityError, ValidationError
from witness.records import RecordError, Records, origin_hash
from witness.server import init, load
from witness.service import Witness

ORIGIN = "example.test/log"


class FakeLog:
    """A log made with the spec implementation: entries, a key, signed checkpoints."""

    def __init__(self, origin: str = ORIGIN, key: Ed25519PrivateKey | None = None) -> None:
        self.origin = origin
        self.key = key or Ed25519PrivateKey.generate()
        self.leaves: list[bytes] = []

    def append(self, *datas: bytes) -> None:
        self.leaves += [spec.leaf(d) for d in datas]

    def note(self, size: int | None = None, extensions: tuple[str, ...] = ("state 00",)) -> str:
        size = len(self.leaves) if size is None else size
        text = spec.checkpoint_text(self.origin, size, spec.mth(self.leaves[:size]), *extensions)
        return spec.sign_note(text, self.origin, self.key)

    def body(self, old: int, size: int | None = None) -> bytes:
        size = len(self.leaves) if size is None else size
        proof = [] if old in (0, size) else spec.consistency(old, self.leaves[:size])
        return spec.add_checkpoint_body(old, proof, self.note(size))


@pytest.fixture
def witness_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "w"
    init(directory, "witness.test/w1")
    return directory


def make(directory: Path, log: FakeLog, clock: float | None = None) -> Witness:
    name, key = load(directory)
    return Witness(name, key, {log.origin: [log.key.public_key()]}, Records(directory),
                   **({} if clock is None else {"clock": lambda: clock}))


def spec_cosigners(witness: Witness, log_note: str, answer: bytes) -> dict[str, int]:
    name, kind, public = spec.parse_vkey(witness.key.vkey())
    assert kind == 4
    return spec.cosigners(log_note + answer.decode(), [(name, public)])


def test_cosigns_the_first_checkpoint_then_only_consistent_ones(witness_dir: Path) -> None:
    log = FakeLog()
    log.append(b"a", b"b", b"c")
    witness = make(witness_dir, log)
    answer = witness.add_checkpoint(log.body(0))
    assert answer.status == 200, answer.body
    assert answer.body.startswith("\u2014 witness.test/w1 ".encode()) and answer.body.endswith(b"\n")
    assert list(spec_cosigners(witness, log.note(), answer.body)) == ["witness.test/w1"]
    log.append(b"d", b"e")
    answer = witness.add_checkpoint(log.body(3))
    assert answer.status == 200, answer.body
    assert spec_cosigners(witness, log.note(), answer.body)["witness.test/w1"] > 0
    # the same size again (same root): cosigned again
    assert witness.add_checkpoint(log.body(5)).status == 200


def test_status_codes_follow_the_spec(witness_dir: Path) -> None:
    log = FakeLog()
    log.append(*[bytes([i]) for i in range(7)])
    witness = make(witness_dir, log)
    assert witness.add_checkpoint(log.body(0, 4)).status == 200

    unknown = FakeLog("other.test/log")
    unknown.append(b"x")
    assert witness.add_checkpoint(unknown.body(0)).status == 404

    impostor = FakeLog(ORIGIN)  # the right origin, another key
    impostor.append(b"x")
    assert witness.add_checkpoint(impostor.body(0)).status == 403
    good = log.body(4)
    forged = good.replace(b"\n7\n", b"\n8\n")  # the signature no longer matches the text
    assert witness.add_checkpoint(forged).status == 403

    assert witness.add_checkpoint(spec.add_checkpoint_body(5, [], log.note(4))).status == 400  # old > size
    assert witness.add_checkpoint(b"nonsense").status == 400
    assert witness.add_checkpoint(b"old 01\n\n" + log.note().encode()).status == 400
    assert witness.add_checkpoint(b"old 0\n\n\n" + log.note().encode()).status == 400  # no origin line

    conflict = witness.add_checkpoint(log.body(2))
    assert conflict.status == 409
    assert conflict.content_type == "text/x.tlog.size" and conflict.body == b"4\n"

    proof = spec.consistency(4, log.leaves)
    bad = [proof[0][::-1], *proof[1:]]
    assert witness.add_checkpoint(spec.add_checkpoint_body(4, bad, log.note())).status == 422
    other = FakeLog(ORIGIN, log.key)  # same key, another history: the same size, another root
    other.append(*[bytes([i + 100]) for i in range(4)])
    assert witness.add_checkpoint(spec.add_checkpoint_body(4, [], other.note())).status == 422

    fresh = FakeLog("empty.test/log")
    empty_witness = Witness(*load(witness_dir), {fresh.origin: [fresh.key.public_key()]}, Records(witness_dir))
    wrong_empty = spec.sign_note(spec.checkpoint_text(fresh.origin, 0, b"\x01" * 32), fresh.origin, fresh.key)
    assert empty_witness.add_checkpoint(spec.add_checkpoint_body(0, [], wrong_empty)).status == 422
    fresh.append(b"q")
    assert empty_witness.add_checkpoint(spec.add_checkpoint_body(0, [b"\x00" * 32], fresh.note())).status == 422
    # none of the refusals moved the record
    assert witness.add_checkpoint(log.body(4)).status == 200


def test_refused_inconsistent_checkpoints_are_kept_as_evidence(witness_dir: Path) -> None:
    log = FakeLog()
    log.append(b"a", b"b")
    witness = make(witness_dir, log)
    assert witness.add_checkpoint(log.body(0)).status == 200
    held = witness.held(ORIGIN)
    fork = FakeLog(ORIGIN, log.key)
    fork.append(b"a", b"z", b"y")
    refused = spec.add_checkpoint_body(2, spec.consistency(2, fork.leaves), fork.note())
    assert witness.add_checkpoint(refused).status == 422
    ((kept_held, kept_refused),) = witness.records.evidence(ORIGIN)
    assert held is not None and kept_held == held.note and kept_refused == refused


def test_the_record_survives_a_restart_and_a_damaged_one_stops_the_witness(witness_dir: Path) -> None:
    log = FakeLog()
    log.append(b"a", b"b", b"c")
    assert make(witness_dir, log).add_checkpoint(log.body(0)).status == 200
    again = make(witness_dir, log)
    conflict = again.add_checkpoint(log.body(0))
    assert (conflict.status, conflict.body) == (409, b"3\n")
    fork = FakeLog(ORIGIN, log.key)
    fork.append(b"x", b"y", b"z", b"w")
    forked = spec.add_checkpoint_body(3, spec.consistency(3, fork.leaves), fork.note())
    assert again.add_checkpoint(forked).status == 422
    record = witness_dir / "logs" / origin_hash(ORIGIN) / "checkpoint"
    # The record holds the log's signature and ours; it is what the monitoring URL serves.
    text, lines = spec.split_note(record.read_text())
    assert [name for name, _ in lines] == [ORIGIN, "witness.test/w1"]
    record.write_bytes(record.read_bytes()[:-10])
    with pytest.raises(RecordError):
        make(witness_dir, log)


def test_timestamps_never_go_back(witness_dir: Path) -> None:
    log = FakeLog()
    log.append(b"a")
    assert make(witness_dir, log, clock=2_000_000_000).add_checkpoint(log.body(0)).status == 200
    log.append(b"b")
    witness = make(witness_dir, log, clock=1_000_000_000)  # the clock stepped back
    answer = witness.add_checkpoint(log.body(1))
    assert spec_cosigners(witness, log.note(), answer.body)["witness.test/w1"] == 2_000_000_000


def test_check_and_update_are_atomic(witness_dir: Path) -> None:
    """Many clients racing from the same old size: exactly one wins each size, none rolls back."""
    log = FakeLog()
    log.append(*[bytes([i]) for i in range(40)])
    witness = make(witness_dir, log)
    assert witness.add_checkpoint(log.body(0, 1)).status == 200
    statuses: list[int] = []

    def race(size: int) -> None:
        statuses.append(witness.add_checkpoint(log.body(1, size)).status)

    threads = [threading.Thread(target=race, args=(size,)) for size in range(2, 40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) == 1 and statuses.count(409) == len(threads) - 1
    held = witness.held(ORIGIN)
    assert held is not None and held.head.size >= 2


def test_many_signatures_and_unknown_ones_are_ignored(witness_dir: Path) -> None:
    log = FakeLog()
    log.append(b"a")
    stranger = Ed25519PrivateKey.generate()
    signed = log.note()
    text, _ = spec.split_note(signed)
    extra = spec.sign_note(text, "someone.else/key", stranger).rpartition("\n\n")[2]
    body = spec.add_checkpoint_body(0, [], signed + extra)
    assert make(witness_dir, log).add_checkpoint(body).status == 200


# -- the published examples -------------------------------------------------------------------


def test_signed_note_example_verifies() -> None:
    """c2sp.org/signed-note's example verifier key and note."""
    vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    signed = (
        "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7"
        "Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
    )
    from ledger.checkpoint import parse_vkey

    name, public = parse_vkey(vkey)
    parsed = note.parse(signed)
    note.verify_ed25519(parsed, name, public)
    tampered = note.parse(signed.replace("example", "exemple", 1))
    with pytest.raises(IntegrityError):
        note.verify_ed25519(tampered, name, public)


def test_tlog_witness_example_request_parses() -> None:
    """c2sp.org/tlog-witness's example add-checkpoint body (its signatures are by keys not given)."""
    body = (
        "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
        "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\n"
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
        "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9n"
        "To+zyWE+xeMcTOAYQ8=\n"
        "\u2014 example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUX"
        "TS5Rovnzv++qbSzm9Q=\n"
    ).encode()
    request = tlog_witness.parse_request(body)
    assert request.old == 20852014 and len(request.proof) == 4
    parsed = note.parse(request.note)
    head = note.parse_checkpoint(parsed.text)
    assert (head.origin, head.size) == ("example.com/behind-the-sofa", 20852163)
    assert len(parsed.signatures) == 2
    with pytest.raises(ValidationError):
        tlog_witness.parse_request(b"old 1\n" + b"AAAA\n" * 64 + b"\n" + request.note.encode())


def test_cosignature_vkeys_and_timestamps_of_other_implementations() -> None:
    """A cosignature/v1 vkey and a cosignature's timestamp from transparency-dev/formats' tests."""
    key = cosignature.parse_vkey("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
    assert key.name == "remora.n621.de" and key.key_id.hex() == "da77ade7"
    blob = base64.b64decode(
        "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="
    )
    assert int.from_bytes(blob[4:12], "big") == 1727964367
    with pytest.raises(IntegrityError):  # an Ed25519 (type 01) key is no cosignature key
        cosignature.parse_vkey("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")


def test_our_cosignatures_verify_with_the_spec_implementation() -> None:
    key = Ed25519PrivateKey.generate()
    text = spec.checkpoint_text("o.test/x", 3, b"\x07" * 32, "state ab")
    line = cosignature.cosign(text, "w.test/a", key, 1700000000)
    blob = base64.b64decode(line.line().split(" ")[2])
    assert spec.cosignature_time(text, blob, "w.test/a", key.public_key()) == 1700000000
    assert spec.vkey("w.test/a", 4, key.public_key()) == cosignature.WitnessKey("w.test/a", key.public_key()).vkey()


# -- over HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def served(witness_dir: Path, tmp_path: Path) -> Iterator[tuple[WitnessServer, FakeLog]]:
    log = FakeLog()
    vkey_file = tmp_path / "log.vkey"
    vkey_file.write_text(spec.vkey(log.origin, 1, log.key.public_key()) + "\n")
    server = WitnessServer(witness_dir, [vkey_file]).start()
    yield server, log
    server.stop()


def test_the_protocol_over_http_and_across_a_restart(served: tuple[WitnessServer, FakeLog]) -> None:
    server, log = served
    log.append(b"a", b"b", b"c")
    post = server.url + "/add-checkpoint"
    answer = requests.post(post, data=log.body(0), timeout=10)
    assert answer.status_code == 200, answer.text
    name, _, public = spec.parse_vkey(served_vkey(server))
    assert name in spec.cosigners(log.note() + answer.text, [(name, public)])
    monitored = requests.get(f"{server.url}/{origin_hash(ORIGIN)}/checkpoint", timeout=10)
    assert monitored.status_code == 200 and spec.parse_checkpoint(spec.split_note(monitored.text)[0])[1] == 3
    assert requests.get(f"{server.url}/{'0' * 64}/checkpoint", timeout=10).status_code == 404
    server.stop()
    server.start()
    conflict = requests.post(post, data=log.body(0), timeout=10)
    assert conflict.status_code == 409
    assert conflict.headers["Content-Type"] == "text/x.tlog.size" and conflict.text == "3\n"
    log.append(b"d")
    assert requests.post(post, data=log.body(3), timeout=10).status_code == 200
    assert requests.post(post, data=b"x" * 200_000, timeout=10).status_code == 413


def served_vkey(server: WitnessServer) -> str:
    return requests.get(server.url + "/", timeout=10).text.split("\n")[1].removeprefix("vkey ")


def test_a_second_process_cannot_take_the_directory(served: tuple[WitnessServer, FakeLog], tmp_path: Path) -> None:
    server, _ = served
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "witness", "serve", "--dir", str(server.directory), "--bind",
         f"127.0.0.1:{free_port()}", "--log", str(tmp_path / "log.vkey")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "in use by another witness" in result.stderr


def test_a_note_with_16_post_quantum_sized_signatures_is_accepted(served: tuple[WitnessServer, FakeLog]) -> None:
    """signed-note: verifiers "MUST accept at least up to 16 signatures. Remember that post-quantum
    signatures can be up to nearly 5kB in size." Fifteen such lines by unknown keys, and the log's."""
    server, log = served
    log.append(b"a")
    signed = log.note()
    blob = base64.b64encode(bytes(4 + 4627)).decode()  # a key id and an ML-DSA-87-sized signature
    others = "".join(f"\u2014 pq{i}.example/key {blob}\n" for i in range(15))
    answer = requests.post(server.url + "/add-checkpoint", data=spec.add_checkpoint_body(0, [], signed + others),
                           timeout=10)
    assert answer.status_code == 200, answer.text


def test_a_key_name_with_a_unicode_space_makes_the_note_malformed(served: tuple[WitnessServer, FakeLog]) -> None:
    """signed-note: "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus
    (U+002B) characters." Such a line beside the log's valid signature: a malformed body, not cosigned."""
    server, log = served
    log.append(b"a")
    text, _ = spec.split_note(log.note())
    stranger = spec.sign_note(text, "someone.else/key", Ed25519PrivateKey.generate()).rpartition("\n\n")[2]
    for space in ("\u00a0", "\u2003", "\u3000"):
        body = spec.add_checkpoint_body(0, [], log.note() + stranger.replace("else/", f"else{space}/"))
        answer = requests.post(server.url + "/add-checkpoint", data=body, timeout=10)
        assert answer.status_code == 400, (space, answer.status_code, answer.text)
    assert requests.post(server.url + "/add-checkpoint", data=log.body(0), timeout=10).status_code == 200


def test_a_witness_name_with_a_control_character_is_refused(tmp_path: Path) -> None:
    """The name is the key name of every cosignature line, and signed-note says "Signed notes MUST
    NOT contain any ASCII control characters (those below U+0020) other than newline"."""
    for name in ("w.test/a\x01b", "w.test/\x1fb"):
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", "witness", "init", "--dir", str(tmp_path / "w"), "--name", name],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 2 and "witness name" in result.stderr, (name, result.stdout, result.stderr)
    assert not (tmp_path / "w" / "witness.pem").exists()

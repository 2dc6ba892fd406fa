"""Receipts that prove themselves (C2SP tlog-proof@v1): ?proof=1, Prefer: return=proof,
GET /ledger/receipts/{seq}, and `orchestrator verify-receipt` offline.

The receipts are checked by tests/c2sp_spec.py (the spec-only implementation) as well as by the
command. The server here has no witnesses; tests/test_witnessing.py has a cosigned receipt.
"""

import base64
import json
from pathlib import Path

import c2sp_spec as spec
import pytest
from conftest import Server, new_uuid, orchestrator

from ledger import keys


def problem_body() -> dict:
    return {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}


@pytest.fixture(scope="module")
def vkey(server: Server) -> str:
    return server.client("auditor").get("/ledger/key").text.strip()


def check_with_spec(text: str, vkey: str) -> tuple[spec.TlogProof, dict]:
    """The receipt verifies by the spec alone: node signature, leaf from extra, inclusion proof."""
    parsed = spec.parse_tlog_proof(text)
    name, kind, public = spec.parse_vkey(vkey)
    assert kind == 1
    checkpoint_text = spec.verify_log_signature(parsed.checkpoint, name, public)
    origin, size, root = spec.parse_checkpoint(checkpoint_text)
    assert origin == name and parsed.extra is not None
    assert spec.root_from_inclusion(parsed.index, size, spec.leaf(parsed.extra), parsed.proof) == root
    return parsed, json.loads(parsed.extra)


def test_a_write_asking_for_a_proof_gets_a_receipt_that_verifies_by_the_spec(server: Server, vkey: str) -> None:
    body = problem_body()
    answer = server.client("admin").post("/problem?proof=1", body)
    assert answer.status_code == 201, answer.text
    receipt = answer.json()["receipt"]
    parsed, entry = check_with_spec(receipt["proof"], vkey)
    assert parsed.index == receipt["seq"] == entry["seq"]
    assert spec.leaf(parsed.extra).hex() == receipt["hash"]
    assert json.loads(base64.b64decode(entry["body"])) == body and entry["key"] == "admin"


def test_prefer_return_proof_and_the_receipts_endpoint(server: Server, vkey: str, tmp_path: Path) -> None:
    admin = server.client("admin")
    answer = admin.request("POST", "/problem", json=problem_body(), headers={"Prefer": "return=proof"})
    assert answer.status_code == 201 and answer.headers["Preference-Applied"] == "return=proof"
    seq = answer.json()["receipt"]["seq"]
    check_with_spec(answer.json()["receipt"]["proof"], vkey)
    plain = admin.post("/problem", problem_body()).json()["receipt"]
    assert set(plain) == {"seq", "hash"}

    later = server.client("auditor").get(f"/ledger/receipts/{seq}")
    assert later.status_code == 200 and later.headers["Content-Disposition"].endswith(f'"{seq}.tlog-proof"')
    parsed, _ = check_with_spec(later.text, vkey)
    assert parsed.index == seq
    assert server.client("auditor").get("/ledger/receipts/999999999").status_code == 404
    assert server.client("viewer").get(f"/ledger/receipts/{seq}").status_code == 403


def test_a_bad_proof_value_is_refused_before_anything_is_written(server: Server) -> None:
    size = server.head()["size"]
    answer = server.client("admin").post("/problem?proof=maybe", problem_body())
    assert answer.status_code == 400 and "proof" in answer.json()["description"]
    assert server.head()["size"] == size


def test_verify_receipt_offline(server: Server, vkey: str, tmp_path: Path) -> None:
    auditor, admin = server.client("auditor"), server.client("admin")
    seq = admin.post("/problem?proof=1", problem_body()).json()["receipt"]["seq"]
    receipt = tmp_path / f"{seq}.tlog-proof"
    receipt.write_text(auditor.get(f"/ledger/receipts/{seq}").text)
    genesis = tmp_path / "0.tlog-proof"
    genesis.write_text(auditor.get("/ledger/receipts/0").text)
    (tmp_path / "node.vkey").write_text(vkey + "\n")

    ok = orchestrator("verify-receipt", str(receipt), "--vkey", str(tmp_path / "node.vkey"), "--genesis",
                      str(genesis), check=False)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"ok: entry {seq} (POST /problem signed by 'admin') is in the tree of size ")
    raw_genesis = tmp_path / "genesis.json"
    raw_genesis.write_bytes(spec.parse_tlog_proof(genesis.read_text()).extra or b"")
    assert orchestrator("verify-receipt", str(receipt), "--vkey", vkey, "--genesis", str(raw_genesis),
                        check=False).returncode == 0
    assert orchestrator("verify-receipt", str(genesis), "--vkey", vkey, check=False).returncode == 0

    def failed(text: str, *extra: str) -> str:
        bad = tmp_path / "bad.tlog-proof"
        bad.write_text(text)
        result = orchestrator("verify-receipt", str(bad), "--vkey", vkey, "--genesis", str(genesis), *extra,
                              check=False)
        assert result.returncode == 1, (result.stdout, result.stderr)
        return result.stderr

    text = receipt.read_text()
    lines = text.split("\n")
    proof_at = 3  # header, extra, index, then the first proof hash
    flipped = base64.b64encode(bytes([base64.b64decode(lines[proof_at])[0] ^ 1]) +
                               base64.b64decode(lines[proof_at])[1:]).decode()
    assert "FAILED at inclusion proof" in failed("\n".join([*lines[:proof_at], flipped, *lines[proof_at + 1:]]))
    entry = json.loads(spec.parse_tlog_proof(text).extra or b"")
    entry["target"] = entry["target"].replace("/problem", "/problems")
    forged = base64.b64encode(json.dumps(entry, separators=(",", ":"), sort_keys=True).encode()).decode()
    assert "FAILED at inclusion proof" in failed("\n".join([lines[0], "extra " + forged, *lines[2:]]))
    note_at = text.index("\n\n") + 2
    size_line = text[note_at:].split("\n")[1]
    resized = text[:note_at] + text[note_at:].replace(f"\n{size_line}\n", f"\n{int(size_line) + 1}\n", 1)
    assert "FAILED at checkpoint" in failed(resized)
    stranger = spec.vkey("w.test/x", 4, keys.new_private_key().public_key())
    assert "FAILED at cosignatures" in failed(text, "--witness", stranger, "--quorum", "1")


def test_a_missing_key_or_genesis_file_is_said_to_be_missing(server: Server, vkey: str, tmp_path: Path) -> None:
    receipt = tmp_path / "0.tlog-proof"
    receipt.write_text(server.client("auditor").get("/ledger/receipts/0").text)
    missing = str(tmp_path / "nofile")
    for args, said in (
        (("--vkey", missing), "no file of that name"),
        (("--vkey", vkey, "--genesis", missing), f"cannot read --genesis {missing}"),
        (("--vkey", vkey, "--witness", missing), "no file of that name"),
    ):
        result = orchestrator("verify-receipt", str(receipt), *args, check=False)
        assert result.returncode == 2 and said in result.stderr, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_key_registered_later_needs_its_public_key(server: Server, vkey: str, tmp_path: Path) -> None:
    admin, auditor = server.client("admin"), server.client("auditor")
    name = f"late-{new_uuid()[:8]}"
    key = keys.new_private_key()
    public = keys.public_b64(key)
    assert admin.post("/nodes", {"key_id": name, "public_key": public, "roles": ["admin"]}).status_code == 201
    from orchestrator.client import Client

    late = Client(server.url, keys.private_pem(key), name)
    seq = late.post("/problem?proof=1", problem_body()).json()["receipt"]["seq"]
    receipt = tmp_path / "late.tlog-proof"
    receipt.write_text(auditor.get(f"/ledger/receipts/{seq}").text)
    genesis = tmp_path / "0.tlog-proof"
    genesis.write_text(auditor.get("/ledger/receipts/0").text)
    missing = orchestrator("verify-receipt", str(receipt), "--vkey", vkey, "--genesis", str(genesis), check=False)
    assert missing.returncode == 1 and "not in the genesis" in missing.stderr
    given = orchestrator("verify-receipt", str(receipt), "--vkey", vkey, "--public-key", public, check=False)
    assert given.returncode == 0, given.stderr
    wrong = keys.public_b64(keys.new_private_key())
    refused = orchestrator("verify-receipt", str(receipt), "--vkey", vkey, "--public-key", wrong, check=False)
    assert refused.returncode == 1 and "FAILED at signature" in refused.stderr


def test_a_node_key_line_that_does_not_verify_rejects_the_receipt(server: Server, vkey: str, tmp_path: Path) -> None:
    """signed-note: "If the key name and ID match a known key, verifiers MUST verify the signature.
    If a signature from a known key fails to verify, clients SHOULD reject the whole note." A line
    with the node's name and key id but a cut-short signature, after the node's valid one."""
    seq = server.client("admin").post("/problem?proof=1", problem_body()).json()["receipt"]["seq"]
    text = server.client("auditor").get(f"/ledger/receipts/{seq}").text
    name, kind, public = spec.parse_vkey(vkey)
    short = base64.b64encode(spec.key_id(name, kind, public) + bytes(32)).decode()
    receipt = tmp_path / "short.tlog-proof"
    receipt.write_text(text + f"\u2014 {name} {short}\n")
    genesis = tmp_path / "0.tlog-proof"
    genesis.write_text(server.client("auditor").get("/ledger/receipts/0").text)
    result = orchestrator("verify-receipt", str(receipt), "--vkey", vkey, "--genesis", str(genesis), check=False)
    assert result.returncode == 1 and "FAILED at checkpoint" in result.stderr, (result.stdout, result.stderr)

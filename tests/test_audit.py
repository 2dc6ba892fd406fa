"""`orchestrator audit`: verifying a running node over HTTP with an auditor key."""

import base64
import http.server
import json
import os
import re
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import plyvel  # type: ignore[import-untyped]
import pytest
from conftest import Server, free_port, init_ledger, new_uuid, orchestrator

from ledger import checkpoint, keys

SUMMARY = re.compile(r"^ok: (\d+) entries, \d+ signers, tree size (\d+), root (\S+), state digest ([0-9a-f]{64}), ")


def audit(server_url: str, key_file: Path, key_id: str, *extra: str):
    return orchestrator(
        "audit", "--url", server_url, "--key-file", str(key_file), "--key-id", key_id, *extra, check=False, timeout=60
    )


def _ok(result) -> re.Match:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stdout.splitlines()
    match = SUMMARY.match(line)
    assert match, line
    return match


def _failed(result, pattern: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert re.search(pattern, result.stderr), result.stderr
    assert not result.stdout.startswith("ok"), result.stdout


def _write(server: Server, count: int) -> None:
    admin = server.client("admin")
    for _ in range(count):
        response = admin.post(
            "/problem", {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
        )
        assert response.status_code == 201, response.text


def _edit_line(note: str, index: int, edit) -> str:
    lines = note.split("\n")
    lines[index] = edit(lines[index])
    return "\n".join(lines)


def _flip_root(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[3] ^= 0x20
    return base64.b64encode(bytes(raw)).decode()


def test_audit_saves_and_then_trusts_a_checkpoint(fresh_server: Server, tmp_path: Path) -> None:
    server = fresh_server
    key = server.data_dir / "keys" / "auditor.pem"
    _write(server, 4)
    saved = tmp_path / "trusted.txt"
    first = _ok(audit(server.url, key, "auditor", "--save-checkpoint", str(saved)))
    head = server.head()
    assert int(first[1]) == int(first[2]) == head["size"] == 5
    assert first[4] == head["state_digest"]
    served = server.client("auditor").get("/ledger/checkpoint")
    assert served.status_code == 200 and saved.read_text() == served.text
    assert saved.read_text().split("\n")[1:3] == ["5", first[3]]

    _write(server, 3)
    latest = tmp_path / "latest.txt"
    second = _ok(
        audit(server.url, key, "auditor", "--trusted-checkpoint", str(saved), "--save-checkpoint", str(latest))
    )
    assert int(second[2]) == 8 > int(first[2])
    assert second[4] == server.head()["state_digest"]
    assert latest.read_text().split("\n")[1] == "8"
    # The later checkpoint is also trusted (equal sizes), and the earlier one still is.
    _ok(audit(server.url, key, "auditor", "--trusted-checkpoint", str(latest)))
    # The everything key holds the auditor role too.
    _ok(
        audit(server.url, server.data_dir / "keys" / "everything.pem", "everything", "--trusted-checkpoint", str(saved))
    )

    def forged(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    note = saved.read_text()
    node = keys.load_private_key(server.data_dir / "node.pem")
    body = checkpoint.parse_body(note.partition("\n\n")[0] + "\n")
    cases = {
        # Edited after saving: the node's signature no longer holds.
        "root_edited": _edit_line(note, 2, _flip_root),
        "size_edited": _edit_line(note, 1, lambda s: "4"),
        "state_edited": _edit_line(note, 3, lambda s: s[:-1] + ("0" if s[-1] != "0" else "1")),
        "signature_dropped": note.partition("\n\n")[0] + "\n",
        # Signed with the node's own key, but not a prefix of this ledger's history.
        "signed_wrong_root": checkpoint.sign(
            checkpoint.Checkpoint(body.origin, body.size, bytes(32), body.state_digest), node
        ),
        "signed_beyond_ledger": checkpoint.sign(
            checkpoint.Checkpoint(body.origin, 100, body.root, body.state_digest), node
        ),
    }
    other = tmp_path / "other"
    init_ledger(other, {"auditor": "auditor"})
    db = plyvel.DB(str(other / "log"))
    try:
        cases["other_ledger"] = db.get(b"checkpoint").decode()
    finally:
        db.close()
    for name, text in cases.items():
        assert text != note, name
        result = audit(server.url, key, "auditor", "--trusted-checkpoint", str(forged(name, text)))
        _failed(result, r"^FAILED at trusted checkpoint: ")

    missing = audit(server.url, key, "auditor", "--trusted-checkpoint", str(tmp_path / "absent.txt"))
    _failed(missing, r"absent\.txt")


def test_audit_with_a_key_lacking_the_auditor_role_is_refused_clearly(server: Server) -> None:
    result = audit(server.url, server.data_dir / "keys" / "viewer.pem", "viewer")
    _failed(result, r"\b403\b.*auditor")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_audit_with_a_key_the_node_does_not_know_is_refused_clearly(server: Server, tmp_path: Path) -> None:
    # The auditor's key file presented under another key id: the signature does not verify.
    result = audit(server.url, server.data_dir / "keys" / "auditor.pem", "admin")
    _failed(result, r"\b401\b")
    stranger = tmp_path / "stranger.pem"
    keys.write_private_key(stranger, keys.new_private_key())
    result = audit(server.url, stranger, "stranger")
    _failed(result, r"\b401\b")


def test_audit_of_nothing_listening_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = audit(url, server.data_dir / "keys" / "auditor.pem", "auditor")
    _failed(result, re.escape(url))
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    missing_key = audit(server.url, tmp_path / "nope.pem", "auditor")
    _failed(missing_key, r"nope\.pem")


# -- a node answering damaged bytes -------------------------------------------------------------
#
# A stand-in node (http.server, no signature checks) answers the three ledger endpoints an audit
# reads with the genuine answers of a one-entry ledger, but for the one answer a case damages.
# Whatever the node sends, `audit` reports `FAILED at <seq or part>: ...` (exit 1), never a crash.


class _FakeNode:
    def __init__(self, answers: dict[str, tuple[int, str, bytes]]) -> None:
        self.answers = answers

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805 (the handler instance; self is the node)
                status, content_type, body = self.answers[urllib.parse.urlsplit(handler.path).path]
                handler.send_response(status)
                handler.send_header("Content-Type", content_type)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args: object) -> None:  # noqa: N805
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "_FakeNode":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _json(value: object) -> tuple[int, str, bytes]:
    return 200, "application/json", json.dumps(value).encode()


def _genuine(data_dir: Path) -> dict[str, tuple[int, str, bytes]]:
    """What a node on data_dir (holding its genesis only) answers."""
    log = plyvel.DB(str(data_dir / "log"))
    try:
        note, raw = log.get(b"checkpoint"), log.get(b"e" + bytes(8))
    finally:
        log.close()
    entry = {"seq": 0, "raw": base64.b64encode(raw).decode(), "entry": json.loads(raw)}
    return {
        "/ledger/checkpoint": (200, "text/plain", note),  # no charset: the note is read as UTF-8 anyway
        "/ledger/head": _json({"size": 1, "state_digest": "00"}),
        "/ledger/entries": _json({"entries": [entry], "size": 1, "next": None}),
    }


def _entry_with(**fields: object) -> tuple[str, Any]:
    return "/ledger/entries", lambda genuine: {"entries": [{**genuine["entries"][0], **fields}], "size": 1}


TEXT = (200, "text/html", b"<html>502 Bad Gateway</html>")
DAMAGED_ANSWERS: list[tuple[str, str, Any, str]] = [
    # (case, path, answer (or a function of the genuine JSON answer), expected stderr)
    ("head_not_json", "/ledger/head", TEXT, r"^FAILED at head: .*did not answer JSON"),
    ("head_a_list", "/ledger/head", _json([1]), r"^FAILED at head: .*not a JSON object"),
    ("head_size_a_string", "/ledger/head", _json({"size": "1"}), r"^FAILED at head: .*size '1'"),
    ("head_without_size", "/ledger/head", _json({}), r"^FAILED at head: "),
    ("entries_not_json", "/ledger/entries", TEXT, r"^FAILED at 0: .*did not answer JSON"),
    ("entries_without_entries", "/ledger/entries", _json({"size": 1}), r"^FAILED at 0: .*no list of entries"),
    ("entries_not_a_list", "/ledger/entries", _json({"entries": "all"}), r"^FAILED at 0: .*no list of entries"),
    ("entry_not_an_object", "/ledger/entries", _json({"entries": [0]}), r"^FAILED at 0: .*in its place"),
    ("entry_of_another_seq", *_entry_with(seq=1), r"^FAILED at 0: .*entry '1' in its place"),
    ("entry_seq_a_string", *_entry_with(seq="0"), r"^FAILED at 0: .*in its place"),
    ("entry_without_raw", *_entry_with(raw=None), r"^FAILED at 0: .*without its raw bytes"),
    ("entry_raw_not_base64", *_entry_with(raw="%%%not base64"), r"^FAILED at 0: .*not base64"),
    ("entry_raw_not_an_entry", *_entry_with(raw=base64.b64encode(b"\xff\x00").decode()), r"^FAILED at 0: .*decodable"),
    ("checkpoint_garbage", "/ledger/checkpoint", (200, "text/plain", b"\xff\xfegarbage"), r"^FAILED at checkpoint: "),
    ("checkpoint_empty", "/ledger/checkpoint", (200, "text/plain", b""), r"^FAILED at checkpoint: "),
]


@pytest.fixture(scope="module")
def one_entry_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("fake-node") / "data"
    init_ledger(data_dir, {"auditor": "auditor"})
    return data_dir


def test_audit_of_the_stand_in_node_with_genuine_answers_passes(one_entry_ledger: Path) -> None:
    with _FakeNode(_genuine(one_entry_ledger)) as node:
        match = _ok(audit(node.url, one_entry_ledger / "keys" / "auditor.pem", "auditor"))
    assert match.group(1) == "1"


@pytest.mark.parametrize("case, path, answer, expected", DAMAGED_ANSWERS, ids=[c[0] for c in DAMAGED_ANSWERS])
def test_audit_of_a_node_answering_damaged_bytes_fails_in_one_line(
    one_entry_ledger: Path, case: str, path: str, answer: Any, expected: str
) -> None:
    answers = _genuine(one_entry_ledger)
    answers[path] = _json(answer(json.loads(answers[path][2]))) if callable(answer) else answer
    with _FakeNode(answers) as node:
        result = audit(node.url, one_entry_ledger / "keys" / "auditor.pem", "auditor")
    _failed(result, expected)
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
def test_audit_finds_the_node_and_the_key_as_call_does(server: Server, tmp_path: Path) -> None:
    """ORCHESTRATOR_URL and the data dir's keys, the key id from the key file's name: like `call`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    user = {**env, "ORCHESTRATOR_URL": server.url, "ORCHESTRATOR_DATA_DIR": str(server.data_dir)}
    for args, environment in (
        (["--key-id", "auditor"], user),  # DATA_DIR/keys/auditor.pem
        (["--key-file", str(server.data_dir / "keys" / "auditor.pem")], {**env, "ORCHESTRATOR_URL": server.url}),
        (["--url", server.url, "--data-dir", str(server.data_dir), "--key-id", "everything"], env),
        ([], {**user, "ORCHESTRATOR_KEY_ID": "auditor"}),
    ):
        _ok(orchestrator("audit", *args, check=False, timeout=60, env=environment))
        call = orchestrator("call", *args, "GET", "/ledger/checkpoint", check=False, env=environment)
        assert call.returncode == 0, call.stderr  # the very same settings sign `call`

    # No settings at all: ./data/keys/admin.pem against http://127.0.0.1:8000, as `call`.
    nothing = orchestrator("audit", check=False, timeout=60, env=env, cwd=tmp_path)
    assert nothing.returncode == 2 and str(Path("data") / "keys" / "admin.pem") in nothing.stderr, nothing.stderr
    assert "Traceback" not in nothing.stderr

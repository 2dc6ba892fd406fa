"""`orchestrator mirror`: a verified local copy of a node's log, through its tlog-tiles.

Black-box: real nodes, the CLI, and for tampering a small proxy in front of a node that alters
one kind of answer. The copy is checked by `verify` and `replay` as any data dir is.
"""

import http.server
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import plyvel  # type: ignore[import-untyped]
import pytest
import requests
from conftest import Server, WitnessServer, free_port, init_ledger, new_uuid, on_terminal, orchestrator

MIRRORED = re.compile(r"^mirrored (\d+) new entries \((\d+) -> (\d+)\), (\d+) hash tiles checked, root (\S+)")


def write(server: Server, count: int) -> None:
    admin = server.client("admin")
    for _ in range(count):
        body = {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
        assert admin.post("/problem", body).status_code == 201


def mirror(url: str, copy: Path, *extra: str):
    return orchestrator("mirror", "--url", url, "--data-dir", str(copy), *extra, check=False, timeout=120)


def contents(copy: Path) -> dict[bytes, bytes]:
    db = plyvel.DB(str(copy / "log"))
    try:
        return dict(db.iterator())
    finally:
        db.close()


def signed_digest(server: Server) -> str:
    note = server.client("auditor").get("/ledger/checkpoint").text
    return next(line.removeprefix("state ") for line in note.splitlines() if line.startswith("state "))


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("mirror") / "data"
    init_ledger(data)
    server = Server(data, free_port(), args=("--public-log", "true")).start()
    write(server, 269)  # 270 entries: a full bundle and a partial one
    yield server
    server.stop()


def test_mirror_verify_replay_then_again_incrementally(public: Server, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    first = mirror(public.url, copy)
    assert first.returncode == 0, first.stderr
    size = public.head()["size"]
    got = MIRRORED.match(first.stdout)
    assert got is not None, first.stdout
    assert (int(got[1]), int(got[2]), int(got[3])) == (size, 0, size)
    verified = orchestrator("verify", "--data-dir", str(copy), check=False, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"ok: {size} entries, ")
    replayed = orchestrator("replay", "--data-dir", str(copy), check=False, timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    assert f"state digest: {signed_digest(public)}" in replayed.stdout

    write(public, 3)
    again = mirror(public.url, copy)
    assert again.returncode == 0, again.stderr
    got = MIRRORED.match(again.stdout)
    assert got is not None, again.stdout
    assert (int(got[1]), int(got[2]), int(got[3])) == (3, size, size + 3)
    assert int(got[4]) <= 3  # the edge tile of each level: the full tiles were not fetched again
    verified = orchestrator("verify", "--data-dir", str(copy), check=False, timeout=60)
    assert verified.returncode == 0 and verified.stdout.startswith(f"ok: {size + 3} entries, "), verified.stderr
    replayed = orchestrator("replay", "--data-dir", str(copy), check=False, timeout=60)
    assert f"state digest: {signed_digest(public)}" in replayed.stdout

    same = mirror(public.url, copy)
    assert same.returncode == 0 and same.stdout.startswith(f"up to date: {size + 3} entries"), same.stdout


def test_a_pinned_vkey_and_witness_quorum(public: Server, tmp_path: Path) -> None:
    vkey = public.client("auditor").get("/ledger/key").text
    ok = mirror(public.url, tmp_path / "pinned", "--vkey", vkey)
    assert ok.returncode == 0, ok.stderr
    other = tmp_path / "other"
    init_ledger(other)
    foreign = orchestrator("vkey", "--data-dir", str(other)).stdout.strip()
    refused = mirror(public.url, tmp_path / "wrong", "--vkey", foreign)
    assert refused.returncode == 1 and refused.stderr.startswith("FAILED at "), refused.stderr
    assert "with key id" in refused.stderr  # it is signed under that name, by another key
    assert not (tmp_path / "wrong").exists()  # a first run that fails leaves nothing
    witness = orchestrator("witness", "init", "--dir", str(tmp_path / "w"), "--name", "w.example/w1").stdout.strip()
    no_quorum = mirror(public.url, tmp_path / "witnessed", "--witness", witness)
    assert no_quorum.returncode == 1, no_quorum.stdout
    assert re.match(r"FAILED at checkpoint: .*0 valid cosignature", no_quorum.stderr), no_quorum.stderr


def test_a_node_that_is_not_public_needs_an_auditor_key(server: Server, tmp_path: Path) -> None:
    unsigned = mirror(server.url, tmp_path / "a")
    assert unsigned.returncode == 2 and "auditor role" in unsigned.stderr, unsigned.stderr
    signed = mirror(server.url, tmp_path / "b", "--key-file", str(server.data_dir / "keys" / "auditor.pem"))
    assert signed.returncode == 0, signed.stderr
    assert orchestrator("verify", "--data-dir", str(tmp_path / "b"), check=False, timeout=60).returncode == 0


# --- tampering, through a proxy -----------------------------------------------------------------

Alter = Callable[[str, bytes], bytes]


class Proxy:
    """Forwards GETs to a node, passing each answer body through `alter(path, body)`."""

    def __init__(self, upstream: str, alter: Alter) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                answer = requests.get(upstream + self.path, timeout=30)
                body = outer.alter(self.path, answer.content)
                self.send_response(answer.status_code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.alter = alter
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _flip(body: bytes, at: int) -> bytes:
    changed = bytearray(body)
    changed[at] ^= 0x01
    return bytes(changed)


def tile_changed(path: str, body: bytes) -> bytes:
    return _flip(body, 5) if re.fullmatch(r"/tile/[0-9]+/.*", path) else body


def entry_changed(path: str, body: bytes) -> bytes:
    return _flip(body, len(body) - 3) if path.startswith("/tile/entries/") else body  # inside the last entry


def root_changed(path: str, body: bytes) -> bytes:
    if path != "/checkpoint":
        return body
    lines = body.split(b"\n")
    lines[2] = (b"B" if lines[2][:1] != b"B" else b"C") + lines[2][1:]
    return b"\n".join(lines)


def signature_changed(path: str, body: bytes) -> bytes:
    return _flip(body, len(body) - 10) if path == "/checkpoint" else body


def bundle_short(path: str, body: bytes) -> bytes:
    return body[:-1] if path.startswith("/tile/entries/") else body


@pytest.mark.parametrize(
    "alter, where",
    [
        (tile_changed, r"tile/\d+/"),
        (entry_changed, "checkpoint: the node's entries"),
        (root_changed, "checkpoint"),
        (signature_changed, "checkpoint"),
        (bundle_short, "tile/entries/"),
    ],
    ids=["tile", "entry", "checkpoint_root", "checkpoint_signature", "bundle_cut"],
)
def test_a_tampered_answer_is_refused_and_the_copy_stays(
    public: Server, tmp_path: Path, alter: Alter, where: str
) -> None:
    copy = tmp_path / "copy"
    assert mirror(public.url, copy).returncode == 0
    write(public, 2)
    before = contents(copy)
    proxy = Proxy(public.url, alter)
    try:
        refused = mirror(proxy.url, copy)
    finally:
        proxy.close()
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert re.match(rf"FAILED at {where}", refused.stderr), refused.stderr
    assert f"{copy} is unchanged" in refused.stderr
    assert contents(copy) == before
    assert mirror(public.url, copy).returncode == 0  # the real node's answers still go in


def test_a_fork_of_the_ledger_is_refused(tmp_path: Path) -> None:
    """Two data dirs from one genesis and node key, with different writes after: the copy of one
    refuses the other, whichever is longer, and is left as it was."""
    data = tmp_path / "a"
    init_ledger(data)
    node = Server(data, free_port(), args=("--public-log", "true")).start()
    write(node, 3)
    node.stop()
    shutil.copytree(data, tmp_path / "b")
    fork = Server(tmp_path / "b", free_port(), args=("--public-log", "true"))
    node.start()
    fork.start()
    try:
        write(node, 2)
        write(fork, 4)
        copy = tmp_path / "copy"
        assert mirror(node.url, copy).returncode == 0
        before = contents(copy)
        refused = mirror(fork.url, copy)
        assert refused.returncode == 1, refused.stdout
        assert re.match(r"FAILED at (4|checkpoint): .*not consistent with the copy", refused.stderr), refused.stderr
        assert contents(copy) == before
        write(node, 1)
        assert mirror(node.url, copy).returncode == 0
    finally:
        node.stop()
        fork.stop()


def test_a_progress_bar_on_a_terminal(public: Server, tmp_path: Path) -> None:
    result, shown = on_terminal(
        ["mirror", "--url", public.url, "--data-dir", str(tmp_path / "copy")], stream="stderr", timeout=120
    )
    size = public.head()["size"]
    assert result.returncode == 0, result.stdout
    assert "mirror [" in shown and f"{size}/{size}" in shown, shown


def test_a_quorum_of_witness_cosignatures_is_mirrored_and_verified(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init_ledger(data)
    vkey_file = tmp_path / "node.vkey"
    vkey_file.write_text(orchestrator("vkey", "--data-dir", str(data)).stdout)
    vkey = orchestrator("witness", "init", "--dir", str(tmp_path / "w1"), "--name", "witness.test/w1").stdout.strip()
    witness = WitnessServer(tmp_path / "w1", [vkey_file]).start()
    node = Server(data, free_port(), args=("--public-log", "true", "--witness", f"{witness.url}={vkey}")).start()
    try:
        write(node, 3)
        deadline = time.monotonic() + 30
        while "witness.test/w1" not in requests.get(node.url + "/checkpoint", timeout=10).text:
            assert time.monotonic() < deadline, "the witness never cosigned"
            time.sleep(0.2)
        copy = tmp_path / "copy"
        mirrored = mirror(node.url, copy, "--witness", vkey, "--quorum", "1")
        assert mirrored.returncode == 0, mirrored.stderr
        assert "cosigned by witness.test/w1" in mirrored.stdout
        verified = orchestrator("verify", "--data-dir", str(copy), "--witness", vkey, check=False, timeout=60)
        assert verified.returncode == 0, verified.stderr
        assert "cosigned by witness.test/w1" in verified.stdout
    finally:
        node.stop()
        witness.stop()


def test_no_partial_tile_is_fetched_before_the_checkpoint_verifies(tmp_path: Path) -> None:
    """tlog-tiles: "Clients MUST NOT fetch arbitrary partial tiles without verifying a checkpoint
    with a size that requires their existence." With --vkey the checkpoint is checked first: a
    forged one (a tree of 4 entries, all in a partial bundle) fetches no tile."""
    data = tmp_path / "data"
    init_ledger(data)
    node = Server(data, free_port(), args=("--public-log", "true")).start()
    fetched: list[str] = []

    def forged(path: str, body: bytes) -> bytes:
        fetched.append(path)
        return signature_changed(path, body)

    proxy = Proxy(node.url, forged)
    try:
        write(node, 3)
        vkey = node.client("auditor").get("/ledger/key").text
        refused = mirror(proxy.url, tmp_path / "copy", "--vkey", vkey)
        assert refused.returncode == 1 and refused.stderr.startswith("FAILED at checkpoint"), refused.stderr
        assert fetched == ["/checkpoint"]
        assert mirror(node.url, tmp_path / "copy", "--vkey", vkey).returncode == 0
    finally:
        proxy.close()
        node.stop()

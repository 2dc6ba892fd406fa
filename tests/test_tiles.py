"""The log as C2SP tlog-tiles, held to a second implementation of the layout (tests/c2sp_spec.py)."""

import gzip
from collections.abc import Iterator
from pathlib import Path

import c2sp_spec as spec
import plyvel  # type: ignore[import-untyped]
import pytest
import requests
from conftest import Server, free_port, init_ledger, new_uuid, orchestrator

from ledger import tiles
from ledger.errors import NotFoundError


def test_paths_follow_the_spec() -> None:
    for n in (0, 5, 999, 1000, 1234067, 10**9):
        assert tiles.format_index(n) == spec.tile_index(n)
        assert tiles.parse_path(f"3/{spec.tile_index(n)}").index == n
    assert tiles.format_index(1234067) == "x001/x234/067"  # the spec's example
    for bad in ("0/x000/067", "00/000", "0/0000", "0/000.p/256", "0/000.p/0", "64/000", "entries/000.p/01",
                "0/000/", "0/000.p/", "x/000", "0/67"):
        with pytest.raises(NotFoundError):
            tiles.parse_path(bad)


def test_which_tiles_a_tree_holds_follows_the_spec_example() -> None:
    """A tree of 70,000: 273 full level-0 tiles and one of width 112; one full level-1 tile and
    one of width 17; one level-2 tile of width 1."""
    size = 70_000

    def holds(path: str) -> bool:
        return tiles.covered(tiles.parse_path(path), size)

    assert holds("0/272") and not holds("0/273") and holds("0/273.p/112") and not holds("0/273.p/113")
    assert holds("1/000") and not holds("1/001") and holds("1/001.p/17") and not holds("1/001.p/18")
    assert holds("2/000.p/1") and not holds("2/000.p/2") and not holds("3/000.p/1")
    assert holds("entries/273.p/112") and not holds("entries/273")


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("tiles") / "data"
    init_ledger(data)
    server = Server(data, free_port(), args=("--public-log", "true")).start()
    admin = server.client("admin")
    for _ in range(300):
        body = {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
        assert admin.post("/problem", body).status_code == 201
    yield server
    server.stop()


def get(server: Server, path: str, **headers: str) -> requests.Response:
    response = requests.get(server.url + path, headers=headers, timeout=30)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response


def test_a_tiles_client_verifies_the_log_from_tiles_alone(public: Server) -> None:
    vkey = public.client("auditor").get("/ledger/key").text
    name, _, key = spec.parse_vkey(vkey)
    checkpoint = get(public, "/checkpoint")
    assert checkpoint.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert checkpoint.headers["Cache-Control"] == "no-cache"
    _, size, root = spec.parse_checkpoint(spec.verify_log_signature(checkpoint.text, name, key))
    assert size >= 301
    full, width = divmod(size, 256)
    entries: list[bytes] = []
    for n in range(full):
        entries += spec.split_bundle(get(public, f"/tile/entries/{spec.tile_index(n)}").content)
    entries += spec.split_bundle(get(public, f"/tile/entries/{spec.tile_index(full)}.p/{width}").content)
    leaves = [spec.leaf(e) for e in entries]
    assert len(leaves) == size and spec.mth(leaves) == root
    level0 = get(public, "/tile/0/000")
    assert level0.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert level0.headers["Content-Type"] == "application/octet-stream"
    assert level0.content == spec.tile_hashes(leaves, 0, 0) and len(level0.content) == 8192
    partial = get(public, f"/tile/0/{spec.tile_index(full)}.p/{width}").content
    assert partial == spec.tile_hashes(leaves, 0, full, width)
    level1 = get(public, f"/tile/1/000.p/{full}").content
    assert level1 == spec.tile_hashes(leaves, 1, 0, full)
    assert level1[:32] == spec.mth(leaves[:256])


def test_tiles_beyond_the_tree_non_canonical_paths_and_gzip(public: Server) -> None:
    size = public.head()["size"]
    full, _ = divmod(size, 256)
    for path in (f"/tile/0/{spec.tile_index(full)}", "/tile/0/x000/000", "/tile/0/00", "/tile/2/000.p/1",
                 "/tile/entries/999", f"/tile/0/{spec.tile_index(full)}.p/255"):
        answer = requests.get(public.url + path, timeout=30)
        assert answer.status_code == 404, (path, answer.status_code)
        assert answer.headers["Content-Type"] == "application/json"
    zipped = requests.get(public.url + "/tile/entries/000", headers={"Accept-Encoding": "gzip"}, stream=True,
                          timeout=30)
    assert zipped.headers["Content-Encoding"] == "gzip"
    raw = zipped.raw.read()
    assert len(spec.split_bundle(gzip.decompress(raw))) == 256


def test_without_public_log_tiles_need_an_auditor_signature(server: Server) -> None:
    assert requests.get(server.url + "/checkpoint", timeout=30).status_code == 401
    assert requests.get(server.url + "/tile/0/000.p/1", timeout=30).status_code == 401
    assert server.client("viewer").get("/tile/0/000.p/1").status_code == 403
    auditor = server.client("auditor")
    tile = auditor.get("/tile/0/000.p/1")
    assert tile.status_code == 200
    # Cached forever, but by the auditor's own cache only: a shared one would hand it to anyone.
    assert tile.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    assert auditor.get("/checkpoint").text == auditor.get("/ledger/checkpoint").text


def test_head_answers_as_a_file_server_does(public: Server) -> None:
    for path, length in (("/tile/0/000", 8192), ("/tile/0/000.p/1", 32)):
        answer = requests.head(public.url + path, timeout=30)
        assert answer.status_code == 200 and answer.content == b""
        assert answer.headers["Content-Length"] == str(length)
        assert answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert requests.head(public.url + "/checkpoint", timeout=30).status_code == 200
    assert requests.head(public.url + "/tile/0/x999/000", timeout=30).status_code == 404


def test_a_tile_path_takes_no_query_parameter(public: Server) -> None:
    answer = requests.get(public.url + "/tile/0/000.p/1?x=1", timeout=30)
    assert answer.status_code == 400 and "unknown query parameter 'x'" in answer.json()["description"]


def test_an_entry_too_big_for_a_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(tiles.EntryTooLargeError):
        tiles.entry_bundle([b"x" * 70_000])
    assert tiles.entry_bundle([b"ab", b""]) == b"\x00\x02ab\x00\x00"


def _old_layout(log_dir: Path, stale_tile: bytes) -> int:
    """Rewrite a stopped node's tree in the layout nodes wrote before tiles (a key per perfect
    subtree), leaving one stale tile behind as an interrupted rebuild would; the entry count."""
    db = plyvel.DB(str(log_dir))
    try:
        leaves = [spec.leaf(raw) for _, raw in db.iterator(prefix=b"e")]
        for key, _ in list(db.iterator(prefix=b"h")):
            db.delete(key)
        for level in range(len(leaves).bit_length()):
            for index in range(len(leaves) >> level):
                node = spec.mth(leaves[index << level : (index + 1) << level])
                db.put(b"t" + bytes([level]) + index.to_bytes(8, "big"), node)
        db.put(b"h\x00" + bytes(8), stale_tile)
        return len(leaves)
    finally:
        db.close()


def test_a_log_in_the_old_tree_layout_is_verified_then_rebuilt_as_tiles_on_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init_ledger(data)
    server = Server(data, free_port(), args=("--public-log", "true")).start()
    admin = server.client("admin")
    for _ in range(259):
        body = {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
        assert admin.post("/problem", body).status_code == 201
    server.stop()
    size = _old_layout(data / "log", bytes(32))
    assert size == 260
    verified = orchestrator("verify", "--data-dir", str(data), check=False, timeout=60)
    assert verified.returncode == 0, verified.stderr  # verify reads the old layout as it is
    server.start()
    try:
        bundles = get(server, "/tile/entries/000").content + get(server, "/tile/entries/001.p/4").content
        leaves = [spec.leaf(e) for e in spec.split_bundle(bundles)]
        assert get(server, "/tile/0/000").content == spec.tile_hashes(leaves, 0, 0)
        assert get(server, "/tile/0/001.p/4").content == spec.tile_hashes(leaves, 0, 1, 4)
        assert get(server, "/tile/1/000.p/1").content == spec.tile_hashes(leaves, 1, 0, 1)
        name, _, key = spec.parse_vkey(server.client("auditor").get("/ledger/key").text)
        _, signed, root = spec.parse_checkpoint(spec.verify_log_signature(get(server, "/checkpoint").text, name, key))
        assert (signed, root) == (size, spec.mth(leaves))
        body = {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
        assert admin.post("/problem", body).status_code == 201  # and it goes on growing
    finally:
        server.stop()
    db = plyvel.DB(str(data / "log"))
    try:
        assert next(db.iterator(prefix=b"t"), None) is None  # the old keys are gone
    finally:
        db.close()
    verified = orchestrator("verify", "--data-dir", str(data), check=False, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"ok: {size + 1} entries")

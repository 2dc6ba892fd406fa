"""The `orchestrator` command: init, replay and the data-dir lock, as an operator uses them."""

import configparser
import shutil
import socket
import stat
from pathlib import Path

import pytest
from conftest import Server, free_port, init_ledger, new_uuid, orchestrator


def _digest(output: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith("state digest: ")]
    return line.removeprefix("state digest: ")


def test_init_writes_private_keys_and_refuses_to_overwrite(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = orchestrator("init", "--data-dir", str(data), "--key", "alice=admin", "--key", "bob=compute,viewer")
    assert str(data / "keys" / "alice.pem") in result.stdout
    for name in ("alice", "bob"):
        pem = data / "keys" / f"{name}.pem"
        assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    before = (data / "keys" / "alice.pem").read_bytes()
    again = orchestrator("init", "--data-dir", str(data), check=False)
    assert again.returncode != 0
    assert "already holds a ledger" in again.stderr and "Traceback" not in again.stderr
    assert (data / "keys" / "alice.pem").read_bytes() == before


def test_init_rejects_unknown_role(tmp_path: Path) -> None:
    result = orchestrator("init", "--data-dir", str(tmp_path / "d"), "--key", "x=wizard", check=False)
    assert result.returncode != 0 and "unknown role 'wizard'" in result.stderr
    assert not (tmp_path / "d").exists()


def _write_some(server: Server, count: int) -> list[dict]:
    admin = server.client("admin")
    heads = []
    for _ in range(count):
        r = admin.post(
            "/problem", {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
        )
        assert r.status_code == 201, r.text
        heads.append(server.head())
    return heads


def test_replay_rebuilds_deleted_state_with_same_digest(fresh_server: Server) -> None:
    heads = _write_some(fresh_server, 5)
    fresh_server.stop()
    data = fresh_server.data_dir
    shutil.rmtree(data / "state")
    result = orchestrator("replay", "--data-dir", str(data))
    assert _digest(result.stdout) == heads[-1]["state_digest"]
    assert f"replayed {heads[-1]['size']} of {heads[-1]['size']} entries" in result.stdout
    partial = orchestrator("replay", "--data-dir", str(data), "--to", str(heads[1]["size"] - 1))
    assert _digest(partial.stdout) == heads[1]["state_digest"]
    # The server catches the partially replayed state up with the log at start-up.
    fresh_server.start()
    assert fresh_server.head() == heads[-1]


def test_server_catches_up_when_state_is_deleted(fresh_server: Server) -> None:
    heads = _write_some(fresh_server, 3)
    fresh_server.stop()
    shutil.rmtree(fresh_server.data_dir / "state")
    fresh_server.start()
    assert fresh_server.head() == heads[-1]


def test_data_dir_in_use_is_reported_clearly(server: Server, tmp_path: Path) -> None:
    replay = orchestrator("replay", "--data-dir", str(server.data_dir), check=False)
    assert replay.returncode != 0
    assert "already open by another process" in replay.stderr and "Traceback" not in replay.stderr
    second = orchestrator(
        "serve", "--data-dir", str(server.data_dir), "--bind", f"127.0.0.1:{free_port()}", check=False, timeout=60
    )
    assert second.returncode != 0
    assert "already open by another process" in second.stderr and "Traceback" not in second.stderr


def test_replay_of_missing_ledger_and_bad_seq(tmp_path: Path) -> None:
    missing = orchestrator("replay", "--data-dir", str(tmp_path / "nothing"), check=False)
    assert missing.returncode != 0 and "holds no ledger" in missing.stderr
    data = tmp_path / "data"
    init_ledger(data, {"admin": "admin"})
    bad = orchestrator("replay", "--data-dir", str(data), "--to", "5", check=False)
    assert bad.returncode != 0 and "--to 5" in bad.stderr


def test_serve_help_lists_flags() -> None:
    result = orchestrator("serve", "--help")
    for flag in ("--data-dir", "--bind", "--threads", "--body-limit"):
        assert flag in result.stdout


def test_version_is_the_packages_and_the_licence_is_apache_2() -> None:
    root = Path(__file__).resolve().parent.parent
    setup = configparser.ConfigParser()
    setup.read(root / "setup.cfg")
    result = orchestrator("--version")
    assert result.stdout == f"orchestrator {setup['metadata']['version']}\n" and result.stderr == ""
    assert setup["metadata"]["license"] == "Apache-2.0" and setup["metadata"]["license_files"] == "LICENSE"
    licence = (root / "LICENSE").read_text()
    assert licence.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in licence
    assert "END OF TERMS AND CONDITIONS" in licence


def test_serve_on_a_busy_port_says_so_in_one_line_and_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.create_server(("127.0.0.1", 0)) as busy:  # another program listens there
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        result = orchestrator("serve", "--data-dir", str(data), "--bind", address, check=False, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()  # no gunicorn start-up, no retries
    assert line.startswith(f"orchestrator: error: cannot listen on {address}: address already in use"), line
    assert not data.exists()  # no ledger, no keys: nothing to clean up


@pytest.mark.parametrize("command", [("serve", "--data-dir", "data"),
                                     ("witness", "serve", "--dir", "w", "--log", "node.vkey")])
@pytest.mark.parametrize("port", ["99999", "-1", "0"])
def test_a_port_out_of_range_is_one_line_and_creates_nothing(tmp_path: Path, command: tuple[str, ...],
                                                              port: str) -> None:
    result = orchestrator(*command, "--bind", f"127.0.0.1:{port}", check=False, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "from 1 to 65535" in result.stderr.splitlines()[-1], result.stderr
    assert list(tmp_path.iterdir()) == []

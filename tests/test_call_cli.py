"""`orchestrator call` and `orchestrator keys new`, as a user runs them against a real server."""

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

from conftest import Server, free_port, new_uuid, on_terminal, orchestrator

from ledger import keys


def _env(server: Server, **extra: str) -> dict[str, str]:
    """The environment of a user whose data dir and server are the test server's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(ORCHESTRATOR_DATA_DIR=str(server.data_dir), ORCHESTRATOR_URL=server.url, **extra)
    return env


def call(server: Server, *args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    return orchestrator("call", *args, check=False, env=env or _env(server), **kwargs)


def _problem() -> dict:
    return {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}


def test_get_prints_one_compact_json_line_when_piped(server: Server) -> None:
    result = call(server, "GET", "/ledger/head")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and " " not in result.stdout
    assert json.loads(result.stdout)["size"] >= 1 and result.stderr == ""


def test_answer_is_indented_on_a_terminal(server: Server) -> None:
    result, text = on_terminal(["call", "GET", "/nodes/admin"], stream="stdout", env=_env(server))
    assert result.returncode == 0, result.stderr
    assert text.startswith('{\n  "key_id": "admin",\n') and json.loads(text)["key_id"] == "admin"


def test_post_inline_from_a_file_and_from_stdin(server: Server, tmp_path: Path) -> None:
    inline = _problem()
    result = call(server, "POST", "/problem", json.dumps(inline))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["new_problem"]["uuid"] == inline["uuid"] and answer["receipt"]["seq"] >= 1

    from_file = _problem()
    (tmp_path / "problem.json").write_text(json.dumps(from_file))
    result = call(server, "POST", "/problem", f"@{tmp_path / 'problem.json'}")
    assert result.returncode == 0 and json.loads(result.stdout)["new_problem"]["uuid"] == from_file["uuid"]

    from_stdin = _problem()
    result = call(server, "POST", "/problem", "@-", input=json.dumps(from_stdin))
    assert result.returncode == 0 and json.loads(result.stdout)["new_problem"]["uuid"] == from_stdin["uuid"]

    result = call(server, "GET", f"/problem?workflow={from_stdin['workflow']}")
    assert [p["uuid"] for p in json.loads(result.stdout)["problems"]] == [from_stdin["uuid"]]


def test_text_answers_print_as_text(server: Server) -> None:
    result = call(server, "--key-id", "auditor", "GET", "/ledger/checkpoint")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "orchestrator.local/ledger" and "\n\n— " in result.stdout


def test_binary_answers_come_out_byte_for_byte(server: Server) -> None:
    """A tile is raw hashes: `orchestrator call GET /tile/... > FILE` saves it as served."""
    env = _env(server)
    result = subprocess.run([sys.executable, "-m", "orchestrator", "call", "--key-id", "auditor", "GET",
                             "/tile/0/000.p/1"], capture_output=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    served = server.client("auditor").get("/tile/0/000.p/1").content
    assert result.stdout == served and len(served) == 32


def test_http_errors_exit_1_with_the_servers_message(server: Server) -> None:
    body = json.dumps(_problem())
    assert call(server, "POST", "/problem", body).returncode == 0
    again = call(server, "POST", "/problem", body)  # a new signature: a duplicate, not a resend
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith("orchestrator: 409 Conflict: problem ") and "already exists" in again.stderr

    forbidden = call(server, "--key-id", "viewer", "POST", "/problem", json.dumps(_problem()))
    assert forbidden.returncode == 1 and "403 Forbidden" in forbidden.stderr

    missing = call(server, "GET", f"/problem/{new_uuid()}")
    assert missing.returncode == 1 and "404" in missing.stderr and "no problem" in missing.stderr

    invalid = call(server, "POST", "/problem", json.dumps({**_problem(), "uuid": "nope"}))
    assert invalid.returncode == 1 and "400" in invalid.stderr and "uuid" in invalid.stderr
    for result in (again, forbidden, missing, invalid):
        assert "Traceback" not in result.stderr


def test_local_trouble_exits_2_without_a_traceback(server: Server, tmp_path: Path) -> None:
    down = call(server, "--url", f"http://127.0.0.1:{free_port()}", "GET", "/ledger/head")
    assert down.returncode == 2 and "cannot reach" in down.stderr and "connection refused" in down.stderr

    no_key = call(server, "--key-file", str(tmp_path / "absent.pem"), "GET", "/ledger/head")
    assert no_key.returncode == 2 and "cannot read the key file" in no_key.stderr and "absent.pem" in no_key.stderr

    empty_dir = call(server, "--data-dir", str(tmp_path / "nothing"), "GET", "/ledger/head")
    assert empty_dir.returncode == 2 and str(tmp_path / "nothing" / "keys" / "admin.pem") in empty_dir.stderr

    (tmp_path / "garbage.pem").write_text("not a key")
    garbage = call(server, "--key-file", str(tmp_path / "garbage.pem"), "GET", "/ledger/head")
    assert garbage.returncode == 2 and "not an Ed25519 private key" in garbage.stderr

    bad_json = call(server, "POST", "/problem", "{nope")
    assert bad_json.returncode == 2 and "BODY is not valid JSON" in bad_json.stderr

    no_file = call(server, "POST", "/problem", f"@{tmp_path / 'absent.json'}")
    assert no_file.returncode == 2 and "cannot read the body" in no_file.stderr

    for result in (down, no_key, empty_dir, garbage, bad_json, no_file):
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_settings_come_from_env_and_flags_override_them(server: Server) -> None:
    keys_dir = server.data_dir / "keys"
    # No data dir in the environment: URL, key file and key id from their own variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(ORCHESTRATOR_URL=server.url, ORCHESTRATOR_KEY_FILE=str(keys_dir / "compute.pem"),
               ORCHESTRATOR_KEY_ID="compute")
    result = call(server, "GET", "/nodes/compute", env=env)
    assert result.returncode == 0, result.stderr

    # A flag beats its variable: a wrong URL in the environment, the right one on the command line.
    env["ORCHESTRATOR_URL"] = f"http://127.0.0.1:{free_port()}"
    assert call(server, "GET", "/ledger/head", env=env).returncode == 2
    assert call(server, "--url", server.url, "GET", "/ledger/head", env=env).returncode == 0

    # With only a key file, the key id is its name: viewer's key signs as viewer (admin would be 401).
    only_file = _env(server)
    viewer = call(server, "--key-file", str(keys_dir / "viewer.pem"), "POST", "/problem", json.dumps(_problem()),
                  env=only_file)
    assert viewer.returncode == 1 and "403" in viewer.stderr
    # A key id without a key file picks DATA_DIR/keys/KEY_ID.pem.
    analytics = call(server, "--key-id", "analytics", "GET", "/nodes/analytics", env=only_file)
    assert analytics.returncode == 0, analytics.stderr


def test_keys_new_prints_a_registration_command_that_works(server: Server, tmp_path: Path) -> None:
    name = "newkey-" + new_uuid()[:8]
    result = orchestrator("keys", "new", name, "--dir", str(tmp_path / "mine"), "--roles", "viewer,compute",
                          env=_env(server))
    pem = tmp_path / "mine" / f"{name}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    public = keys.public_b64(keys.load_private_key(pem))
    assert f"public key: {public}" in result.stdout
    commands = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("orchestrator call")]
    register, use = commands
    body = json.loads(shlex.split(register)[-1])
    assert body == {"key_id": name, "public_key": public, "roles": ["compute", "viewer"]}

    # The printed commands run as they are, in a shell, as the admin and then as the new key.
    bin_dir = str(Path(sys.executable).parent)
    env = _env(server, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    registered = subprocess.run(register, shell=True, capture_output=True, text=True, env=env)
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["new_node"]["key_id"] == name
    used = subprocess.run(use, shell=True, capture_output=True, text=True, env=env)
    assert used.returncode == 0, used.stderr
    assert json.loads(used.stdout)["roles"] == ["compute", "viewer"]

    before = pem.read_bytes()
    again = orchestrator("keys", "new", name, "--dir", str(tmp_path / "mine"), check=False, env=_env(server))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr and pem.read_bytes() == before


def _printed_commands(stdout: str) -> tuple[list[str], list[str]]:
    """The "an admin registers it with" and "then it signs requests with" commands, as argv."""
    lines = stdout.splitlines()
    register = lines[lines.index("an admin registers it with:") + 1]
    use = lines[lines.index("then it signs requests with:") + 1]
    return shlex.split(register), shlex.split(use)


def test_keys_new_prints_commands_that_carry_its_data_dir_and_url(server: Server, tmp_path: Path) -> None:
    """Given a data dir and a node (by flag or ORCHESTRATOR_URL), the printed commands name them, so
    they work pasted into another shell, in another directory, with none of the environment."""
    bare = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data_dir = ["--data-dir", str(server.data_dir)]
    runs = [
        ([*data_dir, "--url", server.url], bare, server.data_dir / "keys"),
        ([*data_dir, "--dir", str(tmp_path / "mine")], {**bare, "ORCHESTRATOR_URL": server.url}, tmp_path / "mine"),
    ]
    for flags, env, directory in runs:
        name = "pasted-" + new_uuid()[:8]
        result = orchestrator("keys", "new", name, "--roles", "viewer,compute", *flags, env=env, cwd=tmp_path)
        register, use = _printed_commands(result.stdout)
        assert register[:2] == ["orchestrator", "call"] and use[:2] == ["orchestrator", "call"]
        assert register[register.index("--data-dir") + 1] == str(server.data_dir)
        assert register[register.index("--url") + 1] == server.url == use[use.index("--url") + 1]
        assert use[use.index("--key-file") + 1] == str(directory / f"{name}.pem")

        registered = orchestrator(*register[1:], check=False, env=bare, cwd=elsewhere)
        assert registered.returncode == 0, registered.stderr
        assert json.loads(registered.stdout)["new_node"]["key_id"] == name
        used = orchestrator(*use[1:], check=False, env=bare, cwd=elsewhere)
        assert used.returncode == 0, used.stderr
        assert json.loads(used.stdout)["roles"] == ["compute", "viewer"]


def test_keys_new_defaults_to_the_data_dirs_keys_and_validates(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    data = tmp_path / "data"
    result = orchestrator("keys", "new", "carol", "--data-dir", str(data), env=env)
    assert (data / "keys" / "carol.pem").exists() and '"roles": ["viewer"]' in result.stdout
    bad_name = orchestrator("keys", "new", "no/slash", "--data-dir", str(data), check=False, env=env)
    assert bad_name.returncode == 2 and "letters, digits" in bad_name.stderr
    bad_role = orchestrator("keys", "new", "dave", "--roles", "wizard", "--data-dir", str(data), check=False, env=env)
    assert bad_role.returncode == 2 and "unknown role 'wizard'" in bad_role.stderr
    assert sorted(p.name for p in (data / "keys").iterdir()) == ["carol.pem"]


def test_ctrl_c_exits_130_without_a_traceback(server: Server) -> None:
    """A node that accepts the connection and never answers: the user gives up with Ctrl-C."""
    import signal
    import socket
    import time

    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "call", "--url", url, "GET", "/ledger/head"],
            env=_env(server),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        connection, _ = silent.accept()  # the request is on its way; the answer never comes
        with connection:
            time.sleep(0.2)
            os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err.strip() == "orchestrator: interrupted" and out == ""


def test_a_call_that_waits_is_given_its_seconds_on_top_of_the_timeout(server: Server) -> None:
    from orchestrator.cli import _timeout_for

    assert _timeout_for("/learnuplet?status=todo&wait=60", 30) == 90
    assert _timeout_for("/learnuplet?wait=0.5", 30) == 30.5
    assert _timeout_for("/learnuplet?status=todo", 30) == _timeout_for("/x?wait=nan", 30) == 30
    assert _timeout_for("/x?wait=abc", 30) == 30 and _timeout_for("/x?wait=1e9", 30) == 3630
    result = call(server, "GET", f"/problem?uuid={new_uuid()}&wait=0.5")
    assert result.returncode == 0 and json.loads(result.stdout) == {"problems": []}, result.stderr

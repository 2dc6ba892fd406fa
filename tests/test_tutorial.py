"""The README's five-minute tutorial, run exactly as written against a server started the way the
quick start starts it (`python -m orchestrator serve` in an empty directory), so it cannot rot; and
run again on the same data dir, as a user who pastes it a second time does."""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from conftest import free_port

from orchestrator.client import Client

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "# tutorial: "


def tutorial_script() -> str:
    blocks = re.findall(r"^```sh\n(.*?)^```$", README.read_text(), flags=re.DOTALL | re.MULTILINE)
    (script,) = [block for block in blocks if block.startswith(MARKER)]
    return script


def _commands(script: str) -> list[str]:
    """The script's commands: its lines but comments and here-document bodies."""
    commands: list[str] = []
    in_body = False
    for line in script.splitlines():
        if in_body:
            in_body = line != "EOF"
        elif line and not line.startswith("#"):
            commands.append(line)
            in_body = line.endswith("<<EOF")
    return commands


def test_the_readme_holds_one_marked_tutorial_of_fresh_uuids_and_orchestrator_calls() -> None:
    script = tutorial_script()
    commands = _commands(script)
    assert len(commands) >= 15
    new_uuid, variables, *calls = commands
    assert new_uuid == "new_uuid() { python3 -c 'import uuid; print(uuid.uuid4())'; }"
    assert re.fullmatch(r"[A-Z0-9]+=\$\(new_uuid\)( [A-Z0-9]+=\$\(new_uuid\))*", variables), variables
    for line in calls:
        assert line.startswith("orchestrator call ") or re.match(r"[A-Z]+=\$\(orchestrator call ", line), line
    for step in ("POST /problem", "POST /data", "POST /algo", "/worker/learnuplet/", "/learndone/",
                 "POST /prediction", "/worker/preduplet/", "/preddone/", "GET /ledger/head", "GET /ledger/checkpoint"):
        assert step in script, step


def _start_server(cwd: Path, env: dict[str, str], url: str) -> subprocess.Popen:
    log = open(cwd / "serve.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve"], cwd=cwd, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, (cwd / "serve.log").read_text()
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready in 30 s")


def _check_run(stdout: str, size: int) -> dict[str, Any]:
    """One run's answers: a whole cycle from a problem to a stored prediction; the log's size after it."""
    answers = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    problem = answers[0]["new_problem"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", problem["uuid"])
    assert any(a.get("new_learnuplets") == 1 for a in answers)
    learnuplet = next(a for a in answers if a.get("status") == "done" and "model_end" in a)
    preduplet = answers[-2]
    assert preduplet["status"] == "done" and preduplet["model"] == learnuplet["model_end"]
    assert preduplet["problem"] == problem["uuid"] == learnuplet["problem"]
    assert preduplet["prediction_storage_uuid"] == "e0000000-0000-4000-8000-000000000001"
    head = answers[-1]
    assert head["size"] == size
    checkpoint = stdout[stdout.index("orchestrator.local/ledger\n"):]
    assert checkpoint.splitlines()[1] == str(size) and f"state {head['state_digest']}" in checkpoint
    return {"problem": problem, "preduplet": preduplet, "head": head}


def test_the_tutorial_runs_as_written_and_again_on_the_same_data_dir(tmp_path: Path) -> None:
    script = tutorial_script()
    (tmp_path / "tutorial.sh").write_text(script)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A user's environment, except for the port: the tutorial's defaults (./data, key admin) hold.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(ORCHESTRATOR_BIND=f"127.0.0.1:{port}", ORCHESTRATOR_URL=url,
               PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
    process = _start_server(tmp_path, env, url)
    try:
        runs = []
        for size in (9, 17):  # the genesis and 8 writes; then 8 more, the same lines pasted again
            result = subprocess.run(["sh", "-eu", "tutorial.sh"], cwd=tmp_path, env=env, capture_output=True,
                                    text=True, stdin=subprocess.DEVNULL, timeout=120)
            assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            assert result.stderr == ""
            runs.append(_check_run(result.stdout, size))
        first, second = runs
        assert first["problem"]["uuid"] != second["problem"]["uuid"]

        # The ledger agrees, read with the admin key the server created in ./data.
        admin = Client.from_file(url, tmp_path / "data" / "keys" / "admin.pem")
        assert admin.head() == second["head"]
        for run in runs:
            assert admin.document("preduplet", run["preduplet"]["uuid"]) == run["preduplet"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


COMPUTE_MARKER = "# compute: "


def compute_script() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.DOTALL | re.MULTILINE)
    (script,) = [block for block in blocks if block.startswith(COMPUTE_MARKER)]
    return script


def test_the_compute_loop_of_the_readme_trains_each_learnuplet_as_it_appears(tmp_path: Path) -> None:
    """The README's Compute node, run as written beside a quick-start server: it waits with nothing
    to do, then claims and reports each learnuplet as the algos create them; Ctrl-C stops it."""
    script = compute_script()
    assert "wait_for(" in script and "while True:" in script
    (tmp_path / "compute.py").write_text(script)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(ORCHESTRATOR_BIND=f"127.0.0.1:{port}", ORCHESTRATOR_URL=url)
    server = _start_server(tmp_path, env, url)
    compute = None
    try:
        compute = subprocess.Popen([sys.executable, "compute.py"], cwd=tmp_path, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        admin = Client.from_file(url, tmp_path / "data" / "keys" / "admin.pem")
        deadline = time.monotonic() + 30
        while not any(line.startswith("orchestrator_waiting_requests 1") for line in
                      requests.get(url + "/metrics", timeout=5).text.splitlines()):
            assert time.monotonic() < deadline and compute.poll() is None, "the loop never waited"
            time.sleep(0.1)
        problem, test_data = str(uuid.uuid4()), str(uuid.uuid4())
        admin.add_problem(problem, "f0000000-0000-4000-8000-000000000002", [test_data], 2)
        admin.add_data([str(uuid.uuid4()), str(uuid.uuid4()), test_data], problem)
        algos = [str(uuid.uuid4()) for _ in range(2)]
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in compute.stdout or ()], daemon=True).start()
        trained = []
        for algo in algos:  # one learnuplet each, found by the waiting loop
            admin.add_algo(algo, "logistic-regression", problem)
            line = lines.get(timeout=60)
            assert line.startswith("trained ") and line.split()[-1] == algo, line
            trained.append(line.split()[1])
        for uplet in trained:
            document = admin.document("learnuplet", uplet)
            assert document["status"] == "done" and document["worker"] == "c0000000-0000-4000-8000-000000000002"
        compute.send_signal(signal.SIGINT)
        assert compute.wait(timeout=30) == 0
        assert compute.stderr is not None and compute.stderr.read() == ""
    finally:
        if compute is not None and compute.poll() is None:
            compute.kill()
            compute.wait()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

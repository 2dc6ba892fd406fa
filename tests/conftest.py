"""Shared fixtures: a real gunicorn server on a free port, and signing clients per role.

Also the knobs of the reliability suites (tests/reliability): they run a bounded
version by default (CI) and the full one with ORCHESTRATOR_FULL=1:

    ORCHESTRATOR_FULL=1 python -m pytest -q tests/reliability -s

Each suite prints its figures with `report(...)` (visible with -s).
"""

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from orchestrator.client import Client

FULL = os.environ.get("ORCHESTRATOR_FULL", "") not in ("", "0")


def scale(ci: int, full: int) -> int:
    """How many iterations a reliability suite runs: `ci` by default, `full` in the full run."""
    return full if FULL else ci


def report(suite: str, **figures: object) -> None:
    """Print a suite's figures on one line (visible with -s, and in the full run's log)."""
    text = ", ".join(f"{name.replace('_', ' ')}: {value}" for name, value in figures.items())
    print(f"\n[{suite}] {text}", flush=True)


KEYS = {
    "admin": "admin",
    "analytics": "analytics",
    "viewer": "viewer",
    "compute": "compute",
    "compute2": "compute",
    "auditor": "auditor",
    "everything": "admin,analytics,viewer,compute,auditor",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def orchestrator(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, check=check, **kwargs
    )


def init_ledger(data_dir: Path, keys: dict[str, str] = KEYS) -> None:
    args = ["init", "--data-dir", str(data_dir)]
    for name, roles in keys.items():
        args += ["--key", f"{name}={roles}"]
    orchestrator(*args)


@dataclass
class Server:
    data_dir: Path
    port: int
    process: subprocess.Popen | None = None
    #: Further `orchestrator serve` flags (settings under test).
    args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, name: str) -> Client:
        return Client.from_file(self.url, self.data_dir / "keys" / f"{name}.pem", name)

    def start(self) -> "Server":
        log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "serve", "--data-dir", str(self.data_dir),
             "--bind", f"127.0.0.1:{self.port}", "--threads", "64", *self.args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {log.name}")
            try:
                if self.client("everything").get("/ledger/head").status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready in 30 s")

    def stop(self, sig: int = 15) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        self.process = None

    def head(self) -> dict:
        response = self.client("everything").get("/ledger/head")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("ledger") / "data"
    init_ledger(data_dir)
    srv = Server(data_dir, free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of its own, for tests that restart or kill it."""
    data_dir = tmp_path / "data"
    init_ledger(data_dir)
    srv = Server(data_dir, free_port()).start()
    yield srv
    srv.stop()


class WitnessServer:
    """`orchestrator witness serve` on a free port, for the logs whose vkey files are given."""

    def __init__(self, directory: Path, vkey_files: list[Path]) -> None:
        self.directory = directory
        self.port = free_port()
        self.vkey_files = vkey_files
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "WitnessServer":
        log = open(self.directory.parent / f"witness-{self.port}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "witness", "serve", "--dir", str(self.directory),
             "--bind", f"127.0.0.1:{self.port}", "--log", *map(str, self.vkey_files)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"witness exited with {self.process.returncode}; see {log.name}")
            try:
                if requests.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("witness did not answer in 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            self.process.wait(timeout=30)
        self.process = None


def on_terminal(args: list[str], *, stream: str, **kwargs) -> tuple[subprocess.CompletedProcess, str]:
    """Run `python -m orchestrator ARGS` with stdout or stderr (`stream`) on a pseudo-terminal.

    Returns the result (the other stream captured as text) and what the terminal showed.
    """
    import pty

    leader, follower = pty.openpty()
    other = "stderr" if stream == "stdout" else "stdout"
    try:
        result = subprocess.run([sys.executable, "-m", "orchestrator", *args], text=True,
                                **{stream: follower, other: subprocess.PIPE}, **kwargs)
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal is closed once the command is done
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    return result, shown.decode().replace("\r\n", "\n")


def new_uuid() -> str:
    return str(uuid.uuid4())


#: Where a failing browser test (tests/test_console*.py) leaves its screenshot.
SHOTS = Path(os.environ.get("CONSOLE_SHOTS") or Path(__file__).parent / ".artifacts")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A screenshot of the page for every failing test that drives a browser (`browser` fixture)."""
    outcome = yield
    report = outcome.get_result()
    browser = getattr(item, "funcargs", {}).get("browser")
    if report.failed and browser is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in item.nodeid)
        try:
            browser.save_screenshot(str(SHOTS / f"{name}-{report.when}.png"))
        except Exception as e:  # the browser itself may be what failed
            report.sections.append(("screenshot", f"no screenshot: {e}"))

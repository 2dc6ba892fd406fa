"""Ctrl-C in the terminal where `orchestrator serve` runs, and SIGTERM, stop it cleanly whenever they
come: while it starts (creating the ledger, checking it, gunicorn booting its worker, the worker
opening the ledger) and while it serves, with writes under way (issue 12, item 1: it sometimes
hung 30 s and ended in gunicorn's "Perhaps out of memory?" SIGKILL).

Each round starts `serve` on a pseudo-terminal of its own (its controlling terminal, as in a
shell), waits for a random moment, presses Ctrl-C there (or sends SIGTERM), and checks that it
exits within STOP_S, leaves no process behind, says nothing alarming (no traceback, no lost
exception, no worker killed by a signal), and that every write it acknowledged is in the log the
next round opens. The random moments start once the command's own first line has run (it then
catches SIGTERM, which Python alone does not): before that it is the interpreter starting.
"""

import fcntl
import os
import pty
import random
import signal
import subprocess
import sys
import termios
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from conftest import free_port, orchestrator, report, scale

from orchestrator.client import Client, ClientError

#: A clean stop takes a second or two; the hang this guards against took gunicorn's 30 s.
STOP_S = 15
#: How long `serve` takes to start here, about: Ctrl-C is pressed at a random moment within it.
STARTING_S = 2.5
ALARMS = ("Traceback", "Exception ignored", "SIGKILL", "Perhaps out of memory", "was sent SIG", "orchestrator: error")


def _take_terminal() -> None:  # in the child, a session leader: the pty on stdin becomes its terminal
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """`orchestrator serve` running on a pseudo-terminal; what it shows is collected as it comes."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.leader, follower = pty.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "serve", "--data-dir", str(data_dir), "--bind", f"127.0.0.1:{port}"],
            stdin=follower, stdout=follower, stderr=follower, start_new_session=True, preexec_fn=_take_terminal,
            env=env,
        )
        os.close(follower)
        self._shown = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.leader, 4096)
            except OSError:  # the terminal is gone once every process on it has exited
                return
            if not chunk:
                return
            self._shown += chunk

    @property
    def shown(self) -> str:
        return self._shown.decode(errors="replace").replace("\r\n", "\n")

    def wait_until_its_code_runs(self) -> None:
        """Until the command has installed its handlers (it catches SIGTERM: bit 15 of SigCgt)."""
        deadline = time.monotonic() + STOP_S
        while time.monotonic() < deadline and self.process.poll() is None:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
            caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
            if caught >> (signal.SIGTERM - 1) & 1:
                return
            time.sleep(0.002)
        raise AssertionError(f"the command did not start:\n{self.shown}")

    def ctrl_c(self) -> None:
        os.write(self.leader, termios.tcgetattr(self.leader)[6][termios.VINTR])

    def stopped_within(self, seconds: float) -> int | None:
        try:
            code = self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout=5)
        return code

    def leftovers(self) -> bool:
        """Whether a process of its group is still there a few seconds on (a worker outliving its
        master); an orphan that is just exiting is reaped by then."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return False
            time.sleep(0.05)
        return True

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def close(self) -> None:
        os.close(self.leader)


def _ready(port: int, data_dir: Path, terminal: Terminal) -> Client:
    """A client of the admin key (which the first `serve` creates), once the server answers."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert terminal.process.poll() is None, terminal.shown
        try:
            client = Client.from_file(f"http://127.0.0.1:{port}", data_dir / "keys" / "admin.pem")
            if client.get("/ledger/head").status_code == 200:
                return client
        except (OSError, requests.ConnectionError):  # no key yet, or not listening yet
            pass
        time.sleep(0.02)
    raise AssertionError(f"serve did not become ready:\n{terminal.shown}")


class Writer(threading.Thread):
    """Writes problems one after the other until the server stops answering; keeps the receipts."""

    def __init__(self, client: Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.receipts: list[tuple[str, int]] = []

    def run(self) -> None:
        while True:
            problem = str(uuid.uuid4())
            try:
                answer = self.client.add_problem(problem, str(uuid.uuid4()), [], 1)
            except ClientError:  # the server is stopping (or gone)
                return
            self.receipts.append((problem, answer["receipt"]["seq"]))


def _round(data_dir: Path, how: str, rng: random.Random) -> tuple[str, list[tuple[str, int]], float]:
    """One start and stop; returns what it showed, the writes it acknowledged and the stop's duration."""
    port = free_port()
    terminal = Terminal(data_dir, port)
    writer: Writer | None = None
    try:
        terminal.wait_until_its_code_runs()
        if rng.random() < 0.5:  # while it starts
            time.sleep(rng.uniform(0, STARTING_S))
        else:  # while it serves, with writes under way
            writer = Writer(_ready(port, data_dir, terminal))
            writer.start()
            time.sleep(rng.uniform(0, 0.2))
        started = time.monotonic()
        if how == "ctrl-c":
            terminal.ctrl_c()
        elif how == "sigterm":  # as systemd or `kill PID` sends it: to the main process alone
            os.kill(terminal.process.pid, signal.SIGTERM)
        else:  # to the whole group, as a test harness or `kill -- -PGID` does
            os.killpg(terminal.process.pid, signal.SIGTERM)
        code = terminal.stopped_within(STOP_S)
        took = time.monotonic() - started
        shown = terminal.shown
        assert code is not None, f"{how}: still running {STOP_S} s later:\n{shown}"
        assert not terminal.leftovers(), f"{how}: a process of the server outlived it:\n{shown}"
        expected = {"ctrl-c": (0, 130)}.get(how, (0, 143))
        assert code in expected, f"{how}: exit status {code}:\n{shown}"
        for alarm in ALARMS:
            assert alarm not in shown, f"{how}: {alarm!r} shown:\n{shown}"
        if writer is not None:
            writer.join(timeout=STOP_S)
        return shown, writer.receipts if writer is not None else [], took
    finally:
        if terminal.process.poll() is None:
            terminal.kill()
        terminal.close()


@pytest.mark.parametrize("how, rounds", [("ctrl-c", scale(14, 100)), ("sigterm", scale(4, 30)),
                                         ("sigterm-group", scale(4, 30))])
def test_serve_stops_cleanly_whenever_it_is_stopped(tmp_path: Path, how: str, rounds: int) -> None:
    data_dir = tmp_path / "data"  # created by the first round's serve, as in the quick start
    rng = random.Random()
    acknowledged: list[tuple[str, int]] = []
    durations = []
    for _ in range(rounds):
        _, receipts, took = _round(data_dir, how, rng)
        acknowledged += receipts
        durations.append(took)
    report(f"stopping/{how}", rounds=rounds, slowest_stop_s=f"{max(durations):.2f}", writes=len(acknowledged))
    if not (data_dir / "log").exists():
        return  # every round stopped before the ledger was created
    verify = orchestrator("verify", "--data-dir", str(data_dir), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # Every acknowledged write is in the log, where its receipt placed it.
    port = free_port()
    terminal = Terminal(data_dir, port)
    try:
        auditor = _ready(port, data_dir, terminal)
        for problem, seq in acknowledged:
            assert auditor.document("problem", problem)["uuid"] == problem
            assert auditor.entry(seq)["entry"]["target"].endswith("/problem")
        terminal.ctrl_c()
        assert terminal.stopped_within(STOP_S) == 0, terminal.shown
    finally:
        if terminal.process.poll() is None:
            terminal.kill()
        terminal.close()

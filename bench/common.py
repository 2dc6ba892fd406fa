"""Shared pieces of the benchmarks: servers on free ports, pre-signed requests, the table."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
from requests_http_signature import HTTPSignatureAuth, algorithms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger.entry import SignedRequest  # noqa: E402

THREADS = 64  # the bare gthread app's request threads (the old server's setting)
#: gunicorn settings both bare apps share with `orchestrator serve` (orchestrator/server.py).
GUNICORN = ["--workers", "1", "--keep-alive", "5", "--backlog", "2048", "--no-control-socket"]


def new_uuid() -> str:
    return str(uuid.uuid4())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sign_prepared(url: str, key_pem: bytes, key_id: str, method: str, path: str, body: object = None):
    auth = HTTPSignatureAuth(signature_algorithm=algorithms.ED25519, key=key_pem, key_id=key_id, use_nonce=True)
    return requests.Request(method, url + path, json=body, auth=auth).prepare()


def signed_request(key_pem: bytes, key_id: str, method: str, path: str, body: object = None) -> SignedRequest:
    """A signed request for in-process use (as the API would hand it to the ledger)."""
    prepared = sign_prepared("http://bench.local", key_pem, key_id, method, path, body)
    raw = prepared.body or b""
    raw = raw.encode() if isinstance(raw, str) else raw
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    return SignedRequest(method, str(prepared.url), headers, raw)


def init(data_dir: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "orchestrator", "init", "--data-dir", str(data_dir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@dataclass
class Server:
    process: subprocess.Popen
    url: str

    def worker_pid(self) -> int:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()
        return int(out[0])

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.worker_pid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def usage(self) -> tuple[float, int]:
        """The worker's CPU seconds (user + system) and context switches so far, over all its threads."""
        pid, cpu, switches = self.worker_pid(), 0.0, 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
                status = (task / "status").read_text()
            except FileNotFoundError:  # a thread that just ended
                continue
            cpu += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
            for line in status.splitlines():
                name, _, value = line.partition(":")
                if name in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                    switches += int(value)
        return cpu, switches

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)


def _wait(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {process.returncode}")
        try:
            requests.get(url + "/", timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def spawn(args: list[str], port: int, *, module: bool = True) -> Server:
    """Start a server process (python -m ARGS, or python ARGS) in its own session; wait until it answers."""
    command = [sys.executable, "-m", *args] if module else [sys.executable, *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait(url, process)
    return Server(process, url)


def ledger_server(data_dir: Path) -> Server:
    """`orchestrator serve` with its default settings (one uvicorn worker, a read pool of 4)."""
    port = free_port()
    bind = f"127.0.0.1:{port}"
    return spawn(["orchestrator", "serve", "--data-dir", str(data_dir), "--bind", bind], port)


def bare_server() -> Server:
    """A bare Falcon (WSGI) app under gunicorn's gthread worker: one worker, 64 threads (yesterday's stack)."""
    port = free_port()
    settings = [*GUNICORN, "--worker-class", "gthread", "--threads", str(THREADS), "--bind", f"127.0.0.1:{port}"]
    return spawn(["gunicorn", *settings, "--chdir", str(ROOT / "bench"), "bare_app:app"], port)


def bare_asgi_server() -> Server:
    """A bare Falcon ASGI app under gunicorn with uvicorn-worker (uvloop, httptools): one worker, as we serve."""
    port = free_port()
    settings = [*GUNICORN, "--worker-class", "uvicorn_worker.UvicornWorker", "--bind", f"127.0.0.1:{port}"]
    return spawn(["gunicorn", *settings, "--chdir", str(ROOT / "bench"), "bare_asgi_app:app"], port)


@dataclass
class Row:
    figure: str
    value: float
    ceiling: float
    unit: str
    goal: str
    ratio_of: str = "value/ceiling"

    @property
    def ratio(self) -> float:
        return self.value / self.ceiling if self.ceiling else float("nan")


def print_table(rows: list[Row]) -> None:
    head = f"| {'figure':<58} | {'value':>12} | {'ceiling (same run)':>18} | {'ratio':>6} | goal"
    print(head)
    print("|" + "-" * 60 + "|" + "-" * 14 + "|" + "-" * 20 + "|" + "-" * 8 + "|------")
    for row in rows:
        print(
            f"| {row.figure:<58} | {row.value:>8.1f} {row.unit:<3} | {row.ceiling:>14.1f} {row.unit:<3} "
            f"| {row.ratio:>6.2f} | {row.goal}"
        )

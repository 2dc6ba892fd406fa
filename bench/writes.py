"""Durable writes/s over HTTP at several concurrencies, against a bare-Falcon ceiling.

Usage: python bench/writes.py [--clients 1,8,32] [--requests 3000]

Starts a fresh ledger server and the bare app (same gunicorn settings) on free
ports, sends pre-signed POST /data requests from a separate process, prints a
table with both rates and their ratio.
"""

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/ledger/head", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def gunicorn_bare(port: int, threads: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread", "--threads", str(threads),
         "--bind", f"127.0.0.1:{port}", "--keep-alive", "5", "--backlog", "2048", "--no-control-socket",
         "--chdir", str(ROOT / "bench"), "bare_app:app"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def _load_process(url: str, key_file: str, problem: str, clients: int, total: int, queue) -> None:
    key = Path(key_file).read_bytes()
    per = max(1, total // clients)
    batches = [
        [load.presign(url, key, "admin", "POST", "/data", {"uuid": str(uuid.uuid4()), "problems": problem})
         for _ in range(per)]
        for _ in range(clients)
    ]
    result = load.run(url, batches)
    queue.put((result.requests, result.seconds, result.statuses, result.percentile(50), result.percentile(99)))


def measure(url: str, key_file: Path, problem: str, clients: int, total: int) -> tuple:
    queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_load_process, args=(url, str(key_file), problem, clients, total, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--requests", type=int, default=3000, help="requests per concurrency level")
    parser.add_argument("--threads", type=int, default=64, help="gunicorn threads (both servers)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-writes-"))
    data = tmp / "data"
    subprocess.run([sys.executable, "-m", "orchestrator", "init", "--data-dir", str(data)], check=True,
                   stdout=subprocess.DEVNULL)
    ledger_port, bare_port = free_port(), free_port()
    ledger_url, bare_url = f"http://127.0.0.1:{ledger_port}", f"http://127.0.0.1:{bare_port}"
    servers = [
        subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--data-dir", str(data), "--bind",
                          f"127.0.0.1:{ledger_port}", "--threads", str(args.threads)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
        gunicorn_bare(bare_port, args.threads),
    ]
    try:
        wait_up(ledger_url)
        wait_up(bare_url)
        key_file = data / "keys" / "admin.pem"
        problem = str(uuid.uuid4())
        setup = load.presign(ledger_url, key_file.read_bytes(), "admin", "POST", "/problem",
                             {"uuid": problem, "workflow": str(uuid.uuid4()), "test_dataset": [],
                              "size_train_dataset": 10})
        r = requests.post(ledger_url + setup.path, data=setup.body, headers=setup.headers)
        assert r.status_code == 201, r.text
        print(f"{'clients':>7} {'ledger w/s':>11} {'bare w/s':>9} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7}  statuses")
        for clients in [int(c) for c in args.clients.split(",")]:
            n, secs, statuses, p50, p99 = measure(ledger_url, key_file, problem, clients, args.requests)
            bn, bsecs, _, _, _ = measure(bare_url, key_file, problem, clients, args.requests)
            rate, bare = n / secs, bn / bsecs
            print(f"{clients:>7} {rate:>11.0f} {bare:>9.0f} {rate / bare:>6.2f} {p50 * 1000:>7.1f} {p99 * 1000:>7.1f}"
                  f"  {statuses}")
    finally:
        for s in servers:
            os.killpg(s.pid, 15)
            s.wait()


if __name__ == "__main__":
    main()

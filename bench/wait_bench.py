"""Waiting clients against writes: 1,000 clients each holding a `GET ...&wait=60` while 32 clients
write (http_bench's mix: /data, /algo, a claim and its report), against the same writes with no
one waiting, on one server, in alternating runs (the median of each kind).

The machine is shared: runs with and without alternate (ABBA), and each figure is the median of
its runs; the server's CPU time per write, from /proc, is the diagnostic beside it.

Two kinds of waiting clients:
- waiting for todo work on problems that get none, each its own (a Compute fleet with nothing to
  do): no batch adds anything under what they wait on, so no batch wakes them;
- all waiting on one query that every report (`/learndone`: an existing learnuplet becomes done)
  may answer but none does (`learnuplet?status=done&worker=W`): after each batch with a report the
  query runs again, once, for all of them.

The waiting clients come from a separate process (asyncio, one connection each, every request
signed before the clock starts); the server's own gauge (orchestrator_waiting_requests) shows
them all waiting before each run, and they are checked to have got no answer during it. A
diagnostic row gives how often their queries ran again (orchestrator_wait_looks_total) per commit
group.
"""

import asyncio
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import load
import requests
from common import Row, init, ledger_server, new_uuid, sign_prepared
from http_bench import _mix, post, run_load, usage_since

WAITERS = 1000
CLIENTS = 32


def _request_bytes(url: str, key: bytes, path: str) -> bytes:
    prepared = load.presign(url, key, "admin", "GET", path)
    host = urlsplit(url).netloc
    lines = [f"GET {prepared.path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in prepared.headers.items() if name.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _hold(url: str, requests_: list[bytes], sent, stop, answered) -> None:
    """In its own process: one connection per request, each sent and left waiting until `stop`."""

    async def main() -> None:
        parts = urlsplit(url)
        connections = []
        for raw in requests_:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=1 << 20)
            writer.write(raw)
            connections.append((reader, writer))
        await asyncio.gather(*(writer.drain() for _, writer in connections))
        sent.set()
        reads = [asyncio.ensure_future(reader.read(1)) for reader, _ in connections]
        while not stop.is_set():
            await asyncio.sleep(0.05)
        answered.value = sum(1 for read in reads if read.done() and read.result())
        for read in reads:
            read.cancel()
        for _, writer in connections:
            writer.close()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * len(requests_))), hard))
    asyncio.run(main())


class Waiting:
    """WAITERS clients holding waiting requests, from another process, for one run."""

    def __init__(self, url: str, requests_: list[bytes]) -> None:
        self.url = url
        self.sent, self.stop = multiprocessing.Event(), multiprocessing.Event()
        self.answered = multiprocessing.Value("i", -1)
        self.process = multiprocessing.Process(
            target=_hold, args=(url, requests_, self.sent, self.stop, self.answered)
        )
        self.count = len(requests_)

    def __enter__(self) -> "Waiting":
        self.process.start()
        assert self.sent.wait(120), "the waiting clients could not connect"
        deadline = time.monotonic() + 120
        while _waiting(self.url) < self.count:
            assert time.monotonic() < deadline, f"only {_waiting(self.url)} of {self.count} waiting"
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.process.join(60)
        deadline = time.monotonic() + 60
        while _waiting(self.url) > 0 and time.monotonic() < deadline:  # the server saw them go
            time.sleep(0.1)


def _metric(url: str, name: str) -> float:
    for line in requests.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def _waiting(url: str) -> int:
    return int(_metric(url, "orchestrator_waiting_requests"))


def _looks_and_groups(url: str) -> tuple[float, float]:
    """Queries run again for waiting requests, and commit groups, so far."""
    return _metric(url, "orchestrator_wait_looks_total"), _metric(url, "orchestrator_commit_group_size_count")


def _uplets(url: str, key_file: Path, problem: str, needed: int) -> list[str]:
    """At least `needed` todo learnuplets of `problem` (one data, size_train_dataset 1): one per algo,
    the algos posted by CLIENTS clients at once."""
    key = key_file.read_bytes()
    post(url, key, "/data", {"uuid": new_uuid(), "problems": problem})
    per = -(-needed // CLIENTS)
    algo = {"name": "setup", "problem": problem}
    run_load(url, key_file, [[("POST", "/algo", {**algo, "uuid": new_uuid()}) for _ in range(per)]
                             for _ in range(CLIENTS)])
    found: list[str] = []
    after = ""
    while True:
        query = f"/learnuplet?problem={problem}&status=todo&limit=10000" + (f"&after={after}" if after else "")
        page = requests.Session().send(sign_prepared(url, key, "admin", "GET", query)).json()
        found += [u["uuid"] for u in page["learnuplets"]]
        if "next_after" not in page:
            return found
        after = page["next_after"]


def measure(requests_per_run: int, rounds: int, verbose: bool = False) -> list[Row]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * WAITERS + 256)), hard))  # the server's
    tmp = Path(tempfile.mkdtemp(prefix="bench-wait-"))
    data = tmp / "data"
    init(data)
    key_file = data / "keys" / "admin.pem"
    key = key_file.read_bytes()
    server = ledger_server(data)
    rows: list[Row] = []
    try:
        url = server.url
        p_uplets, p_data, p_algo = new_uuid(), new_uuid(), new_uuid()
        for p in (p_uplets, p_data, p_algo):
            post(url, key, "/problem", {"uuid": p, "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1})
        per = max(4, requests_per_run // CLIENTS)
        runs = 2 * 2 * rounds  # with and without waiters, for each kind
        uplets = _uplets(url, key_file, p_uplets, runs * CLIENTS * (per // 4 + 1))
        never = new_uuid()
        kinds = {
            "waiting for todo work that never comes": lambda: [
                f"/learnuplet?problem={new_uuid()}&status=todo&wait=60" for _ in range(WAITERS)
            ],
            "waiting on one query every report wakes": lambda: [
                f"/learnuplet?status=done&worker={never}&wait=60" for _ in range(WAITERS)
            ],
        }
        for label, paths in kinds.items():
            rates: dict[bool, list[float]] = {False: [], True: []}
            cpu: dict[bool, list[float]] = {False: [], True: []}
            looks = groups = 0.0
            answered = 0
            for round_ in range(rounds):
                for with_waiters in (False, True) if round_ % 2 == 0 else (True, False):  # ABBA: drift cancels
                    plans = [_mix(per, uplets, p_data, p_algo) for _ in range(CLIENTS)]
                    waiting = None
                    if with_waiters:
                        waiting = Waiting(url, [_request_bytes(url, key, path) for path in paths()])
                        waiting.__enter__()
                    try:
                        counted = _looks_and_groups(url)
                        used = server.usage()
                        n, secs, statuses, _, _ = run_load(url, key_file, plans)
                        seconds, _ = usage_since(server, used)
                        if with_waiters:
                            now = _looks_and_groups(url)
                            looks, groups = looks + now[0] - counted[0], groups + now[1] - counted[1]
                    finally:
                        if waiting is not None:
                            waiting.__exit__()
                            answered += max(0, waiting.answered.value)
                    errors = {s: c for s, c in statuses.items() if s not in (200, 201)}
                    assert not errors, errors
                    rates[with_waiters].append(n / secs)
                    cpu[with_waiters].append(seconds / n * 1e6)
                    if verbose:
                        print(f"  {label}: {'with' if with_waiters else 'none'}: {n / secs:.1f}/s, "
                              f"{seconds / n * 1e6:.0f} us CPU per write", flush=True)
            figure = f"durable writes/s, {CLIENTS} clients, {WAITERS} {label}, vs none"
            if answered:
                figure += f" ({answered} answered early)"
            rows.append(Row(figure, statistics.median(rates[True]), statistics.median(rates[False]), "/s",
                            ">= 0.95 of ceiling"))
            rows.append(Row("  (diagnostic) server CPU per write, the same runs", statistics.median(cpu[True]),
                            statistics.median(cpu[False]), "us", ""))
            rows.append(Row("  (diagnostic) queries run again per commit group, vs one", looks / max(groups, 1), 1.0,
                            "", "0 when nothing waited on changes"))
    finally:
        server.stop()
    return rows


if __name__ == "__main__":
    import argparse

    from common import print_table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2400, help="writes per run (default 2400)")
    parser.add_argument("--rounds", type=int, default=4, help="runs of each kind, with and without (default 4)")
    parser.add_argument("--verbose", action="store_true", help="print each run's figures as it ends")
    args = parser.parse_args()
    print_table(measure(args.requests, args.rounds, args.verbose))

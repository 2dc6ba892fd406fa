"""HTTP figures: durable writes/s at several concurrencies, and signed GET latency, against a bare app.

Load comes from a separate process over loopback keep-alive connections, with
every request signed before the clock starts (bench/load.py).
"""

import multiprocessing
import tempfile
from pathlib import Path

import load
import requests
from common import Row, bare_server, init, ledger_server, new_uuid, sign_prepared


def _load_process(url: str, key_file: str, plans: list[list[tuple[str, str, object]]], queue) -> None:
    key = Path(key_file).read_bytes()
    batches = [[load.presign(url, key, "admin", method, path, body) for method, path, body in plan] for plan in plans]
    result = load.run(url, batches)
    queue.put((result.requests, result.seconds, result.statuses, result.percentile(50), result.percentile(99)))


def run_load(url: str, key_file: Path, plans: list[list[tuple[str, str, object]]]) -> tuple:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_load_process, args=(url, str(key_file), plans, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def post(url: str, key: bytes, path: str, body: object) -> dict:
    prepared = sign_prepared(url, key, "admin", "POST", path, body)
    response = requests.Session().send(prepared)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _todo_learnuplets(url: str, key: bytes, problem: str) -> list[str]:
    prepared = sign_prepared(url, key, "admin", "GET", f"/learnuplet?problem={problem}&status=todo&limit=10000")
    response = requests.Session().send(prepared)
    assert response.status_code == 200, response.text
    return [u["uuid"] for u in response.json()["learnuplets"]]


def _mix(per_client: int, uplets: list[str], p_data: str, p_algo: str) -> list[tuple[str, str, object]]:
    """Per client: /data, /algo, then claim and report one learnuplet, in rotation."""
    plan: list[tuple[str, str, object]] = []
    while len(plan) < per_client:
        plan.append(("POST", "/data", {"uuid": new_uuid(), "problems": p_data}))
        plan.append(("POST", "/algo", {"uuid": new_uuid(), "name": "bench", "problem": p_algo}))
        if uplets:
            uplet = uplets.pop()
            plan.append(("POST", f"/worker/learnuplet/{uplet}", {"worker": new_uuid()}))
            plan.append(
                ("POST", f"/learndone/{uplet}", {"status": "done", "perf": 0.5, "train_perf": [0.5], "test_perf": []})
            )
    return plan[:per_client]


def measure(clients_levels: list[int], requests_per_level: int) -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    data = tmp / "data"
    init(data)
    key_file = data / "keys" / "admin.pem"
    key = key_file.read_bytes()
    ledger, bare = ledger_server(data), bare_server()
    rows: list[Row] = []
    try:
        url = ledger.url
        p_uplets, p_data, p_algo = new_uuid(), new_uuid(), new_uuid()
        for p in (p_uplets, p_data, p_algo):
            post(
                url, key, "/problem", {"uuid": p, "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
            )
        post(url, key, "/data", {"uuid": new_uuid(), "problems": p_uplets})
        claims_needed = sum(requests_per_level // 4 + 2 * c for c in clients_levels)
        for _ in range(claims_needed):
            post(url, key, "/algo", {"uuid": new_uuid(), "name": "setup", "problem": p_uplets})
        uplets = _todo_learnuplets(url, key, p_uplets)
        diagnostics: list[Row] = []
        for clients in clients_levels:
            per = max(4, requests_per_level // clients)
            plans = [_mix(per, uplets, p_data, p_algo) for _ in range(clients)]
            used = ledger.usage()
            n, secs, statuses, _, _ = run_load(url, key_file, plans)
            cpu, switches = usage_since(ledger, used)
            bare_plans = [[("POST", "/data", body) for _, _, body in plan] for plan in plans]
            used = bare.usage()
            bn, bsecs, _, _, _ = run_load(bare.url, key_file, bare_plans)
            bare_cpu, bare_switches = usage_since(bare, used)
            if clients == 32:  # where the time goes: the worker's CPU and context switches per request
                label = "  (diagnostic) {} per write, 32 clients"
                diagnostics = [
                    Row(label.format("server CPU"), cpu / n * 1e6, bare_cpu / bn * 1e6, "us", ""),
                    Row(label.format("context switches"), switches / n, bare_switches / bn, "", ""),
                ]
            errors = {s: c for s, c in statuses.items() if s not in (200, 201)}
            goal = ">= 0.60 of ceiling and >= 1500/s" if clients == 32 else ""
            rows.append(
                Row(
                    f"durable writes/s, {clients} clients" + (f" (errors {errors})" if errors else ""),
                    n / secs,
                    bn / bsecs,
                    "/s",
                    goal,
                )
            )
        rows.extend(diagnostics)
        # Signed GET by uuid under 32 clients.
        documents = [("GET", f"/algo/{u}", None) for u in _algo_uuids(url, key, p_uplets)]
        per = max(20, requests_per_level // 32)
        plans = [[documents[(i * per + j) % len(documents)] for j in range(per)] for i in range(32)]
        _, _, statuses, p50, p99 = run_load(url, key_file, plans)
        _, _, _, bp50, bp99 = run_load(bare.url, key_file, plans)
        rows.append(Row("signed GET by uuid, 32 clients: p50 latency", p50 * 1000, bp50 * 1000, "ms", ""))
        rows.append(Row("signed GET by uuid, 32 clients: p99 latency", p99 * 1000, bp99 * 1000, "ms", "p99 < 10 ms"))
    finally:
        ledger.stop()
        bare.stop()
    return rows


def usage_since(server, before: tuple[float, int]) -> tuple[float, int]:
    """The server's CPU seconds and context switches since `before` (an earlier server.usage())."""
    cpu, switches = server.usage()
    return cpu - before[0], switches - before[1]


def _algo_uuids(url: str, key: bytes, problem: str) -> list[str]:
    prepared = sign_prepared(url, key, "admin", "GET", f"/algo?problem={problem}&limit=2000")
    return [a["uuid"] for a in requests.Session().send(prepared).json()["algos"]]


if __name__ == "__main__":
    from common import print_table

    print_table(measure([1, 32], 1000))

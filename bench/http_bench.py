"""HTTP figures: durable writes/s at several concurrencies, and signed GET latency, against bare apps.

Two ceilings, measured in the same run with the same load: a bare Falcon ASGI app under gunicorn
with uvicorn-worker (the stack `orchestrator serve` runs on) at every concurrency, and a bare
Falcon WSGI app under gunicorn's gthread worker with 64 threads (the stack it ran on before) at
32 clients. Load comes from a separate process over loopback keep-alive connections, with every
request signed before the clock starts (bench/load.py).
"""

import multiprocessing
import tempfile
from pathlib import Path

import load
import requests
from common import Row, bare_asgi_server, bare_server, init, ledger_server, new_uuid, sign_prepared


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


def _bare(server, key_file: Path, plans: list[list[tuple[str, str, object]]]) -> tuple[float, float, float]:
    """A bare app's requests/s, worker CPU microseconds and context switches per request, for the same plans."""
    bare_plans = [[("POST", "/data", body) for _, _, body in plan] for plan in plans]
    used = server.usage()
    n, secs, _, _, _ = run_load(server.url, key_file, bare_plans)
    cpu, switches = usage_since(server, used)
    return n / secs, cpu / n * 1e6, switches / n


def measure(clients_levels: list[int], requests_per_level: int) -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    data = tmp / "data"
    init(data)
    key_file = data / "keys" / "admin.pem"
    key = key_file.read_bytes()
    ledger, bare, asgi = ledger_server(data), bare_server(), bare_asgi_server()
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
        extra: list[Row] = []
        for clients in clients_levels:
            per = max(4, requests_per_level // clients)
            plans = [_mix(per, uplets, p_data, p_algo) for _ in range(clients)]
            used = ledger.usage()
            n, secs, statuses, _, _ = run_load(url, key_file, plans)
            cpu, switches = usage_since(ledger, used)
            asgi_rate, asgi_cpu, asgi_switches = _bare(asgi, key_file, plans)
            errors = {s: c for s, c in statuses.items() if s not in (200, 201)}
            label = f"durable writes/s, {clients} clients" + (f" (errors {errors})" if errors else "")
            goal = ">= 2000/s, >= 0.35 of ceiling" if clients == 32 else ""
            rows.append(Row(label + " vs bare ASGI", n / secs, asgi_rate, "/s", goal))
            if clients == 32:
                gthread_rate, _, _ = _bare(bare, key_file, plans)
                extra = [
                    Row(label + " vs bare gthread", n / secs, gthread_rate, "/s", ">= 1.0x ceiling"),
                    # Where the time goes: the worker's CPU and context switches per request.
                    Row("  (diagnostic) server CPU per write vs bare ASGI", cpu / n * 1e6, asgi_cpu, "us", ""),
                    Row("  (diagnostic) context switches per write vs bare ASGI", switches / n, asgi_switches, "", ""),
                ]
        rows.extend(extra)
        # Signed GET by uuid under 32 clients.
        documents = [("GET", f"/algo/{u}", None) for u in _algo_uuids(url, key, p_uplets)]
        per = max(20, requests_per_level // 32)
        plans = [[documents[(i * per + j) % len(documents)] for j in range(per)] for i in range(32)]
        _, _, statuses, p50, p99 = run_load(url, key_file, plans)
        _, _, _, bp50, bp99 = run_load(asgi.url, key_file, plans)
        label = "signed GET by uuid, 32 clients: {} latency vs bare ASGI"
        rows.append(Row(label.format("p50"), p50 * 1000, bp50 * 1000, "ms", ""))
        rows.append(Row(label.format("p99"), p99 * 1000, bp99 * 1000, "ms", "p99 < 10 ms"))
    finally:
        ledger.stop()
        bare.stop()
        asgi.stop()
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

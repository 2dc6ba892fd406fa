"""What witnessing costs the write path: the same durable write load against a node without
witnesses and against one sending its checkpoints to witnesses (`orchestrator witness serve` on
this machine), interleaved, each on a fresh ledger.

    python bench/witness_cost.py [--requests 4000] [--clients 32] [--witnesses 1] [--repeat 2]

Prints, per configuration, durable writes/s, the server worker's CPU time per write (all its
threads, from /proc) and the witness rounds (cosignatures collected) during the load. The
machine is shared: compare the two configurations of one run, not absolute numbers.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402
from common import Server, free_port, init, new_uuid, spawn  # noqa: E402
from http_bench import post, run_load, usage_since  # noqa: E402


def _witness(tmp: Path, name: str, vkey_file: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    directory = tmp / name
    vkey = subprocess.run(
        [sys.executable, "-m", "orchestrator", "witness", "init", "--dir", str(directory), "--name", f"bench/{name}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "witness", "serve", "--dir", str(directory), "--bind",
         f"127.0.0.1:{port}", "--log", str(vkey_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/", timeout=2)
            return process, url, vkey
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError("the witness did not come up")


def _cosignatures(server: Server) -> tuple[int, float]:
    """Cosignatures collected so far, and the CPU seconds the witness threads spent."""
    ready = requests.get(server.url + "/readyz", timeout=10).json()
    witnesses = ready.get("witnessing", {}).get("witnesses", [])
    return sum(w["cosignatures"] for w in witnesses), sum(w["cpu_seconds"] for w in witnesses)


def one_run(
    tmp: Path, label: str, witnesses: int, requests_total: int, clients: int
) -> tuple[float, float, int, float]:
    data = tmp / label / "data"
    init(data)
    processes: list[subprocess.Popen[bytes]] = []
    args: list[str] = []
    if witnesses:
        vkey_file = tmp / label / "node.vkey"
        vkey_file.write_text(
            subprocess.run([sys.executable, "-m", "orchestrator", "vkey", "--data-dir", str(data)], check=True,
                           capture_output=True, text=True).stdout
        )
        for i in range(witnesses):
            process, url, vkey = _witness(tmp / label, f"w{i}", vkey_file)
            processes.append(process)
            args += ["--witness", f"{url}={vkey}"]
    port = free_port()
    server = spawn(["orchestrator", "serve", "--data-dir", str(data), "--bind", f"127.0.0.1:{port}", *args], port)
    try:
        key_file = data / "keys" / "admin.pem"
        problem = new_uuid()
        body = {"uuid": problem, "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
        post(server.url, key_file.read_bytes(), "/problem", body)
        per = max(1, requests_total // clients)
        plans = [[("POST", "/data", {"uuid": new_uuid(), "problems": problem}) for _ in range(per)]
                 for _ in range(clients)]
        before_rounds, before_cpu = _cosignatures(server)
        used = server.usage()
        n, seconds, statuses, _, _ = run_load(server.url, key_file, plans)
        cpu, _ = usage_since(server, used)
        after_rounds, after_cpu = _cosignatures(server)
        rounds, round_cpu = after_rounds - before_rounds, after_cpu - before_cpu
        bad = {s: c for s, c in statuses.items() if s not in (200, 201)}
        if bad:
            raise RuntimeError(f"{label}: errors {bad}")
        return n / seconds, cpu / n * 1e6, rounds, round_cpu / max(1, rounds) * 1e6
    finally:
        server.stop()
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--witnesses", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-witness-"))
    results: dict[str, list[tuple[float, float, int, float]]] = {"none": [], "witnessed": []}
    for i in range(args.repeat):
        for label, count in (("none", 0), ("witnessed", args.witnesses)):
            result = one_run(tmp, f"{label}-{i}", count, args.requests, args.clients)
            results[label].append(result)
            print(f"  {label:>9} run {i}: {result[0]:.0f} writes/s, {result[1]:.0f} us CPU/write, "
                  f"{result[2]} witness rounds ({result[3]:.0f} us CPU each in the witness thread)", flush=True)
    print()
    for label, runs in results.items():
        rate = sum(r[0] for r in runs) / len(runs)
        cpu = sum(r[1] for r in runs) / len(runs)
        rounds = sum(r[2] for r in runs) / len(runs)
        per_round = sum(r[3] for r in runs) / len(runs)
        print(f"{label:>9}: {rate:.0f} writes/s, {cpu:.0f} us server CPU per write, {rounds:.0f} witness rounds"
              + (f", {per_round:.0f} us CPU per round" if rounds else ""))
    base, witnessed = results["none"], results["witnessed"]
    rate_ratio = (sum(r[0] for r in witnessed) / len(witnessed)) / (sum(r[0] for r in base) / len(base))
    print(f"writes/s with {args.witnesses} witness(es) / without: {rate_ratio:.2f}")


if __name__ == "__main__":
    main()

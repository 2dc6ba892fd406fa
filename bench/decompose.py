"""Where a durable write's server time goes: the worker's CPU time and context switches per write
at 32 clients, for the bare app and for the ledger server with parts of the write path switched
off (bench/variant_server.py). Each row's ceiling is the bare ASGI app (the same gunicorn and
uvicorn-worker stack) measured in the same run.

    python bench/decompose.py [--requests N]
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench  # noqa: E402
from common import Row, bare_asgi_server, free_port, init, new_uuid, print_table, spawn  # noqa: E402

CLIENTS = 32


def _measure(server, key_file: Path, problem: str, requests: int) -> tuple[float, float, float]:
    """Writes/s, worker CPU microseconds per write and context switches per write."""
    per = requests // CLIENTS
    plans = [[("POST", "/data", {"uuid": new_uuid(), "problems": problem}) for _ in range(per)] for _ in range(CLIENTS)]
    before = server.usage()
    n, seconds, statuses, _, _ = http_bench.run_load(server.url, key_file, plans)
    cpu, switches = http_bench.usage_since(server, before)
    assert set(statuses) <= {200, 201}, statuses
    return n / seconds, cpu / n * 1e6, switches / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="writes per server (default 3000)")
    args = parser.parse_args()
    bare = bare_asgi_server()
    rows: list[Row] = []
    try:
        baseline = None
        for variant in ("no-auth", "no-writer", "full"):
            data = Path(tempfile.mkdtemp(prefix="bench-decompose-")) / "data"
            init(data)
            key_file = data / "keys" / "admin.pem"
            port = free_port()
            server = _spawn_variant(data, port, variant)
            try:
                problem = new_uuid()
                if variant == "full":
                    body = {"uuid": problem, "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
                    http_bench.post(server.url, key_file.read_bytes(), "/problem", body)
                if baseline is None:
                    baseline = _measure(bare, key_file, problem, args.requests)
                rate, cpu, switches = _measure(server, key_file, problem, args.requests)
            finally:
                server.stop()
            assert baseline is not None
            rows.append(Row(f"{variant}: writes/s", rate, baseline[0], "/s", ""))
            rows.append(Row(f"{variant}: server CPU per write", cpu, baseline[1], "us", ""))
            rows.append(Row(f"{variant}: context switches per write", switches, baseline[2], "", ""))
    finally:
        bare.stop()
    print_table(rows)


def _spawn_variant(data: Path, port: int, variant: str):
    script = str(Path(__file__).resolve().parent / "variant_server.py")
    return spawn([script, str(data), f"127.0.0.1:{port}", variant], port, module=False)


if __name__ == "__main__":
    main()

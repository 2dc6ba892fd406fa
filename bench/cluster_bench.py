"""Durable signed writes/s through three nodes ordered by three etcd members, against one node alone.

    python bench/cluster_bench.py [--clients 32] [--per-client 60]

Both runs: `clients` connections, each posting `per-client` problems signed in advance; through
the cluster the connections go to the nodes in turn (`orchestrator cluster up`, loopback). A write
is answered once the node that took it has applied it from etcd's order and synced its log. The
machine is shared: compare the ratio, not the absolute numbers.
"""

import argparse
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, init, ledger_server, new_uuid, print_table  # noqa: E402
from load import Prepared, Result, presign, run  # noqa: E402

from orchestrator import cluster  # noqa: E402


def _plans(urls: list[str], key: bytes, clients: int, per_client: int) -> list[tuple[str, list[Prepared]]]:
    plans = []
    for i in range(clients):
        url = urls[i % len(urls)]
        batch = [presign(url, key, "admin", "POST", "/problem",
                         {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1})
                 for _ in range(per_client)]
        plans.append((url, batch))
    return plans


def _load(plans: list[tuple[str, list[Prepared]]]) -> Result:
    """The plans' batches, each url's on its own runner, all at once; one Result."""
    by_url: dict[str, list[list[Prepared]]] = {}
    for url, batch in plans:
        by_url.setdefault(url, []).append(batch)
    results: list[Result] = []
    threads = [threading.Thread(target=lambda u=u, b=b: results.append(run(u, b))) for u, b in by_url.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses: dict[int, int] = {}
    for result in results:
        for status, n in result.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return Result(sum(r.requests for r in results), max(r.seconds for r in results), statuses,
                  [x for r in results for x in r.latencies])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        init(base / "single")
        server = ledger_server(base / "single")
        try:
            key = (base / "single" / "keys" / "admin.pem").read_bytes()
            alone = _load(_plans([server.url], key, args.clients, args.per_client))
        finally:
            server.stop()
        urls = cluster.up(base / "cluster", 3)
        try:
            key = (base / "cluster" / "node1" / "keys" / "admin.pem").read_bytes()
            three = _load(_plans(urls, key, args.clients, args.per_client))
        finally:
            cluster.down(base / "cluster")
    for name, result in (("one node", alone), ("3 nodes", three)):
        print(f"{name}: {result.rate:.0f} writes/s, statuses {result.statuses}, p50 "
              f"{result.percentile(50) * 1000:.1f} ms, p99 {result.percentile(99) * 1000:.1f} ms")
    print_table([
        Row(f"signed writes/s, 3 nodes + 3 etcd, {args.clients} clients", three.rate, alone.rate, "/s",
            ">= 1,500 (ceiling: one node alone)"),
        Row("write p50 ms, 3 nodes (ceiling: one node)", three.percentile(50) * 1000, alone.percentile(50) * 1000,
            "ms", ""),
        Row("write p99 ms, 3 nodes (ceiling: one node)", three.percentile(99) * 1000, alone.percentile(99) * 1000,
            "ms", ""),
    ])


if __name__ == "__main__":
    main()

"""Run every benchmark and print one table: each figure, its ceiling measured in the same run, the ratio.

    python bench/run.py            # full: ~30-60 minutes on a 2-core machine
    python bench/run.py --quick    # a few minutes: smaller ledgers, fewer requests
    python bench/run.py --engine   # the engine rows alone: replay, verify, apply by write kind

The machine is shared and noisy: compare ratios, not absolute numbers.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import apply_bench  # noqa: E402
import engine_bench  # noqa: E402
import http_bench  # noqa: E402
import wait_bench  # noqa: E402
from common import print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run in a few minutes")
    parser.add_argument(
        "--engine", action="store_true", help="only replay, verify and apply by write kind (no HTTP, proofs, queries)"
    )
    args = parser.parse_args()
    if args.quick:
        levels, per_level, entries, uplets, tree, many = [1, 8, 32, 64], 600, 5_000, 20_000, 100_000, 20_000
        small_uplets, few, per_kind = 2_000, 1_000, 200
        waited_writes, wait_rounds = 800, 2
    else:
        levels, per_level, entries, uplets, tree, many = [1, 8, 32, 64], 5_000, 100_000, 1_000_000, 1_000_000, 1_000_000
        small_uplets, few, per_kind = 10_000, 10_000, 1_000
        waited_writes, wait_rounds = 4_000, 6
    started = time.monotonic()
    rows: list = []

    def add(new_rows: list) -> None:  # print as we go: a late failure must not lose the figures
        rows.extend(new_rows)
        for row in new_rows:
            print(f"  measured: {row.figure}: {row.value:.1f} {row.unit} (ceiling {row.ceiling:.1f})", flush=True)

    if not args.engine:
        add(http_bench.measure(levels, per_level))
        add(wait_bench.measure(waited_writes, wait_rounds))
    ledger = engine_bench.build_entries(entries)
    add(engine_bench.replay_rows(ledger))
    add(engine_bench.verify_rows(ledger))
    add(apply_bench.apply_rows(per_kind))  # the state machine by write kind, on a ledger of its own
    if not args.engine:
        add(engine_bench.proof_rows(1_000, tree))  # in-process: the tree reads alone
        add(engine_bench.query_rows(small_uplets, uplets))
        small = engine_bench.build_entries(few)
        big = ledger if many == entries else engine_bench.build_entries(many)
        add(engine_bench.served_rows(small, big, few, many))
    print()
    print_table(rows)
    kind = ("quick" if args.quick else "full") + (" engine" if args.engine else "")
    print(f"\n({kind} run, {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()

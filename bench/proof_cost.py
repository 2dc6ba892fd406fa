"""Where an inclusion proof's time goes, at a small and a big tree (the row "inclusion proof
time" of bench/run.py, taken apart):

    python bench/proof_cost.py [--small 1000] [--big 1000000]

Rows, each at both sizes (best of several rounds; the sizes take turns):
- the proof as the node makes it (`Log.tree().inclusion`, one level-0 tile from the store);
- a floor: the same hashes taken by hand, with no Tree object and no checks;
- one store read of a random level-0 tile, and the same read over only 4 distinct tiles of the
  big tree (what stays in the CPU cache, as every tile of the small tree does).
The machine is shared: compare the two sizes of one run, not absolute numbers.
"""

import argparse
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, print_table  # noqa: E402
from engine_bench import _tree  # noqa: E402

from ledger import merkle  # noqa: E402
from ledger.layout import tile_key  # noqa: E402
from ledger.log import Log  # noqa: E402


def _floor(log: Log, size: int) -> Callable[[int], list[bytes]]:
    """A proof's hashes taken by hand: the level-0 tile from the store, the tiles above it and the
    edge from the cache the node's trees share (warmed first)."""
    for index in range(0, size, max(1, size // 4096)):
        log.tree().inclusion(index, size)
    cache, get = log._cache, log.store.get
    full, paths, partial = merkle._FULL, merkle._FULL_PATHS, merkle._partial_path

    def proof(index: int) -> list[bytes]:
        inner = (index ^ (size - 1)).bit_length()
        out: list[bytes] = []
        level = 0
        while level < inner - 1:
            value = get(tile_key(0, index >> 8)) if level == 0 else cache.tiles[(level >> 3, index >> (level + 8))]
            at = (index >> level) & 255
            unpack, _ = paths[at] if len(value) == full else partial(len(value), at)
            out += unpack(value)[: inner - 1 - level]
            level += 8
        assert cache.edge is not None
        out.append(cache.edge[1][8:40])
        return out

    return proof


def _best_us(call: Callable[[int], object], indices: list[int]) -> float:
    started = time.perf_counter()
    for index in indices:
        call(index)
    return (time.perf_counter() - started) / len(indices) * 1e6


def measure(small: int, big: int, rounds: int = 30, per_round: int = 300) -> list[Row]:
    stores = {size: _tree(size) for size in (small, big)}
    logs = {size: Log(store) for size, store in stores.items()}
    figures: dict[str, Callable[[int], Callable[[int], object]]] = {
        "proof (Log.tree().inclusion)": lambda size: lambda i: logs[size].tree().inclusion(i, size),
        "proof floor (by hand)": lambda size: _floor(logs[size], size),
        "read of a random level-0 tile": lambda size: lambda i: stores[size].get(tile_key(0, i >> 8)),
    }
    calls = {(name, size): make(size) for name, make in figures.items() for size in (small, big)}
    hot = "read of 4 level-0 tiles"
    calls[(hot, big)] = lambda i: stores[big].get(tile_key(0, i & 3))
    best: dict[tuple[str, int], float] = {}
    for _ in range(rounds):
        for (name, size), call in calls.items():
            took = _best_us(call, [random.randrange(size) for _ in range(per_round)])
            best[(name, size)] = min(best.get((name, size), took), took)
    for store in stores.values():
        store.close()
        shutil.rmtree(store.path, ignore_errors=True)
    rows = [Row(f"{name}, {big:,} vs {small:,}", best[(name, big)], best[(name, small)], "us", "") for name in figures]
    cold = best[("read of a random level-0 tile", big)]
    rows.append(Row(f"{hot} vs a random one, at {big:,}", best[(hot, big)], cold, "us", ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1_000, help="entries in the small tree (default 1000)")
    parser.add_argument("--big", type=int, default=1_000_000, help="entries in the big tree (default 1000000)")
    args = parser.parse_args()
    print_table(measure(args.small, args.big))


if __name__ == "__main__":
    main()

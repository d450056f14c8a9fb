"""Benchmark of the log served as C2SP tlog-tiles, from the durable store on SQLite.

Builds a log of the requested size (entries of 128 bytes, bulk batches), then measures from a
store with an empty node cache, one thread, in process (no HTTP):

- full level-0 tiles served per second (random tiles: 256 leaf hashes from one range scan of
  the primary key each, as served; and, for comparison, from a list of 256 keys), and full
  level-1 tiles (256 level-8 node hashes from a list of keys);
- full entry bundles served per second (256 entries read and length-prefixed);
- for reference, in the same run: inclusion proofs served per second, as `bench/translog.py`
  measures them.

Prints one JSON document: machine, parameters, results.

    .venv/bin/python bench/log_tiles.py --size 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import machine_info
from translog import build

from accord.protocols.translog.tiles import TILE_WIDTH, TilePath, encode_entry_bundle
from accord.storage.translog import TransparencyLogStore, create_sqlite_engine


def rate(count: int, work: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for i in range(count):
        work(i)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--entry-bytes", type=int, default=128)
    parser.add_argument("--bulk-batch", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="accord-bench-") as tmp:
        db = Path(tmp) / "translog.db"
        engine = create_sqlite_engine(db)
        store = TransparencyLogStore(engine, create=True)
        build_rate = build(store, args.size, args.bulk_batch, args.entry_bytes)
        size = store.size()
        rng = random.Random(args.seed)
        full0 = size // TILE_WIDTH
        full1 = size // TILE_WIDTH**2
        level0 = [TilePath(0, rng.randrange(full0)) for _ in range(args.requests)]
        level1 = [TilePath(1, rng.randrange(full1)) for _ in range(args.requests)]
        bundles = [TilePath(None, rng.randrange(full0)) for _ in range(args.requests)]
        leaves = [rng.randrange(size) for _ in range(args.requests)]

        def fresh() -> TransparencyLogStore:
            return TransparencyLogStore(engine)  # an empty node cache: cold reads

        cold = fresh()
        tiles0_in = rate(args.requests, lambda i: b"".join(cold.subtree_hashes(level0[i].nodes())))
        tiles0 = rate(
            args.requests,
            lambda i: b"".join(store.leaf_hashes(level0[i].first, level0[i].first + TILE_WIDTH)),
        )
        cold = fresh()
        tiles1 = rate(args.requests, lambda i: b"".join(cold.subtree_hashes(level1[i].nodes())))
        bundled = rate(
            args.requests,
            lambda i: encode_entry_bundle(
                store.entries(bundles[i].first, bundles[i].first + TILE_WIDTH)
            ),
        )
        cold = fresh()
        proofs = rate(args.requests, lambda i: cold.inclusion_proof(leaves[i], size))
        engine.dispose()

    report: dict[str, Any] = {
        "benchmark": "bench/log_tiles.py",
        "machine": machine_info(
            load_average_at_start=load_at_start, load_average_at_end=os.getloadavg()
        ),
        "parameters": {
            "size": args.size,
            "entry_bytes": args.entry_bytes,
            "requests": args.requests,
            "storage": "SQLite file, WAL, synchronous=FULL",
        },
        "results": {
            "bulk_build_appends_per_s": round(build_rate),
            "level0_tiles_per_s": round(tiles0),
            "level0_tiles_per_s_by_key_list": round(tiles0_in),
            "level1_tiles_per_s": round(tiles1),
            "entry_bundles_per_s": round(bundled),
            "reference_inclusion_proofs_per_s": round(proofs),
        },
    }
    print(json.dumps(report, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

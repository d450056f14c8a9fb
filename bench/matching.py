"""PDQ matching at scale: the project's index against python-threatexchange and brute force.

One run, same data for every method: N random PDQ hashes, and queries planted at known
distances 0..31 from random entries (query i is at distance i mod 32 from its target). For each
method, in its own subprocess (so memory is measured cleanly): build time, resident memory added
by the index, batch query rate, the process's CPU time while querying (on a shared machine the
rate per CPU-second shows what the code costs apart from other work), the load average, and
recall (the planted target found within distance 31).

Methods:
- accord-mih: `accord.protocols.detection.index.MihPdqIndex` (multi-index hashing, compiled
  inner loop, one thread per core)
- pytx-pdqindex: python-threatexchange's `PDQIndex` (faiss `IndexBinaryMultiHash`), batch API
- faiss-flat: faiss `IndexBinaryFlat` brute force with `range_search`
- numpy-brute: `accord.protocols.detection.index.LinearPdqIndex` (numpy popcount)

    .venv/bin/python bench/matching.py --sizes 1000000 10000000 --out bench-matching.json

Needs the `bench` extra (threatexchange). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
from machine import machine_info

THRESHOLD = 31
METHODS = ("accord-mih", "pytx-pdqindex", "faiss-flat", "numpy-brute")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def make_data(n: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    targets = rng.integers(0, n, size=n_queries)
    bits = np.unpackbits(codes[targets], axis=1)
    for i in range(n_queries):
        flip = rng.choice(256, size=i % (THRESHOLD + 1), replace=False)
        bits[i, flip] ^= 1
    return codes, np.packbits(bits, axis=1), targets


def run_method(method: str, n: int, n_queries: int, seed: int) -> dict[str, Any]:
    codes, queries, targets = make_data(n, n_queries, seed)
    if method == "numpy-brute" and n > 1_000_000:
        n_queries = min(n_queries, 64)  # about 3 queries/s at 10M: keep the run short
    elif method == "numpy-brute":
        n_queries = min(n_queries, 256)
    queries, targets = queries[:n_queries], targets[:n_queries]
    rss0 = _rss_mb()
    load_before = _loadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    pairs: set[tuple[int, int]] = set()
    if method in ("accord-mih", "numpy-brute"):
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
        from accord.protocols.detection.index import LinearPdqIndex, MihPdqIndex

        index = MihPdqIndex() if method == "accord-mih" else LinearPdqIndex()
        threads = len(os.sched_getaffinity(0)) if method == "accord-mih" else 1
        index.add_codes(codes, np.arange(n, dtype=np.int64))
        # consolidate (numpy-brute) and load the compiled kernels (accord-mih) outside the timing
        index.query_codes(queries[:1], THRESHOLD)
        build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        mem = _rss_mb() - rss0
        t1, c1 = time.perf_counter(), time.process_time()
        found = index.query_codes(queries, THRESHOLD)
        query_s, query_cpu_s = time.perf_counter() - t1, time.process_time() - c1
        pairs = set(zip(found.query.tolist(), found.entry_id.tolist(), strict=True))
    elif method == "faiss-flat":
        import faiss

        threads = faiss.omp_get_max_threads()
        index = faiss.IndexBinaryFlat(256)
        index.add(codes)
        build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        mem = _rss_mb() - rss0
        t1, c1 = time.perf_counter(), time.process_time()
        lims, _d, ids = index.range_search(queries, THRESHOLD + 1)  # strict: < 32
        query_s, query_cpu_s = time.perf_counter() - t1, time.process_time() - c1
        for q in range(n_queries):
            for e in ids[lims[q] : lims[q + 1]].tolist():
                pairs.add((q, e))
    elif method == "pytx-pdqindex":
        import faiss
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex

        threads = faiss.omp_get_max_threads()

        hexes = [c.tobytes().hex() for c in codes]
        rss0 = _rss_mb()  # the hex strings are input data, not index
        t0, c0 = time.perf_counter(), time.process_time()
        index = PDQIndex(entries=((h, i) for i, h in enumerate(hexes)))
        build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        del hexes
        mem = _rss_mb() - rss0
        qhex = [c.tobytes().hex() for c in queries]
        t1, c1 = time.perf_counter(), time.process_time()
        results = index.index.search_with_distance_in_result(qhex, THRESHOLD)  # batch API
        query_s, query_cpu_s = time.perf_counter() - t1, time.process_time() - c1
        for q, h in enumerate(qhex):
            for local_id, _hash, _dist in results[h]:
                pairs.add((q, int(index.local_id_to_entry[local_id][1])))
    else:
        raise SystemExit(f"unknown method {method}")
    recall = sum((q, int(t)) in pairs for q, t in enumerate(targets.tolist())) / n_queries
    return {
        "method": method,
        "n": n,
        "queries": n_queries,
        "threads": threads,
        "loadavg_before": load_before,
        "build_s": round(build_s, 2),
        "build_cpu_s": round(build_cpu_s, 2),
        "index_memory_mb": round(mem, 1),
        "query_s": round(query_s, 3),
        "queries_per_s": round(n_queries / query_s, 1),
        "query_cpu_s": round(query_cpu_s, 3),
        "queries_per_cpu_s": round(n_queries / query_cpu_s, 1),
        "loadavg_after": _loadavg(),
        "recall_within_31": recall,
        "matches": len(pairs),
    }


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"numpy": np.__version__}
    for mod, dist in (
        ("numba", "numba"),
        ("faiss", "faiss-cpu"),
        ("threatexchange", "threatexchange"),
    ):
        try:
            versions[mod] = version(dist)
        except PackageNotFoundError:
            versions[mod] = "missing"
    return machine_info(versions=versions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--timeout", type=int, default=900, help="per method and size, seconds")
    ap.add_argument("--out", default=None)
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        result = run_method(args.one[0], int(args.one[1]), args.queries, args.seed)
        print(json.dumps(result))
        return
    report: dict[str, Any] = {
        "benchmark": "pdq-matching",
        "threshold": THRESHOLD,
        "planted_distances": "query i at distance i mod 32 from its target",
        "machine": machine(),
        "results": [],
    }
    for n in args.sizes:
        for method in args.methods:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                method,
                str(n),
                "--queries",
                str(args.queries),
                "--seed",
                str(args.seed),
            ]
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                if out.returncode != 0:
                    row = {"method": method, "n": n, "error": out.stderr.strip()[-500:]}
                else:
                    row = json.loads(out.stdout.strip().splitlines()[-1])
            except subprocess.TimeoutExpired:
                row = {"method": method, "n": n, "error": f"timeout after {args.timeout} s"}
            report["results"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""Benchmark of the durable transparency log store on SQLite.

Builds a log to each requested size by bulk-appending large batches, then measures at that size:

- integration: batches arriving as the server integrates them (everything pending, at most once
  a second): the time to append one batch of B entries (one transaction, fsync'd), for several
  B, and the appends per second that makes;
- inclusion proofs served per second (random leaves, at the current size, one thread), and
  inclusion proofs verified per second;
- consistency proofs served per second (random old sizes);
- with --http: inclusion proofs served over HTTP by one server process (uvicorn, the server's
  own `/v1/log/proof/inclusion` route over the same store), fetched by --http-clients concurrent
  clients in this process, one proof in 50 checked against the root; proofs/s, request
  latency, and the server process's CPU seconds. The server has the routes `create_app`
  installs; --http-middleware adds its middlewares (body limit, metrics) and error handlers.
  With --http-load wrk the proofs are fetched by wrk (a C load generator; `apt install wrk`)
  instead, so the clients take little of the CPU the server needs; proofs are then checked
  from the same server afterwards.

Prints one JSON document: machine, parameters, results. With --db the log is kept in that file
and reused by the next run (building 10M entries takes several minutes).

    .venv/bin/python bench/translog.py --sizes 1000000 10000000
    .venv/bin/python bench/translog.py --sizes 10000000 --db /tmp/accord-translog.db --http
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from load import cpu_seconds
from machine import machine_info
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from accord.protocols.translog import merkle
from accord.server.process import free_port
from accord.server.translog import LogService
from accord.storage.translog import TransparencyLogStore, create_sqlite_engine


def make_entries(start: int, count: int, entry_bytes: int) -> list[bytes]:
    pad = b"\xa5" * max(0, entry_bytes - 8)
    return [i.to_bytes(8, "big") + pad for i in range(start, start + count)]


def build(store: TransparencyLogStore, target: int, batch: int, entry_bytes: int) -> float:
    size = store.size()
    todo = target - size
    if todo <= 0:
        return 0.0
    started = time.perf_counter()
    columns = (
        TextColumn("building to {task.fields[target]:,}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("build", total=todo, target=target)
        while size < target:
            n = min(batch, target - size)
            store.append_batch(make_entries(size, n, entry_bytes))
            size += n
            progress.update(task, advance=n)
    return todo / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_integration(
    store: TransparencyLogStore, batch_sizes: list[int], repeats: int, entry_bytes: int
) -> list[dict[str, Any]]:
    out = []
    for batch in batch_sizes:
        times = []
        for _ in range(repeats):
            size = store.size()
            entries = make_entries(size, batch, entry_bytes)
            t = time.perf_counter()
            store.append_batch(entries)
            store.tree_head()  # the root the server would sign
            times.append(time.perf_counter() - t)
        mean = statistics.fmean(times)
        out.append(
            {
                "batch_entries": batch,
                "repeats": repeats,
                "integrate_s_mean": round(mean, 4),
                "integrate_s_p50": round(percentile(times, 0.5), 4),
                "integrate_s_max": round(max(times), 4),
                "appends_per_s": round(batch / mean),
                "within_1s": max(times) < 1.0,
            }
        )
    return out


def measure_proofs(
    store: TransparencyLogStore, count: int, seed: int, entry_bytes: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    size, root = store.tree_head()
    fresh = TransparencyLogStore(store.engine)  # empty node cache: the first proofs are cold
    indexes = [rng.randrange(size) for _ in range(count)]
    started = time.perf_counter()
    proofs = [fresh.inclusion_proof(i, size) for i in indexes]
    served = count / (time.perf_counter() - started)
    # A client holds the entry; it hashes it and checks the proof against the signed root.
    leaves = [merkle.leaf_hash(make_entries(i, 1, entry_bytes)[0]) for i in indexes]
    started = time.perf_counter()
    for i, leaf, proof in zip(indexes, leaves, proofs, strict=True):
        merkle.verify_inclusion(leaf, i, size, proof, root)
    verified = count / (time.perf_counter() - started)
    olds = [rng.randrange(1, size) for _ in range(count // 4)]
    started = time.perf_counter()
    for old in olds:
        fresh.consistency_proof(old, size)
    consistency = len(olds) / (time.perf_counter() - started)
    return {
        "tree_size": size,
        "inclusion_proofs": count,
        "inclusion_proofs_served_per_s": round(served),
        "inclusion_proofs_verified_per_s": round(verified),
        "mean_proof_hashes": round(statistics.fmean(len(p) for p in proofs), 1),
        "consistency_proofs_served_per_s": round(consistency),
    }


class StoreLog(LogService):
    """`LogService`'s proof reading over a bench-built store. The whole service cannot open this
    log: it replays the entries into its key map, and these entries are not registrations."""

    def __init__(self, store: TransparencyLogStore) -> None:  # only what proofs read
        self.store = store
        self._seen_size = 0
        self._reads_inline = store.engine.dialect.name == "sqlite"


def serve_http(db: Path, port: int, *, middleware: bool) -> None:
    """One server process: the server's routes (as `create_app` installs them, the log's
    plain proof routes first) over the store, under uvicorn as `accord server` runs it; with
    `middleware`, also the server's two middlewares and error handlers, as `create_app` adds
    them."""
    import uvicorn
    from fastapi import FastAPI

    from accord.server.middleware import (
        BodyLimitMiddleware,
        ObservabilityMiddleware,
        is_streamed,
    )
    from accord.server.observability import Metrics
    from accord.server.problems import install_error_handlers
    from accord.server.routes import install_routes
    from accord.wire.common import MAX_REQUEST_BYTES

    store = TransparencyLogStore(create_sqlite_engine(db))
    app = FastAPI()
    if middleware:
        metrics = Metrics()
        app.add_middleware(
            BodyLimitMiddleware, max_bytes=MAX_REQUEST_BYTES, is_streamed=is_streamed
        )
        app.add_middleware(ObservabilityMiddleware, metrics=metrics)
        install_error_handlers(app, metrics)
    install_routes(app)
    app.state.services = SimpleNamespace(log=StoreLog(store))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def fetch_proofs(
    url: str, size: int, root: bytes, seconds: float, clients: int, seed: int, entry_bytes: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    latencies: list[float] = []
    checked = 0
    bad = 0
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def client() -> None:
            nonlocal checked, bad
            while time.perf_counter() < stop:
                index = rng.randrange(size)
                t = time.perf_counter()
                params = {"index": index, "size": size}
                async with http.get(url + "/v1/log/proof/inclusion", params=params) as r:
                    body = await r.json()
                latencies.append(time.perf_counter() - t)
                if len(latencies) % 50 == 0:  # check one in 50 (checking is client CPU)
                    proof = [base64.b64decode(h) for h in body["proof"]]
                    leaf = merkle.leaf_hash(make_entries(index, 1, entry_bytes)[0])
                    try:
                        merkle.verify_inclusion(leaf, index, size, proof, root)
                        checked += 1
                    except Exception:
                        bad += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "proofs": len(latencies),
        "proofs_per_s": round(len(latencies) / elapsed),
        "latency_p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "latency_p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 2),
        "proofs_checked": checked,
        "proofs_failed": bad,
    }


_WRK_SCRIPT = """
math.randomseed(7)
request = function()
  local index = math.random(0, SIZE - 1)
  return wrk.format("GET", "/v1/log/proof/inclusion?index=" .. index .. "&size=" .. SIZE)
end
"""


def wrk_proofs(url: str, size: int, seconds: float, clients: int) -> dict[str, Any]:
    """The same random proofs fetched by wrk (a C load generator, one thread), so the clients
    take little of the machine's CPU: what one server process serves when it is the bottleneck."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT.replace("SIZE", str(size)))
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{clients}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                f.name,
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(f.name)
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "load_generator": "wrk -t1",
        "proofs": total,
        "proofs_per_s": round(float(re.search(r"Requests/sec:\s+([0-9.]+)", out)[1])),  # type: ignore[index]
        "latency_p50_ms": _wrk_ms(re.search(r"50%\s+([0-9.]+)(us|ms|s)", out)),
        "latency_p99_ms": _wrk_ms(re.search(r"99%\s+([0-9.]+)(us|ms|s)", out)),
        "non_2xx": int(failed[1]) if failed else 0,
    }


def _wrk_ms(found: re.Match[str] | None) -> float | None:
    if found is None:
        return None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found[2]]
    return round(float(found[1]) * scale, 2)


def measure_http(
    db: Path,
    store: TransparencyLogStore,
    seconds: float,
    clients: int,
    entry_bytes: int,
    *,
    middleware: bool,
    load: str = "aiohttp",
) -> dict[str, Any]:
    size, root = store.tree_head()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-http", str(db), "--port", str(port)]
        + (["--http-middleware"] if middleware else []),
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until it answers
            try:
                asyncio.run(fetch_proofs(url, size, root, 0.01, 1, 0, entry_bytes))
                break
            except aiohttp.ClientError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        asyncio.run(fetch_proofs(url, size, root, 2.0, clients, 1, entry_bytes))  # warm-up
        cpu0 = cpu_seconds(proc.pid)
        load_before = os.getloadavg()
        if load == "wrk":
            result = wrk_proofs(url, size, seconds, clients)
        else:
            result = asyncio.run(fetch_proofs(url, size, root, seconds, clients, 2, entry_bytes))
        cpu = cpu_seconds(proc.pid) - cpu0
        if load == "wrk":  # wrk checks nothing: check proofs from the same server afterwards
            check = asyncio.run(fetch_proofs(url, size, root, 1.0, 1, 3, entry_bytes))
            result.update(
                proofs_checked=check["proofs_checked"], proofs_failed=check["proofs_failed"]
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result.update(
        tree_size=size,
        clients=clients,
        seconds=seconds,
        server_cpu_ms_per_proof=round(cpu / max(1, result["proofs"]) * 1000, 3),
        load_average_before=[round(x, 2) for x in load_before],
        load_average_after=[round(x, 2) for x in os.getloadavg()],
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--db", type=Path, default=None, help="SQLite file (default: temp)")
    parser.add_argument("--entry-bytes", type=int, default=128)
    parser.add_argument("--bulk-batch", type=int, default=100_000)
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1_000, 3_000, 10_000, 30_000]
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--proofs", type=int, default=20_000)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--http", action="store_true", help="also serve proofs over HTTP")
    parser.add_argument("--http-seconds", type=float, default=15.0)
    parser.add_argument("--http-clients", type=int, default=16)
    parser.add_argument(
        "--http-load",
        choices=["aiohttp", "wrk"],
        default="aiohttp",
        help="who fetches: this process (aiohttp, checking one proof in 50) or wrk (installed "
        "separately; a C load generator, so the clients take little CPU from the server)",
    )
    parser.add_argument(
        "--http-middleware",
        action="store_true",
        help="serve with the server's middlewares (body limit, metrics) and error handlers",
    )
    parser.add_argument("--serve-http", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_http is not None:
        serve_http(args.serve_http, args.port, middleware=args.http_middleware)
        return

    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="accord-bench-")
        db = Path(tmp.name) / "translog.db"
    else:
        db = args.db
    engine = create_sqlite_engine(db, synchronous=args.synchronous)
    store = TransparencyLogStore(engine, create=True)

    report: dict[str, Any] = {
        "benchmark": "bench/translog.py",
        "machine": machine_info(),
        "parameters": {
            "sizes": args.sizes,
            "entry_bytes": args.entry_bytes,
            "bulk_batch": args.bulk_batch,
            "batch_sizes": args.batch_sizes,
            "repeats": args.repeats,
            "proofs": args.proofs,
            "storage": f"SQLite file, WAL, synchronous={args.synchronous}",
            "http": args.http,
            "http_clients": args.http_clients,
            "http_middleware": args.http_middleware,
        },
        "results": [],
    }
    for target in sorted(args.sizes):
        build_rate = build(store, target, args.bulk_batch, args.entry_bytes)
        result: dict[str, Any] = {"size": target, "bulk_build_appends_per_s": round(build_rate)}
        result["integration"] = measure_integration(
            store, args.batch_sizes, args.repeats, args.entry_bytes
        )
        result["proofs"] = measure_proofs(store, args.proofs, target, args.entry_bytes)
        if args.http:
            result["proofs_over_http"] = measure_http(
                db,
                store,
                args.http_seconds,
                args.http_clients,
                args.entry_bytes,
                middleware=args.http_middleware,
                load=args.http_load,
            )
        result["db_bytes"] = sum(
            p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file()
        )
        report["results"].append(result)
        print(json.dumps(result), file=sys.stderr, flush=True)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    engine.dispose()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

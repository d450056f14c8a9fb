"""Load curve of one `accord server` process with 1,000+ devices holding WebSockets.

Registers --devices devices through the real API (each device both sends and receives), connects
every one of them to /v1/ws, and measures:

  memory    server resident set size (VmRSS of the server process and its children, from
            /proc) with 0, N/4, N/2, 3N/4 and N idle sockets connected; per connection is the
            growth divided by N (and the least-squares slope); the same for the load generator's
            own process (each database runs in a fresh generator process)
  steps     open-loop offered load stepped through --rates messages/s, --step-seconds each: at
            every tick a random device sends one 1:1 envelope (messaging.py's: 418 random bytes of
            ciphertext and a franking commitment) to another random device, whose socket gets the
            push and acknowledges it. Per step: delivered/s, p50/p99 send->push latency and
            send-request latency, both measured from the scheduled send time (so a late or
            queued send counts against the server, as a user would see it), HTTP statuses (429s
            included), sends shed by the generator (more than --max-inflight outstanding), and
            the CPU used by the server process and by the whole machine.

After each step the generator waits (at most --drain-seconds) until the step's messages are
delivered, so steps do not overlap. It stops after --overloaded-steps steps that did not keep up
(delivered/s under 95% of the offered rate), or when --max-seconds is spent.

Everything is bounded: devices (at most MAX_DEVICES), outstanding sends, per-request timeouts,
drain time and the total time. The open-file limit is raised to what the sockets need (the server
inherits it). The load generator is one asyncio process (uvloop if installed) on the same
machine as the server, so both share the cores; its own CPU use is reported per step.

Writes a plot of throughput and latency against offered load (--plot) and prints one JSON
document (machine, parameters, results). Usage:
  python bench/load.py [--db sqlite|postgresql|both] [--devices 1000] [--rates 50 100 200 400]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import resource
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from machine import machine_info
from messaging import (
    CIPHERTEXT_BYTES,
    PG_ADMIN,
    Device,
    Receiver,
    drop_pg,
    envelope,
    pct,
    pg_database,
    register,
)

from accord.server.process import ServerProcess

MAX_DEVICES = 10_000
DEFAULT_RATES = [25, 50, 75, 100, 125, 150, 200, 300, 400, 600, 800]
KEEPS_UP_FRACTION = 0.95  # a step keeps up if it delivers at least this share of the offered rate
REGISTER_CONCURRENCY = 16
CONNECT_CONCURRENCY = 64
MEMORY_SETTLE_S = 2.0
SEND_TIMEOUT_S = 30.0
FD_HEADROOM = 256
ROOT = Path(__file__).resolve().parent.parent


# --- process accounting (/proc) -------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def rss_kib(pid: int, *, children: bool = True) -> int:
    """VmRSS of `pid` (and, with `children`, all its descendants), in KiB."""
    total = 0
    for p in _descendants(pid) if children else [pid]:
        with contextlib.suppress(OSError, StopIteration):
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
            total += int(next(x for x in lines if x.startswith("VmRSS:")).split()[1])
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _descendants(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"need {needed} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


# --- devices and sockets ---------------------------------------------------------------------


async def register_all(http: aiohttp.ClientSession, url: str, n: int) -> list[Device]:
    tag = secrets.token_hex(3)
    gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

    async def one(i: int) -> Device:
        async with gate:
            return await register(http, url, f"l{tag}{i}")

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def connect(receivers: list[Receiver]) -> int:
    """Open the receivers' sockets, CONNECT_CONCURRENCY handshakes at a time; returns failures."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(r: Receiver) -> bool:
        async with gate:
            r.task = asyncio.create_task(r.run())
            ready = asyncio.create_task(r.ready.wait())
            await asyncio.wait({ready, r.task}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            return r.ready.is_set() and not r.task.done()

    results = await asyncio.gather(*(one(r) for r in receivers))
    return sum(1 for ok in results if not ok)


async def measure_memory(
    receivers: list[Receiver], server_pid: int, batches: int = 4
) -> dict[str, Any]:
    """Connect the sockets in `batches` and record both processes' RSS after each."""
    me = os.getpid()
    await asyncio.sleep(MEMORY_SETTLE_S)
    points = [(0, rss_kib(server_pid), rss_kib(me, children=False))]
    failures = 0
    size = -(-len(receivers) // batches)
    for start in range(0, len(receivers), size):
        failures += await connect(receivers[start : start + size])
        await asyncio.sleep(MEMORY_SETTLE_S)
        connected = sum(1 for r in receivers if r.task is not None and not r.task.done())
        points.append((connected, rss_kib(server_pid), rss_kib(me, children=False)))

    def per_connection(col: int) -> dict[str, float]:
        n0, n1 = points[0][0], points[-1][0]
        growth = (points[-1][col] - points[0][col]) / max(1, n1 - n0)
        xs = [p[0] for p in points]
        ys = [p[col] for p in points]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0
        return {"kib_per_connection": round(growth, 1), "slope_kib_per_connection": round(slope, 1)}

    return {
        "points": [{"sockets": n, "server_rss_kib": s, "client_rss_kib": c} for n, s, c in points],
        "server": per_connection(1),
        "client": per_connection(2),
        "connect_failures": failures,
    }


# --- one step of offered load ----------------------------------------------------------------


async def run_step(
    http: aiohttp.ClientSession,
    url: str,
    devices: list[Device],
    receivers: list[Receiver],
    rate: float,
    args: argparse.Namespace,
    server_pid: int,
    rng: random.Random,
) -> dict[str, Any]:
    scheduled: dict[str, float] = {}  # accepted message id -> scheduled send time
    send_latency: list[float] = []
    start_lag: list[float] = []
    statuses: Counter[str] = Counter()
    shed = 0
    inflight = 0
    tasks: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=SEND_TIMEOUT_S)

    async def send_one(due: float, s: int, r: int) -> None:
        nonlocal inflight
        env = envelope(devices[s], devices[r])
        start_lag.append(time.perf_counter() - due)
        try:
            async with http.post(
                url + "/v1/messages",
                json=env,
                headers={"Authorization": f"Bearer {devices[s].token}"},
                timeout=timeout,
            ) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as e:
            statuses[type(e).__name__] += 1
            return
        finally:
            inflight -= 1
        done = time.perf_counter()
        statuses[str(status)] += 1
        if status == 201:
            scheduled[str(env["message_id"])] = due
            send_latency.append(done - due)

    cpu0, busy0, me0 = cpu_seconds(server_pid), machine_busy(), time.process_time()
    n_total = int(rate * args.step_seconds)
    start = time.perf_counter() + 0.05
    for n in range(n_total):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif n % 32 == 0:
            await asyncio.sleep(0)  # behind schedule: still let responses be read
        if inflight >= args.max_inflight:
            shed += 1
            continue
        s = rng.randrange(len(devices))
        r = (s + 1 + rng.randrange(len(devices) - 1)) % len(devices)
        inflight += 1
        task = asyncio.create_task(send_one(due, s, r))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    send_window_end = time.perf_counter()
    if tasks:
        await asyncio.wait(set(tasks), timeout=SEND_TIMEOUT_S + 5)
    sends_done = time.perf_counter()

    arrivals: dict[str, float] = {}
    deadline = time.perf_counter() + args.drain_seconds
    while True:
        arrivals = {m: t for rx in receivers for m, t in rx.arrivals.items() if m in scheduled}
        if len(arrivals) >= len(scheduled) or time.perf_counter() >= deadline:
            break
        await asyncio.sleep(0.1)
    cpu1, busy1, me1 = cpu_seconds(server_pid), machine_busy(), time.process_time()
    for rx in receivers:  # forget this step's arrivals
        rx.arrivals.clear()

    e2e = [arrivals[m] - t for m, t in scheduled.items() if m in arrivals]
    end = max(arrivals.values(), default=sends_done)
    elapsed = max(end - start, 1e-9)
    delivered_per_s = len(e2e) / elapsed
    wall = time.perf_counter() - start
    ncores = os.cpu_count() or 1
    disconnected = sum(1 for rx in receivers if rx.task is None or rx.task.done())
    return {
        "offered_per_s": rate,
        "scheduled": n_total,
        "shed_by_generator": shed,
        "accepted": len(scheduled),
        "delivered": len(e2e),
        "undelivered_after_drain": len(scheduled) - len(e2e),
        "statuses": dict(sorted(statuses.items())),
        "delivered_per_s": round(delivered_per_s, 1),
        "keeps_up": delivered_per_s >= KEEPS_UP_FRACTION * rate and not shed,
        "e2e_p50_ms": round(pct(e2e, 0.5) * 1000, 1),
        "e2e_p99_ms": round(pct(e2e, 0.99) * 1000, 1),
        "send_p50_ms": round(pct(send_latency, 0.5) * 1000, 1),
        "send_p99_ms": round(pct(send_latency, 0.99) * 1000, 1),
        "generator_start_lag_p99_ms": round(pct(start_lag, 0.99) * 1000, 1),
        "send_window_s": round(send_window_end - start, 2),
        "step_wall_s": round(wall, 2),
        "server_cpu_cores": round((cpu1 - cpu0) / wall, 2),
        "generator_cpu_cores": round((me1 - me0) / wall, 2),
        "machine_busy_cores": round(
            (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * ncores, 2
        ),
        "sockets_closed": disconnected,
    }


# --- one database ----------------------------------------------------------------------------


async def load_curve(url: str, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.max_seconds
    http_connector = aiohttp.TCPConnector(limit=args.http_connections)
    ws_connector = aiohttp.TCPConnector(limit=0)
    async with (
        aiohttp.ClientSession(connector=http_connector) as http,
        aiohttp.ClientSession(connector=ws_connector) as wsh,
    ):
        t0 = time.perf_counter()
        devices = await register_all(http, url, args.devices)
        registration_s = time.perf_counter() - t0
        receivers = [Receiver(wsh, url, d) for d in devices]
        t0 = time.perf_counter()
        memory = await measure_memory(receivers, server_pid)
        memory["connect_s"] = round(time.perf_counter() - t0 - 5 * MEMORY_SETTLE_S, 2)
        rng = random.Random(args.seed)
        steps: list[dict[str, Any]] = []
        overloaded = 0
        stopped = "rates exhausted"
        try:
            for rate in args.rates:
                if time.monotonic() + args.step_seconds + args.drain_seconds > deadline:
                    stopped = "max-seconds reached"
                    break
                step = await run_step(http, url, devices, receivers, rate, args, server_pid, rng)
                steps.append(step)
                print(json.dumps({"step": step}), file=sys.stderr, flush=True)
                if not step["keeps_up"]:
                    overloaded += 1
                    if overloaded >= args.overloaded_steps:
                        stopped = f"{overloaded} overloaded steps"
                        break
        finally:
            for rx in receivers:
                if rx.task is not None:
                    rx.task.cancel()
            await asyncio.gather(
                *(rx.task for rx in receivers if rx.task is not None), return_exceptions=True
            )
    return {
        "devices": args.devices,
        "registration_s": round(registration_s, 1),
        "memory": memory,
        "steps": steps,
        "stopped": stopped,
    }


def bench_db(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="accord-load-"))
    db_url, pg_name = None, None
    if kind == "postgresql":
        db_url, pg_name = pg_database()
    load_before = os.getloadavg()
    try:
        with ServerProcess(tmp / "server", db_url=db_url, extra_args=args.server_arg) as server:
            assert server.proc is not None
            result = run_async(load_curve(server.url, server.proc.pid, args))
    finally:
        if pg_name:
            drop_pg(pg_name)
    shutil.rmtree(tmp, ignore_errors=True)  # kept when the run failed, for the server's log
    return {
        "database": kind,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        **result,
    }


def run_async(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# --- plot ------------------------------------------------------------------------------------


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    top = max((s["offered_per_s"] for r in runs for s in r["steps"]), default=1)
    ax_t.plot([0, top], [0, top], color="0.75", linestyle=":", label="offered = delivered")
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    colors = {"sqlite": "tab:blue", "postgresql": "tab:orange"}
    for run in runs:
        steps = run["steps"]
        x = [s["offered_per_s"] for s in steps]
        name, color = names[run["database"]], colors[run["database"]]
        ax_t.plot(x, [s["delivered_per_s"] for s in steps], "o-", color=color, label=name)
        ax_l.plot(x, [s["e2e_p50_ms"] for s in steps], "o-", color=color, label=f"{name} p50")
        ax_l.plot(x, [s["e2e_p99_ms"] for s in steps], "s--", color=color, label=f"{name} p99")
    devices = runs[0]["devices"] if runs else 0
    ax_t.set_xlabel("offered load (messages/s)")
    ax_t.set_ylabel("delivered (messages/s)")
    ax_t.set_title(f"Throughput, one server process, {devices} devices on WebSockets")
    ax_t.legend()
    ax_t.grid(alpha=0.3)
    ax_l.set_xlabel("offered load (messages/s)")
    ax_l.set_ylabel("send -> push latency (ms, log scale)")
    ax_l.set_yscale("log")
    ax_l.set_title("Latency from scheduled send to push")
    ax_l.legend()
    ax_l.grid(alpha=0.3, which="both")
    for ax in (ax_t, ax_l):
        ax.title.set_fontsize(10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ------------------------------------------------------------------------------------


def postgres_version() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None
    except Exception:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--devices", type=int, default=1000, help=f"at most {MAX_DEVICES}")
    parser.add_argument("--rates", type=float, nargs="+", default=DEFAULT_RATES)
    parser.add_argument("--step-seconds", type=float, default=12.0)
    parser.add_argument("--drain-seconds", type=float, default=30.0)
    parser.add_argument("--overloaded-steps", type=int, default=2)
    parser.add_argument("--max-inflight", type=int, default=2000, help="outstanding sends")
    parser.add_argument("--http-connections", type=int, default=128)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="per database")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra argument for `accord server` (repeat; e.g. --server-arg=--send-rate=0)",
    )
    parser.add_argument("--plot", default=str(ROOT / "docs/img/load-curve.png"), help="'' = none")
    args = parser.parse_args()
    if not 2 <= args.devices <= MAX_DEVICES:
        parser.error(f"--devices must be between 2 and {MAX_DEVICES}")
    fd_limit = raise_fd_limit(2 * args.devices + args.http_connections * 2 + FD_HEADROOM)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    info = machine_info(
        sqlite=sqlite3.sqlite_version,
        postgresql=postgres_version() if "postgresql" in kinds else None,
        aiohttp=aiohttp.__version__,
    )
    runs = []
    for kind in kinds:  # a fresh generator process per database, so its memory is its own
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs.append(pool.submit(bench_db, kind, args).result())
    if args.plot:
        plot(runs, Path(args.plot))
    out = {
        "benchmark": "load curve, one server process",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": info,
        "parameters": {
            "devices": args.devices,
            "rates_per_s": args.rates,
            "step_seconds": args.step_seconds,
            "drain_seconds": args.drain_seconds,
            "max_inflight": args.max_inflight,
            "http_connections": args.http_connections,
            "ciphertext_bytes": CIPHERTEXT_BYTES,
            "server_args": args.server_arg,
            "open_file_limit": fd_limit,
            "plot": args.plot or None,
        },
        "runs": runs,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

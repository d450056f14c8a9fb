"""Accord and Matrix Synapse side by side: opaque encrypted messages relayed from A to B.

For each database kind (SQLite for both servers, or PostgreSQL for both), this script:

1. installs Synapse (PyPI `matrix-synapse`, and psycopg2-binary) into its own virtual environment
   (--venv, default ~/.cache/accord-bench/synapse-venv; reused when the version matches);
2. generates a Synapse config (`python -m synapse.app.homeserver --generate-config`) and overrides
   it: one client listener on loopback, the database, every `rc_*` rate limit raised out of
   reach, presence off, no federation, logging at WARNING (as Accord logs no access lines);
3. starts one Synapse process, registers users A and B with the shared secret, creates a private
   room with encryption on (B joins), starts B's /sync long-poll loop (timeline limit 1000), and
   has A send --events `m.room.encrypted` events whose megolm `ciphertext` is --ciphertext-bytes
   random bytes (the size of Accord's ciphertext in bench/messaging.py), with C sends in flight
   at once (closed loop: C workers, each sending back to back), for each C in --concurrency;
4. does the same through one Accord server process (`--send-rate 0`, i.e. its per-account rate
   limit off, like Synapse's): devices A and B, A sends the same number of 1:1 envelopes of the
   same ciphertext size (messaging.py's `envelope`, with its franking commitment) with the same
   C in flight, B holds a WebSocket and acknowledges.

Both receive paths are push-shaped (a long-poll that returns as soon as an event is there, and a
WebSocket). Each measurement starts with --warmup unmeasured messages. Reported per server and
C: events delivered per second (delivered / time from first send to last arrival), p50/p99 of
send->receive latency (request start to arrival at the receiver, one clock), send-request
latency, errors, messages not received within 30 s (for Accord, also how many of those were
still queued on the server, i.e. accepted but not pushed), and the server process's CPU seconds
per 1,000 events; then Accord's events/s divided by Synapse's. Each measurement stops after
--measure-seconds; the whole script after --max-seconds (pending measurements are skipped and
listed).

Prints one JSON document (machine, parameters, results). Usage:
  python bench/synapse.py [--db sqlite|postgresql|both] [--events 1000] [--concurrency 1 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import aiohttp
import httpx
from load import cpu_seconds, postgres_version, run_async
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

from accord.server.process import ServerProcess, free_port

SYNAPSE_SPEC = "matrix-synapse==1.163.2"
DEFAULT_VENV = Path.home() / ".cache" / "accord-bench" / "synapse-venv"
SERVER_NAME = "localhost"
START_TIMEOUT_S = 180.0
INSTALL_TIMEOUT_S = 600.0
DRAIN_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 60.0
SYNC_TIMELINE_LIMIT = 1000
NO_LIMIT = {"per_second": 1_000_000, "burst_count": 1_000_000}
SYNC_FILTER = json.dumps(
    {
        "room": {"timeline": {"limit": SYNC_TIMELINE_LIMIT}, "state": {"lazy_load_members": True}},
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    },
    separators=(",", ":"),
)


# --- Synapse: install, configure, run ---------------------------------------------------------


def installed_synapse(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import synapse, psycopg2; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_synapse(venv: Path, spec: str) -> str:
    """Install `spec` and psycopg2-binary into `venv` unless already there; returns the version."""
    wanted = spec.split("==", 1)[1] if "==" in spec else None
    version = installed_synapse(venv)
    if version is not None and (wanted is None or version == wanted):
        return version
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", spec, "psycopg2-binary"],
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    version = installed_synapse(venv)
    if version is None:
        raise SystemExit(f"could not import Synapse from {venv}")
    return version


def synapse_database(kind: str, root: Path) -> tuple[dict[str, Any], str | None]:
    """Synapse's `database` config and, for PostgreSQL, the database created for it."""
    if kind == "sqlite":
        return {"name": "sqlite3", "args": {"database": str(root / "homeserver.db")}}, None
    import psycopg

    name = f"synapse_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:  # Synapse requires C collation
        conn.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0"
        )
    pg = urlsplit(PG_ADMIN)
    args = {
        "user": pg.username or "postgres",
        "host": pg.hostname or "127.0.0.1",
        "port": pg.port or 5432,
        "dbname": name,
        "cp_min": 5,
        "cp_max": 10,
    }
    if pg.password:
        args["password"] = pg.password
    return {"name": "psycopg2", "args": args}, name


class SynapseProcess:
    """One Synapse homeserver process on a free loopback port, configured for this benchmark."""

    def __init__(self, venv: Path, root: Path, database: dict[str, Any]) -> None:
        self.venv = venv
        self.root = root
        self.database = database
        self.port = free_port()
        self.secret = secrets.token_urlsafe(32)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(self) -> list[Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        base = self.root / "homeserver.yaml"
        subprocess.run(
            [
                str(self.venv / "bin" / "python"),
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                SERVER_NAME,
                "--config-path",
                str(base),
                "--data-directory",
                str(self.root),
                "--generate-config",
                "--report-stats=no",
            ],
            check=True,
            capture_output=True,
        )
        log_config = self.root / "log.yaml"  # JSON is YAML
        log_config.write_text(
            json.dumps(
                {
                    "version": 1,
                    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(message)s"}},
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "formatter": "plain",
                            "filename": str(self.root / "homeserver.log"),
                        }
                    },
                    "root": {"level": "WARNING", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        overrides = self.root / "zz-bench.yaml"  # later config files override earlier keys
        overrides.write_text(
            json.dumps(
                {
                    "listeners": [
                        {
                            "port": self.port,
                            "bind_addresses": ["127.0.0.1"],
                            "type": "http",
                            "tls": False,
                            "x_forwarded": False,
                            "resources": [{"names": ["client"], "compress": False}],
                        }
                    ],
                    "database": self.database,
                    "log_config": str(log_config),
                    "registration_shared_secret": self.secret,
                    "enable_registration": False,
                    "trusted_key_servers": [],
                    "suppress_key_server_warning": True,
                    "presence": {"enabled": False},
                    "url_preview_enabled": False,
                    "rc_message": NO_LIMIT,
                    "rc_registration": NO_LIMIT,
                    "rc_login": {
                        "address": NO_LIMIT,
                        "account": NO_LIMIT,
                        "failed_attempts": NO_LIMIT,
                    },
                    "rc_joins": {"local": NO_LIMIT, "remote": NO_LIMIT},
                    "rc_joins_per_room": NO_LIMIT,
                    "rc_invites": {
                        "per_room": NO_LIMIT,
                        "per_user": NO_LIMIT,
                        "per_issuer": NO_LIMIT,
                    },
                    "rc_room_creation": NO_LIMIT,
                    "rc_admin_redaction": NO_LIMIT,
                }
            )
        )
        return [base, overrides]

    def start(self) -> SynapseProcess:
        configs = self.configure()
        args = [str(self.venv / "bin" / "python"), "-m", "synapse.app.homeserver"]
        for c in configs:
            args += ["--config-path", str(c)]
        log = (self.root / "stdout.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"Synapse exited at start; see {self.root}/stdout.log")
            try:
                if httpx.get(self.url + "/_matrix/client/versions", timeout=2.0).is_success:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit("Synapse did not start in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> SynapseProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# --- Matrix client side ------------------------------------------------------------------------


async def matrix_register(
    http: aiohttp.ClientSession, server: SynapseProcess, user: str
) -> tuple[str, str]:
    """Register `user` through the shared-secret admin API; returns (user id, access token)."""
    url = server.url + "/_synapse/admin/v1/register"
    async with http.get(url) as r:
        r.raise_for_status()
        nonce = (await r.json())["nonce"]
    password = secrets.token_urlsafe(16)
    mac = hmac.new(server.secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, user, password):
        mac.update(part.encode())
        mac.update(b"\x00")
    mac.update(b"notadmin")
    body = {
        "nonce": nonce,
        "username": user,
        "password": password,
        "admin": False,
        "mac": mac.hexdigest(),
    }
    async with http.post(url, json=body) as r:
        r.raise_for_status()
        data = await r.json()
    return str(data["user_id"]), str(data["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class SyncReceiver:
    """User B's /sync long-poll loop; records when each event id arrives."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str, room: str) -> None:
        self.http = http
        self.url = url + "/_matrix/client/v3/sync"
        self.token = token
        self.room = room
        self.arrivals: dict[str, float] = {}
        self.limited = 0  # syncs whose timeline was cut short (events not seen)
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        params = {"filter": SYNC_FILTER, "timeout": "0", "set_presence": "offline"}
        async with self.http.get(self.url, params=params, headers=bearer(self.token)) as r:
            r.raise_for_status()
            since = (await r.json())["next_batch"]
        self.ready.set()
        params["timeout"] = "30000"
        while True:
            params["since"] = since
            async with self.http.get(self.url, params=params, headers=bearer(self.token)) as r:
                r.raise_for_status()
                data = await r.json()
            now = time.perf_counter()
            since = data["next_batch"]
            room = data.get("rooms", {}).get("join", {}).get(self.room)
            if room is None:
                continue
            timeline = room.get("timeline", {})
            if timeline.get("limited"):
                self.limited += 1
            for event in timeline.get("events", []):
                if event.get("type") == "m.room.encrypted":
                    self.arrivals[event["event_id"]] = now


def megolm_event(ciphertext_bytes: int) -> dict[str, str]:
    """An `m.room.encrypted` body as a Matrix client sends it (random bytes as ciphertext)."""

    def b64(n: int) -> str:
        return base64.b64encode(os.urandom(n)).decode().rstrip("=")

    return {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": b64(ciphertext_bytes),
        "device_id": "BENCHDEVICE",
        "sender_key": b64(32),
        "session_id": b64(32),
    }


# --- one closed-loop measurement, shared by both servers ---------------------------------------


class Arrivals(Protocol):
    arrivals: dict[str, float]


SendFn = Callable[[], Awaitable[str | None]]  # sends one message; its id, or None on failure


async def closed_loop(
    send: SendFn, rx: Arrivals, *, count: int, concurrency: int, max_s: float, pid: int
) -> dict[str, Any]:
    """`concurrency` workers send back to back until `count` messages (or `max_s`); then wait
    for the receiver to see them all."""
    sent_at: dict[str, float] = {}
    send_latency: list[float] = []
    errors: Counter[str] = Counter()
    issued = 0
    start = time.perf_counter()
    stop = start + max_s
    cpu0 = cpu_seconds(pid)

    async def worker() -> None:
        nonlocal issued
        while issued < count and time.perf_counter() < stop:
            issued += 1
            t0 = time.perf_counter()
            try:
                message_id = await send()
            except (aiohttp.ClientError, TimeoutError) as e:
                errors[type(e).__name__] += 1
                continue
            if message_id is None:
                errors["status"] += 1
                continue
            sent_at[message_id] = t0
            send_latency.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    sends_done = time.perf_counter()
    deadline = sends_done + DRAIN_TIMEOUT_S
    while sum(1 for m in sent_at if m in rx.arrivals) < len(sent_at):
        if time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.02)
    cpu1 = cpu_seconds(pid)
    e2e = [rx.arrivals[m] - t for m, t in sent_at.items() if m in rx.arrivals]
    end = max((rx.arrivals[m] for m in sent_at if m in rx.arrivals), default=sends_done)
    missing = {m for m in sent_at if m not in rx.arrivals}
    rx.arrivals.clear()
    elapsed = max(end - start, 1e-9)
    return {
        "concurrency": concurrency,
        "sent": len(sent_at),
        "delivered": len(e2e),
        "not_delivered": missing,
        "errors": dict(errors),
        "events_per_s": round(len(e2e) / elapsed, 1),
        "e2e_p50_ms": round(pct(e2e, 0.5) * 1000, 1),
        "e2e_p99_ms": round(pct(e2e, 0.99) * 1000, 1),
        "send_p50_ms": round(pct(send_latency, 0.5) * 1000, 1),
        "send_p99_ms": round(pct(send_latency, 0.99) * 1000, 1),
        "server_cpu_s_per_1000": round((cpu1 - cpu0) / max(1, len(e2e)) * 1000, 2),
        "seconds": round(elapsed, 2),
    }


QueuedFn = Callable[[], Awaitable[set[str]]]  # ids still waiting in the receiver's queue


async def measure_all(
    send: SendFn,
    rx: Arrivals,
    args: argparse.Namespace,
    pid: int,
    deadline: float,
    queued: QueuedFn | None = None,
) -> list[dict[str, Any]]:
    """Warm-up and measurement at each concurrency. Messages that never arrived are counted, and
    with `queued`, those still waiting on the server (accepted, not pushed) are counted apart."""
    results: list[dict[str, Any]] = []
    for c in args.concurrency:
        if time.monotonic() + args.measure_seconds > deadline:
            results.append({"concurrency": c, "skipped": "max-seconds reached"})
            continue
        await closed_loop(send, rx, count=args.warmup, concurrency=c, max_s=30, pid=pid)
        result = await closed_loop(
            send, rx, count=args.events, concurrency=c, max_s=args.measure_seconds, pid=pid
        )
        missing: set[str] = result.pop("not_delivered")
        result["not_delivered"] = len(missing)
        if queued is not None and missing:
            result["not_pushed_but_queued"] = len(missing & await queued())
        results.append(result)
    return results


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )


async def bench_synapse(
    server: SynapseProcess, args: argparse.Namespace, deadline: float
) -> list[dict[str, Any]]:
    assert server.proc is not None
    async with session() as http:
        tag = secrets.token_hex(3)
        user_a, token_a = await matrix_register(http, server, f"a{tag}")
        user_b, token_b = await matrix_register(http, server, f"b{tag}")
        room_body = {
            "preset": "private_chat",
            "invite": [user_b],
            "initial_state": [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        }
        async with http.post(
            server.url + "/_matrix/client/v3/createRoom", json=room_body, headers=bearer(token_a)
        ) as r:
            r.raise_for_status()
            room = str((await r.json())["room_id"])
        async with http.post(
            server.url + f"/_matrix/client/v3/rooms/{quote(room)}/join",
            json={},
            headers=bearer(token_b),
        ) as r:
            r.raise_for_status()
        rx = SyncReceiver(http, server.url, token_b, room)
        rx.task = asyncio.create_task(rx.run())
        await asyncio.wait_for(rx.ready.wait(), 60)
        send_url = server.url + f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.encrypted/"
        headers = bearer(token_a)

        async def send() -> str | None:
            txn = secrets.token_hex(8)
            async with http.put(
                send_url + txn, json=megolm_event(args.ciphertext_bytes), headers=headers
            ) as r:
                if r.status != 200:
                    await r.read()
                    return None
                return str((await r.json())["event_id"])

        try:
            results = await measure_all(send, rx, args, server.proc.pid, deadline)
        finally:
            rx.task.cancel()
            await asyncio.gather(rx.task, return_exceptions=True)
        for res in results:
            res["sync_timelines_limited"] = rx.limited
    return results


async def bench_accord(
    server: ServerProcess, args: argparse.Namespace, deadline: float
) -> list[dict[str, Any]]:
    assert server.proc is not None
    async with session() as http:
        tag = secrets.token_hex(3)
        alice: Device = await register(http, server.url, f"a{tag}")
        bob: Device = await register(http, server.url, f"b{tag}")
        rx = Receiver(http, server.url, bob)
        rx.task = asyncio.create_task(rx.run())
        await asyncio.wait_for(rx.ready.wait(), 60)
        headers = bearer(alice.token)

        async def send() -> str | None:
            env = envelope(alice, bob)
            async with http.post(server.url + "/v1/messages", json=env, headers=headers) as r:
                await r.read()
                return str(env["message_id"]) if r.status == 201 else None

        async def queued() -> set[str]:
            ids: set[str] = set()
            after = 0
            while True:
                async with http.get(
                    server.url + "/v1/messages",
                    params={"after": after, "limit": 500},
                    headers=bearer(bob.token),
                ) as r:
                    r.raise_for_status()
                    batch = await r.json()
                ids.update(e["message_id"] for e in batch["envelopes"])
                if not batch["more"] or not batch["envelopes"]:
                    return ids
                after = batch["envelopes"][-1]["id"]

        try:
            return await measure_all(send, rx, args, server.proc.pid, deadline, queued)
        finally:
            rx.task.cancel()
            await asyncio.gather(rx.task, return_exceptions=True)


def bench_db(kind: str, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="accord-vs-synapse-"))
    load_before = os.getloadavg()
    synapse_db, synapse_pg = synapse_database(kind, root / "synapse")
    try:
        with SynapseProcess(args.venv, root / "synapse", synapse_db) as syn:
            synapse = run_async(bench_synapse(syn, args, deadline))
    finally:
        if synapse_pg:
            drop_pg(synapse_pg)
    accord_url, accord_pg = pg_database() if kind == "postgresql" else (None, None)
    try:
        with ServerProcess(
            root / "accord", db_url=accord_url, extra_args=["--send-rate", "0"]
        ) as server:
            accord = run_async(bench_accord(server, args, deadline))
    finally:
        if accord_pg:
            drop_pg(accord_pg)
    shutil.rmtree(root, ignore_errors=True)
    ratios = []
    for s, a in zip(synapse, accord, strict=True):
        if "events_per_s" in s and "events_per_s" in a and s["events_per_s"]:
            ratios.append(
                {
                    "concurrency": s["concurrency"],
                    "accord_over_synapse": round(a["events_per_s"] / s["events_per_s"], 2),
                }
            )
    return {
        "database": kind,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "synapse": synapse,
        "accord": accord,
        "throughput_ratio": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--events", type=int, default=1000, help="per measurement")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--ciphertext-bytes", type=int, default=CIPHERTEXT_BYTES)
    parser.add_argument("--measure-seconds", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=570.0)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--synapse", default=SYNAPSE_SPEC, help="pip requirement")
    args = parser.parse_args()
    if args.ciphertext_bytes != CIPHERTEXT_BYTES:
        parser.error(f"Accord's envelopes carry {CIPHERTEXT_BYTES} bytes; keep them the same")
    deadline = time.monotonic() + args.max_seconds
    started = time.monotonic()
    version = ensure_synapse(args.venv, args.synapse)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    info = machine_info(
        sqlite=sqlite3.sqlite_version,
        postgresql=postgres_version() if "postgresql" in kinds else None,
        synapse=version,
        aiohttp=aiohttp.__version__,
    )
    runs = [bench_db(k, args, deadline) for k in kinds]
    out = {
        "benchmark": "Accord and Synapse, opaque encrypted messages A -> B",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": info,
        "parameters": {
            "events": args.events,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "ciphertext_bytes": args.ciphertext_bytes,
            "measure_seconds": args.measure_seconds,
            "synapse": args.synapse,
            "sync_timeline_limit": SYNC_TIMELINE_LIMIT,
        },
        "runs": runs,
        "total_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

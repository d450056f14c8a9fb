"""Relay throughput and latency of one `accord server` process on loopback.

Many concurrent devices: senders POST 1:1 envelopes over HTTP, receivers hold WebSockets and
acknowledge what is pushed to them. Ciphertexts are opaque random bytes of the size a padded
short text has after Olm (the server never looks inside, so its work is the same as for real
traffic); the load generator therefore spends its CPU on HTTP, not on Olm. Every send carries a
franking commitment, as the server requires (`extensions.franking`); it is 32 random bytes here,
since the server only tags it and never opens it (opening happens in a report). It uses aiohttp
(the `bench` extra): httpx's asyncio client tops out near 500 requests/s here and would
measure itself.

Two measurements per database:
  saturation  every sender sends back-to-back; delivered messages per second
  offered     an open-loop schedule at --rate messages/s; p50/p99 of send->push latency
              (sender's clock to receiver's clock, same process) and of the send request

Prints one JSON document (machine, parameters, results). Usage:
  python bench/messaging.py [--db sqlite|postgresql|both] [--pairs 50] [--seconds 15] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from machine import machine_info

from accord.primitives.olm import DeviceAccount
from accord.protocols.franking import COMMITMENT_BYTES
from accord.protocols.messaging import auth_payload, device_keys_payload
from accord.server.process import ServerProcess

PG_ADMIN = os.environ.get("ACCORD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
CIPHERTEXT_BYTES = 418  # Olm normal message carrying a 256-byte padded payload


@dataclass
class Device:
    account: str
    device_id: str
    token: str = ""
    olm: DeviceAccount = field(default_factory=DeviceAccount)


async def register(http: aiohttp.ClientSession, url: str, name: str) -> Device:
    dev = Device(account=name, device_id="BENCH" + secrets.token_hex(4).upper())
    ed, curve = dev.olm.ed25519, dev.olm.curve25519
    keys = {
        "account": name,
        "device_id": dev.device_id,
        "ed25519": ed,
        "curve25519": curve,
        "signature": dev.olm.sign(device_keys_payload(name, dev.device_id, ed, curve)),
    }
    async with http.post(url + "/v1/accounts", json={"v": 1, "device": keys}) as r:
        r.raise_for_status()
    async with http.post(
        url + "/v1/auth/challenge", json={"account": name, "device_id": dev.device_id}
    ) as r:
        challenge = (await r.json())["challenge"]
    sig = dev.olm.sign(auth_payload(name, dev.device_id, challenge))
    body = {"account": name, "device_id": dev.device_id, "challenge": challenge, "signature": sig}
    async with http.post(url + "/v1/auth/token", json=body) as r:
        r.raise_for_status()
        dev.token = (await r.json())["token"]
    return dev


def envelope(sender: Device, receiver: Device) -> dict[str, object]:
    body = base64.b64encode(os.urandom(CIPHERTEXT_BYTES)).decode()
    return {
        "v": 1,
        "message_id": base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="),
        "to": {"account": receiver.account},
        "recipients": [{"account": receiver.account, "device_id": receiver.device_id}],
        "copies": [
            {
                "account": receiver.account,
                "device_id": receiver.device_id,
                "olm": {"type": 1, "body": body},
            }
        ],
        "extensions": {"franking": franking_commitment()},
    }


def franking_commitment() -> dict[str, object]:
    """A well-formed commitment the server will tag; random, as no report will open it."""
    return {"v": 1, "commitment": base64.b64encode(os.urandom(COMMITMENT_BYTES)).decode()}


class Receiver:
    """A device holding a WebSocket; records when each message id arrives."""

    def __init__(self, http: aiohttp.ClientSession, url: str, dev: Device) -> None:
        self.http = http
        self.url = url.replace("http", "ws", 1) + "/v1/ws"
        self.dev = dev
        self.arrivals: dict[str, float] = {}
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async with self.http.ws_connect(
            self.url, headers={"Authorization": f"Bearer {self.dev.token}"}, max_msg_size=0
        ) as ws:
            self.ready.set()
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                now = time.perf_counter()
                frame = json.loads(msg.data)
                ids = []
                for env in frame.get("envelopes", []):
                    self.arrivals[env["message_id"]] = now
                    ids.append(env["id"])
                if ids:
                    await ws.send_str(json.dumps({"type": "ack", "ids": ids}))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run_load(url: str, pairs: int, seconds: float, rate: float | None) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=pairs * 3)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tag = secrets.token_hex(3)
        senders = [await register(http, url, f"s{tag}{i}") for i in range(pairs)]
        receivers = [await register(http, url, f"r{tag}{i}") for i in range(pairs)]
        rx = [Receiver(http, url, d) for d in receivers]
        for r in rx:
            r.task = asyncio.create_task(r.run())
        await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in rx)), 60)

        sent_at: dict[str, float] = {}
        send_latency: list[float] = []
        errors = 0
        stop = time.perf_counter() + seconds

        async def send_one(i: int) -> None:
            nonlocal errors
            env = envelope(senders[i], receivers[i])
            t0 = time.perf_counter()
            async with http.post(
                url + "/v1/messages",
                json=env,
                headers={"Authorization": f"Bearer {senders[i].token}"},
            ) as r:
                await r.read()
                status = r.status
            t1 = time.perf_counter()
            if status != 201:
                errors += 1
                return
            sent_at[str(env["message_id"])] = t0
            send_latency.append(t1 - t0)

        start = time.perf_counter()
        if rate is None:

            async def loop(i: int) -> None:
                while time.perf_counter() < stop:
                    await send_one(i)

            await asyncio.gather(*(loop(i) for i in range(pairs)))
        else:
            interval = 1.0 / rate
            tasks = []
            n = 0
            while True:
                due = start + n * interval
                if due >= stop:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send_one(n % pairs)))
                n += 1
            await asyncio.gather(*tasks)
        send_done = time.perf_counter()
        # wait for deliveries to drain
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            delivered = sum(len(r.arrivals) for r in rx)
            if delivered >= len(sent_at):
                break
            await asyncio.sleep(0.05)
        end = max((t for r in rx for t in r.arrivals.values()), default=send_done)
        for r in rx:
            assert r.task is not None
            r.task.cancel()
        await asyncio.gather(*(r.task for r in rx if r.task), return_exceptions=True)

    arrivals = {k: v for r in rx for k, v in r.arrivals.items()}
    e2e = [arrivals[m] - t for m, t in sent_at.items() if m in arrivals]
    elapsed = end - start
    return {
        "mode": "saturation" if rate is None else "offered",
        "offered_per_s": rate,
        "pairs": pairs,
        "seconds": seconds,
        "accepted": len(sent_at),
        "delivered": len(e2e),
        "lost": len(sent_at) - len(e2e),
        "errors": errors,
        "delivered_per_s": round(len(e2e) / elapsed, 1) if elapsed > 0 else None,
        "send_p50_ms": round(pct(send_latency, 0.5) * 1000, 2),
        "send_p99_ms": round(pct(send_latency, 0.99) * 1000, 2),
        "e2e_p50_ms": round(pct(e2e, 0.5) * 1000, 2),
        "e2e_p99_ms": round(pct(e2e, 0.99) * 1000, 2),
        "e2e_mean_ms": round(statistics.fmean(e2e) * 1000, 2) if e2e else None,
    }


def pg_database() -> tuple[str, str]:
    import psycopg

    name = f"accord_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, name


def drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_one(kind: str, args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="accord-bench-"))
    db_url, pg_name = (None, None)
    if kind == "postgresql":
        db_url, pg_name = pg_database()
    try:
        with ServerProcess(tmp / "server", db_url=db_url) as server:
            results = [
                asyncio.run(run_load(server.url, args.pairs, args.seconds, None)),
                asyncio.run(run_load(server.url, args.pairs, args.seconds, args.rate)),
            ]
    finally:
        if pg_name:
            drop_pg(pg_name)
    return {"database": kind, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pairs", type=int, default=50, help="sender/receiver device pairs")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=500.0, help="offered messages/s")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    out = {
        "benchmark": "messaging relay",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": machine_info(),
        "parameters": {
            "pairs": args.pairs,
            "seconds": args.seconds,
            "offered_rate_per_s": args.rate,
            "ciphertext_bytes": CIPHERTEXT_BYTES,
        },
        "runs": [bench_one(k, args) for k in kinds],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark of the abuse limits and the blob collector (docs/deployment.md §6).

- `limit_update_us`: one `SqlCounters` update (a token-bucket take, the work behind each account
  creation, link request, report and failed reviewer login), median and p95 in microseconds,
  on fresh keys and on one hot key;
- `collect_blobs_per_s`: one `BlobCollector.collect` pass over `--blobs` unsent blobs past their
  time (each a row and a 4 KiB file), a tenth of them held by a queued message (kept), in blobs
  removed per second.

On SQLite in a temporary directory, and on PostgreSQL with `--pg ADMIN_URL` (in a database of
its own, created there and dropped afterwards). Prints one JSON document.

    .venv/bin/python bench/housekeeping.py --updates 2000 --blobs 5000 \
        --pg postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from machine import machine_info
from sqlalchemy import insert

from accord.clock import ManualClock, now_ms
from accord.server.blobs import BLOB_UNSENT_TTL_S, BlobCollector, FileBlobStore, new_blob_id
from accord.server.limits import SqlCounters, _bucket_step
from accord.storage.db import Database, make_engine, sqlite_url
from accord.storage.migrate import upgrade_to_head
from accord.storage.schema import accounts, blobs, devices, message_blobs, messages

BLOB_BYTES = 4096


def _percentiles_us(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": round(statistics.median(ordered) * 1e6, 1),
        "p95": round(ordered[int(len(ordered) * 0.95)] * 1e6, 1),
    }


def _limit_updates(db: Database, clock: ManualClock, updates: int) -> dict[str, Any]:
    counters = SqlCounters(db, clock=clock)
    step = _bucket_step(1 / 60, 10)
    result: dict[str, Any] = {}
    for label, key_of in (("fresh_keys", lambda i: f"bench:{i}"), ("one_key", lambda _i: "hot")):
        samples = []
        for i in range(updates):
            start = time.perf_counter()
            counters.update(key_of(i), step, ttl_s=3600)
            samples.append(time.perf_counter() - start)
        result[label] = _percentiles_us(samples)
    return result


def _collect(db: Database, root: Path, clock: ManualClock, count: int) -> dict[str, Any]:
    store = FileBlobStore(root)
    created = now_ms(clock)

    def _tx(conn: Any) -> None:
        account = conn.execute(
            insert(accounts).values(name=f"bench-{os.getpid()}", created_at=created)
        ).inserted_primary_key[0]
        device = conn.execute(
            insert(devices).values(
                account_id=account,
                device_id="BENCH",
                ed25519="x",
                curve25519="x",
                signature="x",
                created_at=created,
                log_index=0,
            )
        ).inserted_primary_key[0]
        message = conn.execute(
            insert(messages).values(
                sender_device_pk=device,
                message_id="m" * 43,
                to_account="someone",
                extensions="{}",
                created_at=created,
                device_count=1,
            )
        ).inserted_primary_key[0]
        rows, held = [], []
        for i in range(count):
            blob_id = new_blob_id()
            path = root / blob_id[:2] / blob_id
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(os.urandom(BLOB_BYTES))
            rows.append(
                {"blob_id": blob_id, "size": BLOB_BYTES, "uploader_device_pk": device,
                 "created_at": created}
            )  # fmt: skip
            if i % 10 == 0:
                held.append({"message_pk": message, "blob_id": blob_id})
        conn.execute(insert(blobs), rows)
        conn.execute(insert(message_blobs), held)

    db.transact(_tx)
    clock.advance(BLOB_UNSENT_TTL_S + 1)
    collector = BlobCollector(db, store, clock=clock)
    removed = 0
    start = time.perf_counter()
    while (done := collector.collect().blobs.get("unsent", 0)) > 0:
        removed += done
    elapsed = time.perf_counter() - start
    return {
        "blobs": count,
        "removed": removed,
        "kept_held": count - removed,
        "seconds": round(elapsed, 2),
        "collect_blobs_per_s": round(removed / elapsed),
    }


def run(url: str, root: Path, updates: int, count: int) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade_to_head(engine)
    db = Database(engine)
    clock = ManualClock()
    try:
        return {
            "limit_update_us": _limit_updates(db, clock, updates),
            "collector": _collect(db, root / "blobs", clock, count),
        }
    finally:
        db.dispose()


@contextmanager
def _own_pg_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"accord_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--blobs", type=int, default=5000)
    parser.add_argument(
        "--pg", default=None, help="postgresql://... where it may create a database of its own"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run(sqlite_url(Path(tmp)), Path(tmp), args.updates, args.blobs)
    if args.pg:
        with tempfile.TemporaryDirectory() as tmp, _own_pg_database(args.pg) as url:
            results["postgresql"] = run(url, Path(tmp), args.updates, args.blobs)
    print(
        json.dumps(machine_info(updates=args.updates, blobs=args.blobs, results=results), indent=2)
    )


if __name__ == "__main__":
    main()

"""Private threshold matching, the server as wired: vouchers through the durable queue and the
processing worker's transactions (src/accord/server/private_matching/worker.py), on SQLite or
PostgreSQL.

    .venv/bin/python bench/matching_server.py --banked 2000 --vouchers 1000
    .venv/bin/python bench/matching_server.py --banked 2000 --vouchers 1000 \
        --db postgresql://postgres@127.0.0.1:5432/test

One server process, one worker thread. Vouchers (10% matching, spread over devices so none
crosses the threshold) are queued as `observe_send` queues them, then processed by
`process_pending`; the time is split into the scalar multiplications and AES trials (outside any
transaction) and the rest (queue, shares, counts: the database). bench/vouchers.py measures the
protocol core alone. Prints JSON (machine, parameters, results).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine_info
from sqlalchemy import Connection

from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.signals import PdqHash
from accord.protocols.private_matching.params import DERIVATIVE_BYTES
from accord.protocols.private_matching.table import BlindedTable, TableDigest
from accord.protocols.private_matching.voucher import (
    HEADER_BYTES,
    VOUCHER_ID_BYTES,
    AccountMatchingSecret,
    VoucherClient,
)
from accord.server.detection import DetectionService
from accord.server.private_matching import PrivateMatchingService
from accord.server.secrets import FileSecretsKey
from accord.server.translog import LogService
from accord.storage.db import Database, make_engine, sqlite_url
from accord.storage.migrate import upgrade_to_head
from accord.storage.private_matching import ensure_account_row
from accord.storage.schema import pm_queue
from accord.wire.matching import PublishTableRequest, matching_account_id

DEVICES = 10


def _random_hashes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keys = rng.random((n, 256))
    bits = (keys < np.median(keys, axis=1, keepdims=True)).astype(np.uint8)
    return np.packbits(bits, axis=1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="accord-bench-pm-"))
    engine = make_engine(args.db or sqlite_url(tmp))
    upgrade_to_head(engine)
    db = Database(engine)
    service = PrivateMatchingService(
        db,
        LogService(engine, tmp, "bench.local/log"),
        DetectionService(engine, tmp / "idx"),
        tmp,
        secrets=FileSecretsKey(path=tmp / "secrets.key"),
    )
    banked = _random_hashes(args.banked, seed=1)
    store = service.detection.store
    store.create_bank("bench")
    store.add_entries(
        "bench", [BankEntry(signal_type="pdq", hash=PdqHash(h.tobytes())) for h in banked]
    )
    t0 = time.perf_counter()
    summary = service.publish_table(PublishTableRequest(banks=["bench"]))
    publish_s = time.perf_counter() - t0
    digest = TableDigest(bytes.fromhex(summary.digest))
    table = BlindedTable.parse(
        (service.tables_dir / f"{summary.digest}.table").read_bytes(), expected_digest=digest
    )
    benign = _random_hashes(args.vouchers - args.vouchers // 10, seed=2)
    matching = banked[: args.vouchers // 10]
    images = [PdqHash(h.tobytes()) for h in np.concatenate([benign, matching])]
    per_device: dict[str, list[bytes]] = {}
    for d in range(DEVICES):
        client = VoucherClient(
            table=table,
            table_digest=digest,
            account_id=matching_account_id(f"bench{d}"),
            secret=AccountMatchingSecret.generate(),
        )
        per_device[f"bench{d}"] = [
            client.create_voucher(pdq=h, derivative=bytes(DERIVATIVE_BYTES), epoch=0)
            for h in images[d::DEVICES]
        ]

    def _enqueue(conn: Connection) -> None:
        for account, vouchers in per_device.items():
            key = matching_account_id(account).decode()
            ensure_account_row(conn, key)
            for v in vouchers:
                conn.execute(
                    pm_queue.insert().values(
                        matching_account=key,
                        voucher_id=v[HEADER_BYTES - VOUCHER_ID_BYTES : HEADER_BYTES],
                        device_id="DEVICE01",
                        voucher=v,
                    )
                )

    db.transact(_enqueue)
    prepare_s = 0.0
    real_prepare = service._prepare

    def timed_prepare(row: Any) -> Any:
        nonlocal prepare_s
        t = time.perf_counter()
        out = real_prepare(row)
        prepare_s += time.perf_counter() - t
        return out

    service._prepare = timed_prepare  # type: ignore[method-assign]
    t0, c0 = time.perf_counter(), time.process_time()
    processed = service.process_pending()
    total_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    status = service.status()
    service.close()
    db.dispose()
    return {
        "machine": machine_info(),
        "command": " ".join(sys.argv),
        "database": engine.dialect.name,
        "params": summary.params.model_dump(),
        "banked_hashes": args.banked,
        "publish_s": round(publish_s, 2),
        "vouchers": processed,
        "opened_shares": status.opened_shares,
        "crossings": status.crossings,
        "vouchers_per_s": round(processed / total_s, 1),
        # The CPU time of this process (the worker runs inline, one thread): vouchers per second
        # of one core, whatever else the machine runs; the wall rate above also waits on fsync.
        "cpu_s": round(cpu_s, 2),
        "vouchers_per_cpu_s": round(processed / cpu_s, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "crypto_s": round(prepare_s, 2),
        "database_s": round(total_s - prepare_s, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--banked", type=int, default=2000)
    ap.add_argument("--vouchers", type=int, default=1000)
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    print(json.dumps(run(ap.parse_args()), indent=1))


if __name__ == "__main__":
    main()

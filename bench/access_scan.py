"""Benchmark: the disclosure scan a target's device runs on every lawful-access sync.

Since the device no longer trusts the server's choice of disclosures, each sync reads every log
entry since the last one (`accord.client.log_scan.read_new_entries`: paged GET /v1/log/entries,
leaf hashes appended to the kept frontier, root compared with the verified checkpoint) and
parses the lawful-access entries among them (`accord.client.disclosures.scan_for_disclosures`).

Setup: one `accord server` (SQLite) on loopback. The log is filled, as its operator could, by
appending entries straight to its store: --base entries of which 1 in 50 is a lawful-access
entry (a record count), the rest opaque 300-byte entries standing in for device registrations.
Measured, with the real client library over HTTP:

- first: a device's first scan, from position 0 to the whole log (once per device);
- per sync: scans of --new new entries after each sync (the steady state), --rounds times.

Prints one JSON document: machine, parameters, results (milliseconds).

    .venv/bin/python bench/access_scan.py --base 10000 --new 10,100,1000 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from machine import machine_info

from accord.client.api import ServerApi
from accord.client.disclosures import DisclosureWatch, scan_for_disclosures
from accord.protocols.access.log_entries import RecordCountEntry
from accord.protocols.access.warrant import WarrantCommitment
from accord.protocols.translog.note import Checkpoint, parse_vkey
from accord.protocols.translog.verify import LogTrustPolicy, verify_checkpoint_note
from accord.server.process import ServerProcess
from accord.storage.db import make_engine, sqlite_url
from accord.storage.translog import TransparencyLogStore


def _entries(n: int, start: int) -> list[bytes]:
    out = []
    for i in range(start, start + n):
        if i % 50 == 0:
            out.append(RecordCountEntry(WarrantCommitment(os.urandom(32)), i, i).to_bytes())
        else:
            out.append(b'{"type":"bench.opaque.v1","x":"' + os.urandom(141).hex().encode() + b'"}')
    return out


def _append(store: TransparencyLogStore, entries: list[bytes]) -> None:
    for i in range(0, len(entries), 1000):
        store.append_batch(entries[i : i + 1000])


def _checkpoint(api: ServerApi, policy: LogTrustPolicy) -> Checkpoint:
    return verify_checkpoint_note(
        api.request_raw("GET", "/v1/log/checkpoint").text, policy
    ).checkpoint


def _scan(api: ServerApi, watch: DisclosureWatch, checkpoint: Checkpoint) -> float:
    t0 = time.perf_counter()
    scan_for_disclosures(
        api, watch, checkpoint, account="alice", approver_set=None, now=0, max_delay_s=0
    )
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=int, default=10000)
    parser.add_argument("--new", default="10,100,1000")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    news = [int(n) for n in args.new.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "server"
        server = ServerProcess(data).start()
        engine = make_engine(sqlite_url(data))
        try:
            store = TransparencyLogStore(engine)
            size = store.tree_head()[0]
            _append(store, _entries(args.base, size))
            api = ServerApi(server.url)
            info = api.request("GET", "/v1/log/info", auth=False)
            policy = LogTrustPolicy(info["origin"], (parse_vkey(info["vkey"]),))
            watch = DisclosureWatch()
            first_cp = _checkpoint(api, policy)
            first_ms = _scan(api, watch, first_cp)
            per_sync: dict[str, dict[str, float]] = {}
            for n in news:
                times = []
                for _ in range(args.rounds):
                    size = store.tree_head()[0]
                    _append(store, _entries(n, size))
                    times.append(_scan(api, watch, _checkpoint(api, policy)))
                q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
                per_sync[str(n)] = {
                    "median_ms": round(statistics.median(times), 2),
                    "iqr_ms": round(q[2] - q[0], 2),
                    "us_per_entry": round(1000 * statistics.median(times) / n, 1),
                }
            api.close()
        finally:
            engine.dispose()
            server.stop()
    print(
        json.dumps(
            {
                "benchmark": "lawful-access disclosure scan per sync",
                "machine": machine_info(),
                "parameters": vars(args),
                "results": {
                    "first_scan_entries": first_cp.size,
                    "first_scan_ms": round(first_ms, 1),
                    "per_sync_by_new_entries": per_sync,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

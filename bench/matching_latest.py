"""Benchmark of the client's "latest table only" check (docs/protocol/private-matching.md, C1a)
and of the floors check (C1b).

C1a: the client reads every log entry after the table's entry up to its checkpoint and verifies
them against the entry's inclusion proof (`verify_entries_after`): one leaf hash per entry and
the Merkle hashes of the proof's right-hand ranges. Measured here in memory, on entries of a
typical size (device registrations, about 600 bytes), for several numbers of later entries; the
network part is one `GET /v1/log/entries` per 1,000 entries on top. C1b: `check_params` with the
default floors, and the bound the floors are derived from.

Prints one JSON document: machine, parameters, results.

    .venv/bin/python bench/matching_latest.py --later 1000 10000 100000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from machine import machine_info

from accord.protocols.private_matching.floors import (
    DEFAULT_MATCHING_FLOORS,
    check_params,
    floors_bound,
)
from accord.protocols.private_matching.params import MatchingParams
from accord.protocols.translog import merkle
from accord.protocols.translog.note import Checkpoint
from accord.protocols.translog.verify import verify_entries_after

ENTRY_BYTES = 600


def _timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def _check(entries: list[bytes], index: int, checkpoint: Checkpoint, proof: list[bytes]) -> None:
    """What the client does once the entries are fetched."""
    later_hashes = [merkle.leaf_hash(e) for e in entries[index + 1 :]]
    verify_entries_after(entries[index], index, checkpoint, proof, later_hashes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--later", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--before", type=int, default=1000, help="entries before the table's")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = []
    for later in args.later:
        n = args.before + 1 + later
        entries = [i.to_bytes(8, "big") + b"\xa5" * (ENTRY_BYTES - 8) for i in range(n)]
        hashes = [merkle.leaf_hash(e) for e in entries]
        checkpoint = Checkpoint("bench.example", n, merkle.root_hash(hashes))
        index = args.before
        proof = merkle.inclusion_proof(hashes, index)
        seconds = _timed(
            lambda e=entries, i=index, c=checkpoint, p=proof: _check(e, i, c, p), args.repeats
        )
        results.append(
            {
                "later_entries": later,
                "verify_ms": round(seconds * 1000, 2),
                "us_per_entry": round(seconds / later * 1e6, 3),
                "entry_requests": -(-later // 1000),
            }
        )
    params = MatchingParams()
    floors_s = _timed(lambda: check_params(params, 2**26, DEFAULT_MATCHING_FLOORS), 50)
    bound_s = _timed(lambda: floors_bound(DEFAULT_MATCHING_FLOORS), 5)
    print(
        json.dumps(
            {
                "machine": machine_info(),
                "parameters": {"entry_bytes": ENTRY_BYTES, "repeats": args.repeats},
                "latest_check": results,
                "floors_check_us": round(floors_s * 1e6, 2),
                "floors_bound_ms": round(bound_s * 1000, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

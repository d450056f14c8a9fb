"""`accord bank import` of a large CSV: peak memory, streamed against the whole file read first.

Writes a CSV of N random MD5 entries (`md5,<hex>,<label>`), then, each in its own child
process (so that one's peak does not hide the other's), imports it into a new SQLite bank store
two ways: streamed, as `accord bank import` does now (`SqlBankStore.import_stream`), and the
reference, the file read whole and parsed into a list first (`import_file(path.read_bytes())`
over `parse_bank_file`, as before). Prints one JSON document: the machine, the load average,
the file's size, and per way the peak resident memory (ru_maxrss) and the wall time.

    .venv/bin/python bench/bank_import.py [--entries 2000000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402


def run_one(way: str, csv_path: Path, work: Path) -> dict[str, float]:
    from accord.protocols.detection.importers import parse_bank_file
    from accord.storage.banks import SqlBankStore

    store = SqlBankStore.open_sqlite(work / f"{way}.db")
    store.create_bank("b")
    start = time.perf_counter()
    if way == "streamed":
        with csv_path.open("rb") as f:
            result = store.import_stream("b", f, "csv", source="csv:bench")
        added = result.added
    else:
        parsed = parse_bank_file(csv_path.read_bytes(), "csv", source="csv:bench")
        added = store.add_entries("b", parsed.entries)
    elapsed = time.perf_counter() - start
    store.close()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"added": added, "seconds": round(elapsed, 1), "peak_rss_mib": round(peak_mib, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=2_000_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        way, csv_path, work = args.child
        print(json.dumps(run_one(way, Path(csv_path), Path(work))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv_path = work / "list.csv"
        with csv_path.open("w") as f:
            buf = io.StringIO()
            for i in range(args.entries):
                buf.write(f"md5,{secrets.token_hex(16)},label-{i % 100}\n")
                if i % 100_000 == 99_999:
                    f.write(buf.getvalue())
                    buf = io.StringIO()
            f.write(buf.getvalue())
        results = {}
        for way in ("streamed", "whole file (reference)"):
            child = subprocess.run(
                [sys.executable, __file__, "--child", way.split()[0], str(csv_path), str(work)],
                capture_output=True,
                text=True,
                check=True,
            )
            results[way] = json.loads(child.stdout)
        print(
            json.dumps(
                {
                    "machine": machine_info(load_average=os.getloadavg()),
                    "entries": args.entries,
                    "file_mib": round(csv_path.stat().st_size / 2**20, 1),
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

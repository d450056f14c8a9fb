"""Private-matching tables at list sizes: bytes per banked hash, build time with worker
processes, and a client's memory when it makes vouchers from the memory-mapped table file; and
recall through a real table.

    .venv/bin/python bench/pm_table.py build --sizes 100000 1000000 --workers 2 \
        --dir /tmp/pm-table-bench

For each size: random balanced PDQ hashes; `write_table` with `--workers` processes (time until
the slots are placed, time to blind, total); the file's bytes per banked hash. Then a fresh
process (`client`) opens the table with `BlindedTable.open_file` (it hashes the file, then maps
it), makes `--vouchers` vouchers (one in ten for a banked hash) and reports its resident memory;
back here, every voucher for a banked hash that is not synthetic must open with the table's
secret. Above `--blind-max` hashes only the steps up to placement are run and timed, and the
slots are filled with stand-in points (for the file's size and the client's memory). The load
average is printed next to every step. Prints JSON.

    .venv/bin/python bench/pm_table.py recall --images ../shared/data/images/highres

    .venv/bin/python bench/pm_table.py delta --sizes 100000 1000000 --delta-percent 1

`delta`: a table of random hashes built with its placement (`write_table`; above `--blind-max`
with stand-in points as in `build`), then `--delta-percent` of the bank changed (half of it
removed, as many new hashes added) and the next version built from the first
(`delta.update_table`, `--workers` processes): the delta's bytes against the table's, the slots
changed, its build time against the full build's; then the client's side in this process:
`apply_delta` to a copy of the first table and `BlindedTable.open_file` of the result against
the new digest (apply + verify).

`recall`: the photos' own PDQ hashes banked in a table, one voucher (no synthetic ones) per
everyday edit of each photo (bench/vouchers.py's EVERYDAY), opened with the table's secret:
recall through the table, next to plain PDQ's at 31 bits on the same pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine_info
from pm_hashes import random_hashes
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from accord.primitives.ristretto import random_points
from accord.protocols.detection.signals import PDQ_MATCH_THRESHOLD_BITS, PdqHash
from accord.protocols.private_matching.bands import BandSampler
from accord.protocols.private_matching.delta import apply_delta, update_table
from accord.protocols.private_matching.matcher import open_outer_unverified
from accord.protocols.private_matching.params import MatchingParams
from accord.protocols.private_matching.placement import placement_of, write_placement
from accord.protocols.private_matching.table import (
    BlindedTable,
    TableBuild,
    TableDigest,
    TableSecret,
    _table_header,
    build_table,
    cuckoo_positions,
    place_elements,
    slot_count_for,
    unique_band_elements,
    write_table,
)
from accord.protocols.private_matching.voucher import (
    AccountMatchingSecret,
    VoucherClient,
    parse_voucher_unverified,
)

DERIVATIVE = bytes(4096)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _memory() -> dict[str, int]:
    """This process's resident memory (KiB) from /proc/self/status."""
    wanted = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in wanted:
            out[key + "_kib"] = int(line.split()[1])
    return out


def run_client(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: open the table memory-mapped and make vouchers."""
    before = _memory()
    t0 = time.perf_counter()
    table = BlindedTable.open_file(
        Path(args.table), expected_digest=TableDigest(bytes.fromhex(args.digest))
    )
    open_s = time.perf_counter() - t0
    client = VoucherClient(
        table=table,
        table_digest=table.digest(),
        account_id=b"bench",
        secret=AccountMatchingSecret.generate(),
    )
    banked = np.load(args.banked)
    unrelated = random_hashes(args.vouchers, seed=7)
    pdqs = [
        PdqHash((banked[i % len(banked)] if i % 10 == 0 else unrelated[i]).tobytes())
        for i in range(args.vouchers)
    ]
    times, vouchers = [], []
    for pdq in pdqs:
        t1 = time.perf_counter()
        vouchers.append(client.create_voucher(pdq=pdq, derivative=DERIVATIVE, epoch=0))
        times.append(time.perf_counter() - t1)
    Path(args.out).write_bytes(b"".join(vouchers))
    return {
        "open_and_verify_s": round(open_s, 2),
        "ms_per_voucher_median": round(1000 * sorted(times)[len(times) // 2], 2),
        "voucher_bytes": len(vouchers[0]),
        "memory_before_open": before,
        "memory_after_vouchers": _memory(),
    }


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the build's workers)."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _real_table(
    hashes: np.ndarray,
    path: Path,
    params: MatchingParams,
    secret: TableSecret,
    row: dict[str, Any],
    workers: int,
    placement_path: Path | None = None,
) -> TableBuild:
    """The real build (`write_table`), timed: until placed, blinding, CPU seconds."""
    marks: dict[str, float] = {}
    cpu0, t0 = _cpu_s(), time.perf_counter()
    with Progress(
        TextColumn(f"{len(hashes):,} hashes"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("blinding", total=None)

        def progress(done: int, total: int) -> None:
            marks.setdefault("placed", time.perf_counter())
            bar.update(task, completed=done, total=total)

        built = write_table(
            hashes,
            path,
            params=params,
            secret=secret,
            workers=workers,
            progress=progress,
            placement_path=placement_path,
        )
    total_s, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    row.update(
        how=f"write_table, {workers} worker processes",
        elements=built.n_elements,
        slots=built.n_slots,
        load_factor=round(built.n_elements / built.n_slots, 4),
        file_bytes=built.size,
        bytes_per_banked_hash=round(built.size / len(hashes), 1),
        place_s=round(marks["placed"] - t0, 1),
        blind_s=round(total_s - (marks["placed"] - t0), 1),
        build_s=round(total_s, 1),
        cpu_s=round(cpu, 1),
        cpu_us_per_element=round(1e6 * cpu / built.n_elements, 1),
        load_after_build=_load(),
    )
    return built


def _standin_table(
    hashes: np.ndarray,
    path: Path,
    params: MatchingParams,
    secret: TableSecret,
    row: dict[str, Any],
    placement_path: Path | None = None,
) -> TableBuild:
    """The build's steps up to placement (timed, exactly as `write_table` does them, in one
    process), then a file of the same size whose slots are 4,096 random points repeated
    instead of blinded elements: for the size and the client's memory, not for matching."""
    t0 = time.perf_counter()
    seed, salt = os.urandom(32), os.urandom(16)
    elements = unique_band_elements(hashes, BandSampler.create(seed, params))
    n_slots = slot_count_for(len(elements))
    t1 = time.perf_counter()
    positions = cuckoo_positions(salt, elements, n_slots)
    t2 = time.perf_counter()
    placed = place_elements(positions, n_slots, seed=1)
    t3 = time.perf_counter()
    del positions
    pool = np.frombuffer(random_points(4096), dtype=np.uint8).reshape(-1, 32)
    header = _table_header(params, seed, salt, secret.public, n_slots)
    with path.open("wb") as f:
        f.write(header)
        for start in range(0, n_slots, 1 << 20):
            k = min(1 << 20, n_slots - start)
            f.write(np.resize(pool, (k, 32)).tobytes())
    row.update(
        how="placement timed in one process; slots filled with stand-in points",
        placed=placed is not None,
        elements=len(elements),
        slots=n_slots,
        load_factor=round(len(elements) / n_slots, 4),
        file_bytes=path.stat().st_size,
        bytes_per_banked_hash=round(path.stat().st_size / len(hashes), 1),
        elements_s=round(t1 - t0, 1),
        positions_s_one_process=round(t2 - t1, 1),
        place_s=round(t3 - t2, 1),
        load_after_build=_load(),
    )
    digest = TableDigest.of_file(path)
    if placement_path is not None and placed is not None:
        write_placement(placement_path, placement_of(digest.value, placed, elements))
    return TableBuild(
        digest=digest,
        n_slots=n_slots,
        n_elements=len(elements),
        size=path.stat().st_size,
    )


def _results_head(args: argparse.Namespace, params: MatchingParams) -> dict[str, Any]:
    return {
        "machine": machine_info(),
        "command": " ".join(sys.argv),
        "params": repr(params),
        "workers": args.workers,
        "sizes": {},
    }


def run_build(args: argparse.Namespace) -> dict[str, Any]:
    params = MatchingParams()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    results = _results_head(args, params)
    for n in args.sizes:
        row: dict[str, Any] = {"banked_hashes": n, "load_before": _load()}
        hashes = random_hashes(n, seed=n)
        secret = TableSecret.generate()
        path = folder / f"table-{n}.table"
        if n > args.blind_max:
            built = _standin_table(hashes, path, params, secret, row)
        else:
            built = _real_table(hashes, path, params, secret, row, args.workers)
        banked = folder / f"banked-{n}.npy"
        np.save(banked, hashes[:: max(1, n // 100)][:100])
        out = folder / f"vouchers-{n}.bin"
        t1 = time.perf_counter()
        child = subprocess.run(
            [
                sys.executable, __file__, "client", "--table", str(path),
                "--digest", built.digest.hex(), "--banked", str(banked),
                "--vouchers", str(args.vouchers), "--out", str(out),
            ],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        client = json.loads(child.stdout)
        client["wall_s"] = round(time.perf_counter() - t1, 1)
        client["load_after"] = _load()
        if n <= args.blind_max:
            table = BlindedTable.open_file(path, expected_digest=built.digest)
            size = client["voucher_bytes"]
            data = out.read_bytes()
            opened = expected = 0
            for i in range(0, args.vouchers, 10):  # the vouchers for banked hashes
                voucher = parse_voucher_unverified(data[i * size : (i + 1) * size], params)
                expected += 1
                opened += open_outer_unverified(voucher, secret, table) is not None
            client["banked_vouchers_opened"] = f"{opened}/{expected} (a synthetic one need not)"
        row["client"] = client
        results["sizes"][str(n)] = row
        if not args.keep:
            path.unlink()
        print(json.dumps(row), file=sys.stderr)
    return results


def run_delta(args: argparse.Namespace) -> dict[str, Any]:
    params = MatchingParams()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    results = _results_head(args, params)
    results["delta_percent"] = args.delta_percent
    for n in args.sizes:
        row: dict[str, Any] = {"banked_hashes": n, "load_before": _load()}
        hashes = random_hashes(n, seed=n)
        secret = TableSecret.generate()
        base, base_placement = folder / f"delta-{n}-a.table", folder / f"delta-{n}-a.placement"
        full: dict[str, Any] = {}
        if n > args.blind_max:
            built = _standin_table(hashes, base, params, secret, full, base_placement)
        else:
            built = _real_table(hashes, base, params, secret, full, args.workers, base_placement)
        row["full_build"] = full
        # the change: half removed, as many new hashes added
        half = int(n * args.delta_percent / 100) // 2
        keep = np.ones(n, dtype=bool)
        keep[np.random.default_rng(n + 1).choice(n, half, replace=False)] = False
        changed = np.concatenate([hashes[keep], random_hashes(half, seed=n + 2)])
        out, delta = folder / f"delta-{n}-b.table", folder / f"delta-{n}-b.delta"
        cpu0, t0 = _cpu_s(), time.perf_counter()
        update = update_table(
            changed,
            base_path=base,
            base_digest=built.digest,
            base_placement=base_placement,
            out_path=out,
            delta_path=delta,
            placement_path=folder / f"delta-{n}-b.placement",
            params=params,
            secret=secret,
            workers=args.workers,
        )
        build_s, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
        if update is None:
            row["delta"] = "not built (a full build would follow)"
            results["sizes"][str(n)] = row
            continue
        row["delta_build"] = {
            "removed_hashes": half,
            "added_hashes": half,
            "elements": update.table.n_elements,
            "load_factor": round(update.table.n_elements / update.table.n_slots, 4),
            "changed_slots": update.changed_slots,
            "changed_share_of_slots": round(update.changed_slots / update.table.n_slots, 4),
            "delta_bytes": update.delta_size,
            "table_bytes": update.table.size,
            "delta_share_of_table": round(update.delta_size / update.table.size, 4),
            "build_s": round(build_s, 1),
            "cpu_s": round(cpu, 1),
            "load_after": _load(),
        }
        # the client: apply to a copy of the first table, then open it against the new digest
        made = folder / f"delta-{n}-c.table"
        t1 = time.perf_counter()
        apply_delta(
            base, delta, made, base=built.digest, new=update.table.digest,
            expected_delta=update.delta_digest,
        )  # fmt: skip
        t2 = time.perf_counter()
        BlindedTable.open_file(made, expected_digest=update.table.digest)
        t3 = time.perf_counter()
        row["client"] = {
            "apply_s": round(t2 - t1, 2),
            "verify_s": round(t3 - t2, 2),
            "apply_and_verify_s": round(t3 - t1, 2),
            "load_after": _load(),
        }
        results["sizes"][str(n)] = row
        if not args.keep:
            for path in folder.glob(f"delta-{n}-*"):
                path.unlink()
        print(json.dumps(row), file=sys.stderr)
    return results


def run_recall(args: argparse.Namespace) -> dict[str, Any]:
    """Recall through a real table: the photos' own hashes banked in a three-way cuckoo table,
    one voucher per everyday edit (no synthetic vouchers), opened with the table's secret."""
    from vouchers import EVERYDAY, _hash_photos

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as empty:
        data = _hash_photos(Path(args.images), Path(empty))
    params = MatchingParams(synthetic_rate_ppm=0)
    pairs = [
        (orig, near)
        for t in EVERYDAY
        for orig, near in zip(data["orig"], data["near"][t], strict=True)
        if orig is not None and near is not None
    ]
    bank = sorted({o for o in data["orig"] if o is not None})
    secret = TableSecret.generate()
    table = build_table([PdqHash(bytes.fromhex(h)) for h in bank], params=params, secret=secret)
    client = VoucherClient(
        table=table,
        table_digest=table.digest(),
        account_id=b"bench",
        secret=AccountMatchingSecret.generate(),
    )
    opened = plain = 0
    for orig, near in pairs:
        a, b = PdqHash(bytes.fromhex(orig)), PdqHash(bytes.fromhex(near))
        plain += a.distance(b) <= PDQ_MATCH_THRESHOLD_BITS
        voucher = client.create_voucher(pdq=b, derivative=DERIVATIVE, epoch=0)
        opened += (
            open_outer_unverified(parse_voucher_unverified(voucher, params), secret, table)
            is not None
        )
    return {
        "machine": machine_info(),
        "command": " ".join(sys.argv),
        "table": {"banked_hashes": len(bank), "slots": table.n_slots},
        "everyday_pairs": len(pairs),
        "recall_through_table": round(opened / len(pairs), 4),
        "plain_pdq_recall": round(plain / len(pairs), 4),
        "ratio": round(opened / plain, 4),
        "seconds": round(time.perf_counter() - t0, 1),
        "load_after": _load(),
    }


def _sized(parser: argparse.ArgumentParser, folder: str, blind_max: int) -> argparse.ArgumentParser:
    """The options of the commands that build tables at list sizes."""
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dir", default=folder)
    parser.add_argument("--keep", action="store_true", help="keep the table files")
    parser.add_argument(
        "--blind-max",
        type=int,
        default=blind_max,
        help="above this many hashes, time the placement only and fill with stand-in points",
    )
    return parser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = _sized(sub.add_parser("build"), "/tmp/pm-table-bench", 1_000_000)
    build.add_argument("--vouchers", type=int, default=200)
    delta = _sized(sub.add_parser("delta"), "/tmp/pm-delta-bench", 100_000)
    delta.add_argument("--delta-percent", type=float, default=1.0)
    recall = sub.add_parser("recall")
    recall.add_argument("--images", required=True, help="the photos of bench/vouchers.py params")
    client = sub.add_parser("client")
    client.add_argument("--table", required=True)
    client.add_argument("--digest", required=True)
    client.add_argument("--banked", required=True)
    client.add_argument("--vouchers", type=int, default=200)
    client.add_argument("--out", required=True)
    args = parser.parse_args()
    runs = {"build": run_build, "client": run_client, "recall": run_recall, "delta": run_delta}
    result = runs[args.cmd](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Private threshold matching: parameter measurement on real photos, and performance.

    .venv/bin/python bench/vouchers.py params --images ../shared/data/images/highres \
        --fp-images ../shared/data/images/fp --plots docs/img
    .venv/bin/python bench/vouchers.py perf --bank-sizes 100000 1000000

`params` hashes every photo and every everyday edit (src/accord/protocols/detection/transforms.py,
the evaluation harness's edits), measures band agreement for candidate (L, b) on true
near-duplicate pairs and on all pairs of unrelated photos, checks the band model against the real
pairs, and derives the threshold t and the synthetic-noise statistics. `perf` measures client and
server cost, voucher bytes, and table size and build time. Both print JSON (machine, parameters,
results).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from math import exp, factorial, lgamma, log, log1p
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine_info
from pm_hashes import random_hashes

from accord.errors import InvalidInput
from accord.protocols.detection.evaluation import list_images
from accord.protocols.detection.hashers import pdq_from_pixels
from accord.protocols.detection.images import load_image
from accord.protocols.detection.signals import PDQ_MATCH_THRESHOLD_BITS, PdqHash
from accord.protocols.detection.transforms import TRANSFORMS, apply_transform
from accord.protocols.private_matching.bands import BandSampler
from accord.protocols.private_matching.matcher import InMemoryShareStore, ThresholdMatcher
from accord.protocols.private_matching.params import (
    MatchingParams,
    band_collision_probability,
)
from accord.protocols.private_matching.table import (
    TABLE_HEADER_BYTES,
    TableSecret,
    build_table,
    cuckoo_positions,
    place_elements,
    slot_count_for,
    unique_band_elements,
)
from accord.protocols.private_matching.voucher import AccountMatchingSecret, VoucherClient

#: The edits plain PDQ is designed to survive (re-encoding, resizing, colour, blur, overlays);
#: geometric edits need query/bank variants (docs/detection.md) and are reported separately.
EVERYDAY = (
    "identity",
    "jpeg-q90",
    "jpeg-q70",
    "jpeg-q50",
    "jpeg-q20",
    "downscale-0.5",
    "downscale-0.25",
    "brightness+30%",
    "brightness-30%",
    "contrast+30%",
    "contrast-30%",
    "blur-r1",
    "blur-r3",
    "watermark",
    "grayscale",
    "rescale-recompress",
)
GRID_L = (8, 16, 24, 32, 48, 64)
GRID_B = (24, 28, 32, 36, 40, 44, 48)
IMAGES_PER_YEAR = 10_000
TARGET_FLAG_PER_YEAR = 1e-12
MODEL_SAFETY_FACTOR = 10


def _hash_rows(hashes: list[str | None]) -> np.ndarray:
    return np.array([np.frombuffer(bytes.fromhex(h or "00" * 32), np.uint8) for h in hashes])


def _distance(a: str | None, b: str | None) -> int:
    if a is None or b is None:
        return 999
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _hash_photos(images: Path, fp_images: Path) -> dict[str, Any]:
    orig: list[str | None] = []
    near: dict[str, list[str | None]] = {t: [] for t in TRANSFORMS}
    for p in list_images(images):
        px = load_image(p.read_bytes()).pixels
        r = pdq_from_pixels(px)
        orig.append(r.hash.hex() if r.usable else None)
        for t in TRANSFORMS:
            q = pdq_from_pixels(apply_transform(t, px))
            near[t].append(q.hash.hex() if q.usable else None)
    fp: list[str] = []
    for p in list_images(fp_images):
        try:
            r = pdq_from_pixels(load_image(p.read_bytes()).pixels)
        except InvalidInput:
            continue
        if r.usable:
            fp.append(r.hash.hex())
    return {"orig": orig, "near": near, "fp": fp}


def _poisson_tail(lam: float, t: int) -> float:
    """P[Poisson(lam) >= t], summed directly (no cancellation for tiny values)."""
    return sum(exp(-lam + k * log(lam) - log(factorial(k))) for k in range(t, t + 200))


def _binom_pmf(n: int, k: int, p: float) -> float:
    return exp(lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1) + k * log(p) + (n - k) * log1p(-p))


def _min_threshold(rate_per_image: float) -> int:
    lam = IMAGES_PER_YEAR * rate_per_image * MODEL_SAFETY_FACTOR
    t = 2
    while _poisson_tail(lam, t) >= TARGET_FLAG_PER_YEAR:
        t += 1
    return t


def run_params(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    data = _hash_photos(Path(args.images), Path(args.fp_images))
    orig = data["orig"]
    dists = {
        t: [_distance(o, h) for o, h in zip(orig, data["near"][t], strict=True)] for t in TRANSFORMS
    }
    everyday = [d for t in EVERYDAY for d in dists[t]]
    fp = _hash_rows(data["fp"])
    bits = np.unpackbits(fp, axis=1).astype(np.int16)
    dmat = 256 - (bits @ bits.T + (1 - bits) @ (1 - bits).T)
    pairs = dmat[np.triu_indices(len(fp), 1)]
    hist = np.bincount(pairs, minlength=257) / len(pairs)

    def model_pair_band_rate(b: int) -> float:
        return float(sum(hist[d] * band_collision_probability(d, b) for d in range(257) if hist[d]))

    def expected_recall(ds: list[int], n_bands: int, b: int) -> float:
        return float(
            np.mean(
                [
                    (1 - (1 - band_collision_probability(d, b)) ** n_bands)
                    if d <= PDQ_MATCH_THRESHOLD_BITS
                    else 0.0
                    for d in ds
                ]
            )
        )

    grid = []
    for b in GRID_B:
        rate = model_pair_band_rate(b)
        for n_bands in GRID_L:
            per_image = {n: n * n_bands * rate for n in (100_000, 1_000_000)}
            grid.append(
                {
                    "band_count": n_bands,
                    "band_bits": b,
                    "recall_everyday": round(expected_recall(everyday, n_bands, b), 4),
                    "false_band_matches_per_image_100k": per_image[100_000],
                    "false_band_matches_per_image_1m": per_image[1_000_000],
                    "table_bytes_per_hash": round(n_bands * 32 / 0.45),
                }
            )

    # Model check: per-band agreement of real unrelated pairs with actual band positions.
    validation = []
    rng = np.random.default_rng(0)
    for b in (8, 12, 16, 20, 24):
        p = MatchingParams(band_count=32, band_bits=b)
        sampler = BandSampler.create(rng.bytes(32), p)
        collide = 0
        for band in sampler.elements_batch(fp):
            _, counts = np.unique(band, axis=0, return_counts=True)
            collide += int((counts * (counts - 1) // 2).sum())
        measured = collide / (32 * len(pairs))
        validation.append({"band_bits": b, "measured": measured, "model": model_pair_band_rate(b)})

    default = MatchingParams()
    sampler = BandSampler.create(rng.bytes(32), default)
    per_transform = {}
    for t in TRANSFORMS:
        hits, plain = 0, 0
        for o, h in zip(orig, data["near"][t], strict=True):
            d = _distance(o, h)
            if d > PDQ_MATCH_THRESHOLD_BITS:
                continue
            plain += 1
            ea = sampler.elements(PdqHash(bytes.fromhex(o or "")))
            eb = sampler.elements(PdqHash(bytes.fromhex(h or "")))
            hits += any(x == y for x, y in zip(ea, eb, strict=True))
        n = len(orig)
        per_transform[t] = {
            "plain_pdq": round(plain / n, 4),
            "private_measured": round(hits / n, 4),
            "private_expected": round(
                expected_recall(dists[t], default.band_count, default.band_bits), 4
            ),
        }
    rate = model_pair_band_rate(default.band_bits)
    q = {n: n * default.band_count * rate for n in (100_000, 1_000_000)}
    p_syn = default.synthetic_rate_ppm / 1e6
    zero = [_binom_pmf(IMAGES_PER_YEAR, k, p_syn) for k in range(400)]
    t = default.threshold
    tv = 0.5 * sum(abs(zero[k] - (zero[k - t + 1] if k >= t - 1 else 0.0)) for k in range(400))
    near_counts = [0] * 32
    for d in everyday:
        if d <= 31:
            near_counts[d] += 1
    report = {
        "machine": machine_info(),
        "command": " ".join(sys.argv),
        "n_photos": len(orig),
        "n_fp_photos": len(data["fp"]),
        "n_unrelated_pairs": int(len(pairs)),
        "unrelated_distance": {
            "mean": float(pairs.mean()),
            "sd": float(pairs.std()),
            "min": int(pairs.min()),
        },
        "everyday_pairs": len(everyday),
        "plain_pdq_recall_everyday": float(np.mean([d <= 31 for d in everyday])),
        "near_duplicate_distance_counts": near_counts,
        "grid": grid,
        "model_validation": validation,
        "default": {
            "params": default.__repr__(),
            "recall_everyday_measured": float(
                np.mean([per_transform[t]["private_measured"] for t in EVERYDAY])
            ),
            "recall_everyday_expected": expected_recall(
                everyday, default.band_count, default.band_bits
            ),
            "false_band_matches_per_image": q,
            "min_threshold_100k": _min_threshold(q[100_000]),
            "min_threshold_1m": _min_threshold(q[1_000_000]),
            "innocent_flag_per_year_1m_at_t": _poisson_tail(IMAGES_PER_YEAR * q[1_000_000], t),
            "innocent_flag_per_year_1m_at_t_model_x10": _poisson_tail(
                IMAGES_PER_YEAR * q[1_000_000] * 10, t
            ),
            "synthetic_per_year": IMAGES_PER_YEAR * p_syn,
            "count_tv_zero_vs_t_minus_1": tv,
            "per_transform": per_transform,
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if args.plots:
        _plots(report, Path(args.plots))
    return report


def _plots(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for b in GRID_B:
        rows = [g for g in report["grid"] if g["band_bits"] == b]
        ax.plot(
            [g["false_band_matches_per_image_1m"] for g in rows],
            [g["recall_everyday"] for g in rows],
            marker="o",
            label=f"b = {b}",
        )
        for g in rows:
            ax.annotate(
                str(g["band_count"]),
                (g["false_band_matches_per_image_1m"], g["recall_everyday"]),
                fontsize=7,
                xytext=(3, -8),
                textcoords="offset points",
            )
    ax.axhline(0.95, color="grey", linestyle=":")
    ax.axvline(1e-6, color="grey", linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("false band matches per benign image, 1,000,000 banked hashes (model)")
    ax.set_ylabel("recall on everyday edits (expected over band seeds)")
    ax.set_title("bit-sampling bands: recall vs false band matches (labels: L)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "private-matching-tradeoff.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    v = report["model_validation"]
    ax.semilogy(
        [x["band_bits"] for x in v],
        [x["measured"] for x in v],
        "o",
        label="measured (real unrelated pairs)",
    )
    ax.semilogy(
        [x["band_bits"] for x in v], [x["model"] for x in v], "-", label="model C(256-d,b)/C(256,b)"
    )
    ax.set_xlabel("bits per band b")
    ax.set_ylabel("per-band agreement rate, unrelated pair")
    ax.set_title("band model against real PDQ pairs")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "private-matching-model.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 5))
    pt = report["default"]["per_transform"]
    names = list(pt)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [pt[n]["plain_pdq"] for n in names], 0.4, label="plain PDQ <= 31")
    ax.bar(
        x + 0.2,
        [pt[n]["private_measured"] for n in names],
        0.4,
        label="private matching (L=32, b=40)",
    )
    ax.set_xticks(x, names, rotation=75, fontsize=7)
    ax.set_ylabel("recall")
    ax.legend()
    ax.set_title("recall per edit: plain PDQ vs banded private matching")
    fig.tight_layout()
    fig.savefig(out / "private-matching-recall.png", dpi=110)
    plt.close(fig)


def run_perf(args: argparse.Namespace) -> dict[str, Any]:
    params = MatchingParams()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "command": " ".join(sys.argv),
        "params": repr(params),
    }
    # Table size and build time per bank size.
    tables = {}
    for n in args.bank_sizes:
        hashes = random_hashes(n, seed=n)
        t0 = time.perf_counter()
        if n <= args.full_build_max:
            secret = TableSecret.generate()
            table = build_table(hashes, params=params, secret=secret)
            elapsed = time.perf_counter() - t0
            n_slots = table.n_slots
            tables[n] = (table, secret, hashes)
            kind = "full build (blinding + cuckoo + random fill)"
        else:
            sampler = BandSampler.create(os.urandom(32), params)
            elements = unique_band_elements(hashes[: n // 10], sampler)
            n_slots = slot_count_for(len(elements) * 10)
            sample_slots = slot_count_for(len(elements))
            positions = cuckoo_positions(os.urandom(16), elements, sample_slots)
            ok = place_elements(positions, sample_slots, seed=1) is not None
            elapsed = time.perf_counter() - t0
            kind = f"slot count from a 1/10 sample (cuckoo placed: {ok}); build time extrapolated"
        size = TABLE_HEADER_BYTES + 32 * n_slots
        results.setdefault("tables", {})[str(n)] = {
            "banked_hashes": n,
            "slots": n_slots,
            "file_bytes": size,
            "bytes_per_banked_hash": round(size / n, 1),
            "build_s": round(elapsed, 1),
            "how": kind,
        }
    table, secret, hashes = tables[min(tables)]
    digest = table.digest()
    client = VoucherClient(
        table=table,
        table_digest=digest,
        account_id=b"bench",
        secret=AccountMatchingSecret.generate(),
    )
    deriv = bytes(4096)
    rng = np.random.default_rng(1)
    benign = [PdqHash(h.tobytes()) for h in random_hashes(args.images, seed=99)]
    matching = [
        PdqHash(hashes[i].tobytes())
        for i in rng.choice(len(hashes), args.images // 10, replace=False)
    ]
    client.create_voucher(pdq=benign[0], derivative=deriv, epoch=0)  # derive epoch keys once
    times = []
    vouchers = []
    for i, h in enumerate(benign + matching):
        t0 = time.perf_counter()
        vouchers.append(client.create_voucher(pdq=h, derivative=deriv, epoch=0))
        times.append(time.perf_counter() - t0)
        del i
    bank_set = {bytes(h) for h in hashes}
    matcher = ThresholdMatcher(
        table=table,
        secret=secret,
        store=InMemoryShareStore(),
        bank_check=lambda p: p.value in bank_set,
    )
    server_times = []
    opened = 0
    for v in vouchers:
        t0 = time.perf_counter()
        out = matcher.process_voucher(account_id=b"bench", voucher=v)
        server_times.append(time.perf_counter() - t0)
        opened += out.opened
    nb = len(benign)
    results["client_ms_per_image"] = {
        "median": round(1000 * statistics.median(times), 2),
        "p95": round(1000 * float(np.percentile(times, 95)), 2),
        "matching_median": round(1000 * statistics.median(times[nb:]), 2),
        "benign_median": round(1000 * statistics.median(times[:nb]), 2),
    }
    results["voucher_bytes"] = sorted({len(v) for v in vouchers})
    results["server"] = {
        "vouchers": len(vouchers),
        "opened": opened,
        "images_per_s_per_core_benign": round(nb / sum(server_times[:nb]), 1),
        "images_per_s_per_core_all": round(len(vouchers) / sum(server_times), 1),
        "ms_per_matching_voucher_median": round(1000 * statistics.median(server_times[nb:]), 2),
    }
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("params")
    p.add_argument("--images", required=True)
    p.add_argument("--fp-images", required=True)
    p.add_argument("--plots")
    f = sub.add_parser("perf")
    f.add_argument("--bank-sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    f.add_argument("--full-build-max", type=int, default=100_000)
    f.add_argument("--images", type=int, default=1000)
    args = ap.parse_args()
    report = run_params(args) if args.cmd == "params" else run_perf(args)
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()

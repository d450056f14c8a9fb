"""False matches at scale, extrapolated from the distances between unrelated photos.

Hashes the unrelated photos of `shared/data/images/fp` (plain PDQ, and Accord's query variants),
measures the Hamming distance of every pair of distinct photos, fits the distribution (normal;
and binomial with the effective number of independent bits, n_eff = mean * (256 - mean) / (256
* var)), and extrapolates the chance that one query hash lands within a threshold of one bank
hash, then the expected false matches per million queries against banks of 1M and 10M hashes:

    E = queries x bank hashes x hashes per query x P(distance <= threshold)

    .venv/bin/python bench/detection_false_matches.py [--shared ../shared]

Prints one JSON document (docs/detection.md, "False matches at scale", shows the arithmetic).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402

from accord.errors import InvalidInput  # noqa: E402
from accord.protocols.detection.hashers import pdq_from_pixels  # noqa: E402
from accord.protocols.detection.images import load_image  # noqa: E402
from accord.protocols.detection.variants import MatchMeasures, query_hashes  # noqa: E402

THRESHOLDS = (31, 48)
BANK_SIZES = (1_000_000, 10_000_000)
QUERIES = 1_000_000


def normal_tail(mean: float, sd: float, t: int) -> float:
    return 0.5 * math.erfc((mean - (t + 0.5)) / (sd * math.sqrt(2)))


def binomial_tail(n_eff: float, t: int) -> float:
    """P(X <= t * n_eff / 256) for X ~ Binomial(n_eff, 1/2), in logs (tiny values)."""
    n = round(n_eff)
    k_max = math.floor(t * n / 256)
    logs = [
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)
        for k in range(k_max + 1)
    ]
    top = max(logs)
    return math.exp(top) * sum(math.exp(v - top) for v in logs)


def empirical_tail(pairs: np.ndarray, t: int) -> float:
    """Straight-line extrapolation of log10 P(distance <= x) over the measured lower tail
    (from the smallest x with at least 10 pairs to the 1% quantile): heavier than the fits
    above, since natural photos are not independent random bits."""
    lo = int(np.sort(pairs)[9])
    hi = int(np.quantile(pairs, 0.01))
    xs = np.arange(lo, hi + 1)
    ys = np.log10([(pairs <= x).mean() for x in xs])
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(10 ** (intercept + slope * t))


def main() -> None:
    ap = argparse.ArgumentParser()
    default_shared = Path(__file__).resolve().parents[1] / ".." / "shared"
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("ACCORD_SHARED_DIR", default_shared))
    )
    args = ap.parse_args()
    folder = args.shared / "data" / "images" / "fp"
    plain, variants_per_query = [], []
    for path in sorted(folder.iterdir()):
        try:
            pixels = load_image(path.read_bytes()).pixels
        except InvalidInput:
            continue
        r = pdq_from_pixels(pixels)
        if r.usable:
            plain.append(np.unpackbits(np.frombuffer(r.hash.value, dtype=np.uint8)))
            # The hashes a query compares at the bank's threshold: tiles are candidates only the
            # verifying stage may accept, and hash-only banks never see them.
            variants_per_query.append(
                len(query_hashes(pixels, MatchMeasures(crops=False, tiles=False)))
            )
    bits = np.array(plain, dtype=np.int16)
    d = bits.shape[1] - (bits @ bits.T + (1 - bits) @ (1 - bits).T)
    pairs = d[np.triu_indices(len(bits), k=1)].astype(np.float64)
    mean, sd = float(pairs.mean()), float(pairs.std())
    n_eff = mean * (256 - mean) / (256 * sd * sd) * 256
    k = float(np.mean(variants_per_query))
    rows = []
    for t in THRESHOLDS:
        fits = (
            ("normal", normal_tail(mean, sd, t)),
            ("binomial", binomial_tail(n_eff, t)),
            ("empirical-tail", empirical_tail(pairs, t)),
        )
        for fit, p in fits:
            for size in BANK_SIZES:
                rows.append(
                    {
                        "threshold": t,
                        "fit": fit,
                        "p_pair": p,
                        "bank_hashes": size,
                        "false_matches_per_million_plain": QUERIES * size * p,
                        "false_matches_per_million_with_variants": QUERIES * size * k * p,
                    }
                )
    print(
        json.dumps(
            {
                "machine": machine_info(),
                "photos": len(bits),
                "pairs": len(pairs),
                "distance_mean": round(mean, 2),
                "distance_sd": round(sd, 2),
                "distance_min": int(pairs.min()),
                "pairs_within": {t: int((pairs <= t).sum()) for t in (31, 48, 64, 80)},
                "effective_bits": round(n_eff, 1),
                "query_hashes_mean": round(k, 2),
                "extrapolation": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

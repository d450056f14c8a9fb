"""The verifying stage's margin: inliers of edited originals against those of unrelated pairs.

For the first `--photos` bankable photos of `shared/data/images/highres`, the banked features
(`extract_features`) are checked against (a) each photo edited by every edit of
`transforms.EVERYDAY_TRANSFORMS` and (b) the first `--fp-photos` unrelated photos of
`shared/data/images/fp`. Each query is tried as `QueryFeatures.shows` tries it: as it is, its
mirror image, and its median-filtered copy; the table gives, per try, the fewest inliers an
edited original reached (per edit) and the most an unrelated pair reached. A candidate is
confirmed at VERIFY_MIN_INLIERS.

    .venv/bin/python bench/detection_inliers.py [--shared ../shared] [--photos 20]
        [--fp-photos 300]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402

from accord.errors import InvalidInput  # noqa: E402
from accord.protocols.detection.evaluation import list_images  # noqa: E402
from accord.protocols.detection.features import (  # noqa: E402
    VERIFY_MIN_INLIERS,
    LocalFeatures,
    QueryFeatures,
    count_inliers,
    extract_features,
)
from accord.protocols.detection.hashers import pdq_from_pixels  # noqa: E402
from accord.protocols.detection.images import load_image  # noqa: E402
from accord.protocols.detection.signals import PDQ_MIN_QUALITY  # noqa: E402
from accord.protocols.detection.transforms import EVERYDAY_TRANSFORMS, apply_transform  # noqa: E402

TRIES = ("plain", "mirrored", "denoised")


def inliers(query: QueryFeatures, banked: LocalFeatures) -> dict[str, int]:
    return {t: count_inliers(getattr(query, t), banked) for t in TRIES}


def main() -> None:
    ap = argparse.ArgumentParser()
    default_shared = Path(__file__).resolve().parents[1] / ".." / "shared"
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("ACCORD_SHARED_DIR", default_shared))
    )
    ap.add_argument("--photos", type=int, default=20)
    ap.add_argument("--fp-photos", type=int, default=300)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    images = args.shared / "data" / "images"
    photos = []
    for path in list_images(images / "highres"):
        pixels = load_image(path.read_bytes()).pixels
        if pdq_from_pixels(pixels).quality >= PDQ_MIN_QUALITY:
            photos.append(pixels)
        if len(photos) == args.photos:
            break
    banked = [extract_features(p) for p in photos]

    edited: dict[str, dict[str, list[int]]] = {}
    for edit in EVERYDAY_TRANSFORMS:
        rows = [
            inliers(QueryFeatures(apply_transform(edit, p)), b)
            for p, b in zip(photos, banked, strict=True)
        ]
        edited[edit] = {t: [r[t] for r in rows] for t in TRIES}
        best = [max(r.values()) for r in rows]
        edited[edit]["best"] = best

    unrelated: dict[str, list[int]] = {t: [] for t in (*TRIES, "best")}
    for path in list_images(images / "fp")[: args.fp_photos]:
        try:
            query = QueryFeatures(load_image(path.read_bytes()).pixels)
        except InvalidInput:
            continue
        if not query.verifiable:
            continue
        for b in banked:
            r = inliers(query, b)
            for t in TRIES:
                unrelated[t].append(r[t])
            unrelated["best"].append(max(r.values()))

    def pct(values: list[int], q: float) -> float:
        return float(np.percentile(values, q)) if values else 0.0

    result = {
        "machine": machine_info(opencv_threads=cv2.getNumThreads(), load_average=os.getloadavg()),
        "photos": len(photos),
        "verify_min_inliers": VERIFY_MIN_INLIERS,
        "edited_fewest_inliers_of_best_try": {e: min(v["best"]) for e, v in edited.items()},
        "edited_below_threshold": {
            e: sum(x < VERIFY_MIN_INLIERS for x in v["best"]) for e, v in edited.items()
        },
        "unrelated_pairs": len(unrelated["best"]),
        "unrelated_max": {t: max(v, default=0) for t, v in unrelated.items()},
        "unrelated_median": {t: pct(v, 50) for t, v in unrelated.items()},
        "unrelated_p99": {t: pct(v, 99) for t, v in unrelated.items()},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

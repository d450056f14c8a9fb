"""Reduced-size JPEG decoding (Pillow `draft`) before PDQ: speed gained and hash drift.

Inputs: the four 12-megapixel phone photos of the PDQ reference data
(`shared/vectors/pdq/pdq/data/reg-test-input/exif-rotn/`), and the `highres/` photos enlarged
to 3000 px on the long side and saved as JPEG quality 90 (a stand-in for camera images; the
enlargement makes them smoother than real camera output).

    .venv/bin/python bench/draft_decoding.py [--shared ../shared]

Prints one JSON document: per set, median decode+hash time with and without draft, and the
distribution of the Hamming distance between the two hashes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from accord.protocols.detection.hashers import pdq_from_pixels  # noqa: E402
from accord.protocols.detection.images import load_image  # noqa: E402


def measure(blobs: list[bytes]) -> dict[str, object]:
    full_t, fast_t, drift = [], [], []
    for data in blobs:
        t0 = time.perf_counter()
        full = pdq_from_pixels(load_image(data, draft=False).pixels)
        t1 = time.perf_counter()
        fast = pdq_from_pixels(load_image(data, draft=True).pixels)
        t2 = time.perf_counter()
        full_t.append(t1 - t0)
        fast_t.append(t2 - t1)
        drift.append(full.hash.distance(fast.hash))
    return {
        "images": len(blobs),
        "full_decode_ms_median": round(1000 * statistics.median(full_t), 1),
        "draft_decode_ms_median": round(1000 * statistics.median(fast_t), 1),
        "speedup": round(statistics.median(full_t) / statistics.median(fast_t), 1),
        "drift_bits_median": statistics.median(drift),
        "drift_bits_max": max(drift),
        "drift_bits_all": drift,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    default_shared = Path(__file__).resolve().parents[1] / ".." / "shared"
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("ACCORD_SHARED_DIR", default_shared))
    )
    args = ap.parse_args()
    phone = sorted((args.shared / "vectors/pdq/pdq/data/reg-test-input/exif-rotn").glob("*.jpg"))
    enlarged = []
    for p in sorted((args.shared / "data/images/highres").glob("*.jpg")):
        im = Image.open(p).convert("RGB")
        s = 3000 / max(im.size)
        im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        enlarged.append(buf.getvalue())
    report = {
        "benchmark": "jpeg-draft-decoding",
        "draft_min_side_px": 512,
        "phone_photos_12mp": measure([p.read_bytes() for p in phone]),
        "highres_enlarged_to_3000px": measure(enlarged),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

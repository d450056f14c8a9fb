"""Which derived hashes a banked image needs: each family's reach, measured.

For photos of `shared/data/images/highres` (from the 21st on, so they are not the ones the
families were first tried on), indexes growing sets of derived hashes (the base of trim and
central crops; side crops of 8%; corner crops of 8%; both at 15%; rotations of +-3, then +-6
degrees), edits each photo by every edit of `transforms.EVERYDAY_TRANSFORMS` but the mild ones,
and counts the photos whose edited copy (with Accord's query variants) lands within 31, 40 and
48 bits of one of its own derived hashes.

    .venv/bin/python bench/detection_derived_hashes.py [--shared ../shared] [--photos 14]

Prints a table; the result and the choices made from it are in docs/detection.md, section 9.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from accord.protocols.detection.hashers import pdq_from_pixels  # noqa: E402
from accord.protocols.detection.images import load_image  # noqa: E402
from accord.protocols.detection.transforms import EVERYDAY_TRANSFORMS, apply_transform  # noqa: E402
from accord.protocols.detection.variants import (  # noqa: E402
    MatchMeasures,
    bank_hashes,
    crop_sides,
    query_hashes,
    rotate_small,
)

THRESHOLDS = (31, 40, 48)


def bits(value: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(value, dtype=np.uint8))


def families(pixels: np.ndarray) -> dict[str, list[np.ndarray]]:
    def h(px: np.ndarray) -> np.ndarray:
        return bits(pdq_from_pixels(px).hash.value)

    base = bank_hashes(pixels, MatchMeasures(geometry=False))
    out = {"base": [bits(x.result.hash.value) for x in base]}
    for f in (0.08, 0.15):
        out[f"side{f}"] = [
            h(crop_sides(pixels, **{s: f})) for s in ("left", "top", "right", "bottom")
        ]
        out[f"corner{f}"] = [
            h(crop_sides(pixels, **{a: f, b: f}))
            for a, b in (("left", "top"), ("top", "right"), ("right", "bottom"), ("bottom", "left"))
        ]
    out["rot3"] = [h(rotate_small(pixels, a)) for a in (-3, 3)]
    out["rot6"] = [h(rotate_small(pixels, a)) for a in (-6, 6)]
    return out


COMBOS = {
    "base": ["base"],
    "+side8": ["base", "side0.08"],
    "+corner8": ["base", "side0.08", "corner0.08"],
    "+15%": ["base", "side0.08", "corner0.08", "side0.15", "corner0.15"],
    "+rot3": ["base", "side0.08", "corner0.08", "side0.15", "corner0.15", "rot3"],
    "+rot6": ["base", "side0.08", "corner0.08", "side0.15", "corner0.15", "rot3", "rot6"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    default_shared = Path(__file__).resolve().parents[1] / ".." / "shared"
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("ACCORD_SHARED_DIR", default_shared))
    )
    ap.add_argument("--photos", type=int, default=14)
    args = ap.parse_args()
    folder = args.shared / "data" / "images" / "highres"
    paths = sorted(folder.iterdir())[20 : 20 + args.photos]
    pixels = [load_image(p.read_bytes()).pixels for p in paths]
    fams = [families(px) for px in pixels]
    print(f"{len(pixels)} photos; cells: photos within {'/'.join(map(str, THRESHOLDS))} bits")
    print("| edit | " + " | ".join(COMBOS) + " |")
    for edit in EVERYDAY_TRANSFORMS:
        if edit.startswith("mild/"):
            continue
        best: dict[str, list[int]] = {c: [] for c in COMBOS}
        for px, fam in zip(pixels, fams, strict=True):
            edited = apply_transform(edit, px)
            q = [bits(x.result.hash.value) for x in query_hashes(edited, MatchMeasures())]
            for c, keys in COMBOS.items():
                bank = np.array([row for k in keys for row in fam[k]])
                d = (np.array(q)[:, None, :] != bank[None, :, :]).sum(axis=2).min() if q else 256
                best[c].append(int(d))
        cells = [" / ".join(str(sum(d <= t for d in best[c])) for t in THRESHOLDS) for c in COMBOS]
        print(f"| {edit} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

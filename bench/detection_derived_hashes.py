"""Which derived hashes a banked image needs: each family's reach, measured.

For photos of `shared/data/images/highres` (from the 21st on, so they are not the ones the
families were first tried on), indexes growing sets of derived hashes (the base of trim and
central crops; side crops of 8%; corner crops of 8%; both at 15%; rotations of +-3, then +-6
degrees; corner crops of 10%, then 5%; rotations of +-10 degrees), edits each photo by every edit of
`transforms.EVERYDAY_TRANSFORMS` but the mild ones and by corner crops of 5, 10 and 12%, and
counts the photos whose edited copy (with Accord's query variants) lands within 31, 40 and 48
bits of one of its own derived hashes.

    .venv/bin/python bench/detection_derived_hashes.py [--shared ../shared] [--photos 14]
        [--edits PREFIX]

Prints a table; the result and the choices made from it are in docs/detection.md, section 9.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import partial
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
    for f in (0.05, 0.08, 0.1, 0.15):
        out[f"corner{f}"] = [
            h(crop_sides(pixels, **{a: f, b: f}))
            for a, b in (("left", "top"), ("top", "right"), ("right", "bottom"), ("bottom", "left"))
        ]
    out["rot3"] = [h(rotate_small(pixels, a)) for a in (-3, 3)]
    out["rot6"] = [h(rotate_small(pixels, a)) for a in (-6, 6)]
    out["rot10"] = [h(rotate_small(pixels, a)) for a in (-10, 10)]
    return out


#: Each set adds its families to the one before it.
STEPS = {
    "base": ["base"],
    "+side8": ["side0.08"],
    "+corner8": ["corner0.08"],
    "+15%": ["side0.15", "corner0.15"],
    "+rot3": ["rot3"],
    "+rot6": ["rot6"],
    "+corner10": ["corner0.1"],
    "+corner5": ["corner0.05"],
    "+rot10": ["rot10"],
}
COMBOS = {
    name: [f for step in list(STEPS)[: k + 1] for f in STEPS[step]] for k, name in enumerate(STEPS)
}
#: Off-centre corner crops beyond EVERYDAY_TRANSFORMS: (left, top, right, bottom) shares cut.
EXTRA_EDITS = {
    f"crop/{name}-{round(100 * f)}": (
        f if "left" in name else 0,
        f if "top" in name else 0,
        f if "right" in name else 0,
        f if "bottom" in name else 0,
    )
    for name in ("top-left", "top-right", "bottom-right", "bottom-left")
    for f in (0.05, 0.1, 0.12)
}


def main() -> None:
    ap = argparse.ArgumentParser()
    default_shared = Path(__file__).resolve().parents[1] / ".." / "shared"
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("ACCORD_SHARED_DIR", default_shared))
    )
    ap.add_argument("--photos", type=int, default=14)
    ap.add_argument("--edits", default="", help="Only the edits whose name starts with this.")
    args = ap.parse_args()
    folder = args.shared / "data" / "images" / "highres"
    paths = sorted(folder.iterdir())[20 : 20 + args.photos]
    pixels = [load_image(p.read_bytes()).pixels for p in paths]
    fams = [families(px) for px in pixels]
    print(f"{len(pixels)} photos; cells: photos within {'/'.join(map(str, THRESHOLDS))} bits")
    print("| edit | " + " | ".join(COMBOS) + " |")
    edits: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        e: partial(apply_transform, e) for e in EVERYDAY_TRANSFORMS if not e.startswith("mild/")
    }
    for e, (left, top, right, bottom) in EXTRA_EDITS.items():
        edits[e] = partial(crop_sides, left=left, top=top, right=right, bottom=bottom)
    for edit, transform in edits.items():
        if args.edits and not edit.startswith(args.edits):
            continue
        best: dict[str, list[int]] = {c: [] for c in COMBOS}
        for px, fam in zip(pixels, fams, strict=True):
            edited = np.ascontiguousarray(transform(px))
            named = query_hashes(edited, MatchMeasures(tiles=False))
            q = [bits(x.result.hash.value) for x in named]
            for c, keys in COMBOS.items():
                bank = np.array([row for k in keys for row in fam[k]])
                d = (np.array(q)[:, None, :] != bank[None, :, :]).sum(axis=2).min() if q else 256
                best[c].append(int(d))
        cells = [" / ".join(str(sum(d <= t for d in best[c])) for t in THRESHOLDS) for c in COMBOS]
        print(f"| {edit} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

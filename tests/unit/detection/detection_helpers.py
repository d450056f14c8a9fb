"""Helpers shared by the detection tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "tests" / "vectors" / "pdq"


def photo_pixels(seed: int = 0, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A smooth, textured synthetic picture (good PDQ quality) for tests that need no photo."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(6):
            fx, fy, ph = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.28)]
            img[..., c] += np.sin(x * fx * 6.28 + y * fy * 6.28 + ph)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return img.astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, fmt, **kw)
    return buf.getvalue()

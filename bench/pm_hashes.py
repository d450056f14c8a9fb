"""Random balanced 256-bit hashes for the private-matching benchmarks (imported by them)."""

from __future__ import annotations

import numpy as np


def random_hashes(n: int, seed: int) -> np.ndarray:
    """n balanced hashes (128 ones, like PDQ's median threshold), as an (n, 32) byte array."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 32), dtype=np.uint8)
    for start in range(0, n, 50_000):
        k = min(50_000, n - start)
        keys = rng.random((k, 256))
        bits = (keys < np.median(keys, axis=1, keepdims=True)).astype(np.uint8)
        out[start : start + k] = np.packbits(bits, axis=1)
    return out

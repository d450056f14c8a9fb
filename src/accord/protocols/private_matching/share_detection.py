"""Telling real shares from synthetic ones once an account is past the threshold.

Every voucher carries, beside its Shamir share, a *detection tag*: for a real voucher the
evaluation at z = x mod p (p = 2^31 - 1) of a secret random vector-valued polynomial
F(z) = K . (1, z, ..., z^(t-2)) with K an m x (t-1) matrix held by the account's client (m is
`detection_dim`). A synthetic voucher carries a uniformly random tag. In coding terms the tags
form an interleaved Reed-Solomon code of dimension t-1 and interleaving degree m, and synthetic
tags are random errors; identifying the error positions is linear algebra (Bleichenbacher,
Kiayias and Yung, "Decoding of interleaved Reed Solomon codes over noisy data", ICALP 2003). It
plays the role of the detectable hash function in the Apple PSI system.

- Below the threshold (at most t-1 distinct real tags) the real tags are uniform and independent
  (t-1 evaluations of a random polynomial of degree t-2), exactly like synthetic ones.
- With at least t real tags, the rows [1, z, ..., z^(t-2) | tag] of the real vouchers lie in a
  subspace of dimension t-1, so they are linearly dependent, while s <= m - 2 random rows are,
  with probability at least 1 - 2^-31, independent of it and of each other. A row belongs to the
  support of the left kernel exactly when it is real.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from accord.errors import InvalidInput
from accord.protocols.private_matching.params import DETECTION_PRIME

I64 = npt.NDArray[np.int64]


def vandermonde_row(z: int, width: int) -> list[int]:
    row = [1]
    for _ in range(width - 1):
        row.append(row[-1] * z % DETECTION_PRIME)
    return row[:width]


def tag_for(matrix: I64, z: int) -> list[int]:
    """F(z) = matrix . (1, z, ..., z^(w-1)) mod p, for an (m, w) matrix of field elements."""
    powers = vandermonde_row(z % DETECTION_PRIME, matrix.shape[1])
    acc = np.zeros(matrix.shape[0], dtype=np.int64)
    for i, zp in enumerate(powers):
        acc = (acc + matrix[:, i] * zp) % DETECTION_PRIME
    return [int(v) for v in acc]


def identify_real_rows(zs: Sequence[int], tags: Sequence[Sequence[int]], width: int) -> list[int]:
    """Indices of the rows lying in the support of the left kernel of [V(z) | tag] (the real
    ones, when at least width + 1 real rows are present); empty if there is no dependency."""
    n = len(zs)
    if n != len(tags):
        raise InvalidInput("one tag per share")
    if n == 0:
        return []
    m = len(tags[0])
    if any(len(t) != m for t in tags):
        raise InvalidInput("tags differ in length")
    p = DETECTION_PRIME
    left = np.array(
        [vandermonde_row(z % p, width) + list(tag) for z, tag in zip(zs, tags, strict=True)],
        dtype=np.int64,
    )
    a = np.concatenate([left % p, np.eye(n, dtype=np.int64)], axis=1)
    cols = width + m
    rank = 0
    for col in range(cols):
        if rank == n:
            break
        nz = np.flatnonzero(a[rank:, col])
        if len(nz) == 0:
            continue
        piv = rank + int(nz[0])
        if piv != rank:
            a[[rank, piv]] = a[[piv, rank]]
        inv = pow(int(a[rank, col]), -1, p)
        a[rank] = a[rank] * inv % p
        factors = a[:, col].copy()
        factors[rank] = 0
        mask = factors != 0
        if mask.any():
            a[mask] = (a[mask] - factors[mask, None] * a[rank][None, :]) % p
        rank += 1
    kernel = a[rank:, cols:]
    if kernel.size == 0:
        return []
    support = np.flatnonzero((kernel != 0).any(axis=0))
    return [int(i) for i in support]

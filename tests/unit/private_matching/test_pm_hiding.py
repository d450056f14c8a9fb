"""Acceptance 2: below the threshold the server's state does not tell 0 from t-1 real matches
beyond the synthetic noise.

Statistic. Per account the server stores only its opened shares (x, y, detection tag, inner
ciphertext). We simulate accounts that send N images, with 0 or with t-1 banked among them, and
check that (a) nothing crosses the threshold and the detection code finds no real share in
either group; (b) the stored share values are distributed alike in both groups (two-sample
Kolmogorov-Smirnov on y / p and on the first tag word, p-value above 1e-3); (c) what remains is
the number of opened shares, whose distribution is Binomial(N, p) against t-1 + Binomial(N-t+1,
p): the test measures the advantage of the best count-based guess and checks it equals the
theoretical total variation distance between those two distributions (within sampling error).
"""

from __future__ import annotations

from math import comb

import numpy as np
from pm_helpers import DERIVATIVE, World

from accord.primitives.shamir import FIELD_PRIME
from accord.protocols.private_matching.params import DETECTION_PRIME, MatchingParams
from accord.protocols.private_matching.share_detection import identify_real_rows

PARAMS = MatchingParams(
    band_count=2, band_bits=40, threshold=4, synthetic_rate_ppm=200_000, detection_dim=24
)
N_IMAGES = 24
N_ACCOUNTS = 40


def _ks_p_value(a: list[float], b: list[float]) -> float:
    a_s, b_s = np.sort(a), np.sort(b)
    grid = np.concatenate([a_s, b_s])
    d = float(
        np.max(
            np.abs(
                np.searchsorted(a_s, grid, "right") / len(a_s)
                - np.searchsorted(b_s, grid, "right") / len(b_s)
            )
        )
    )
    n = len(a_s) * len(b_s) / (len(a_s) + len(b_s))
    lam = (np.sqrt(n) + 0.12 + 0.11 / np.sqrt(n)) * d
    return float(
        min(1.0, 2 * sum((-1) ** (k - 1) * np.exp(-2 * k * k * lam * lam) for k in range(1, 100)))
    )


def _binom(n: int, p: float) -> list[float]:
    return [comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]


def test_zero_and_t_minus_one_matches_look_alike_beyond_the_synthetic_noise() -> None:
    w = World(PARAMS, n_bank=N_ACCOUNTS * (PARAMS.threshold - 1), seed=11)
    p = PARAMS.synthetic_rate_ppm / 1e6
    t = PARAMS.threshold
    counts: dict[str, list[int]] = {"zero": [], "t-1": []}
    ys: dict[str, list[float]] = {"zero": [], "t-1": []}
    tags: dict[str, list[float]] = {"zero": [], "t-1": []}
    banked = iter(w.bank)
    for a in range(N_ACCOUNTS):
        for group in ("zero", "t-1"):
            account = f"{group}-{a}".encode()
            client = w.client(account)
            images = [w.unrelated() for _ in range(N_IMAGES)]
            if group == "t-1":
                images[: t - 1] = [next(banked) for _ in range(t - 1)]
            for img in images:
                out = w.matcher.process_voucher(
                    account_id=account,
                    voucher=client.create_voucher(pdq=img, derivative=DERIVATIVE, epoch=0),
                )
                assert not out.threshold_crossed and not out.confirmed
            shares = w.store.shares(account, 0)
            assert w.store.voucher_key(account, 0) is None
            assert (
                identify_real_rows([s.share.x for s in shares], [s.tag for s in shares], t - 1)
                == []
            )
            counts[group].append(len(shares))
            ys[group] += [s.share.y / FIELD_PRIME for s in shares]
            tags[group] += [s.tag[0] / DETECTION_PRIME for s in shares]

    # (b) share contents: same distribution in both groups
    assert _ks_p_value(ys["zero"], ys["t-1"]) > 1e-3
    assert _ks_p_value(tags["zero"], tags["t-1"]) > 1e-3
    # (c) counts: the only signal, and exactly as large as the synthetic noise allows
    zero = _binom(N_IMAGES, p)
    shifted = [0.0] * (t - 1) + _binom(N_IMAGES - t + 1, p)
    shifted += [0.0] * (len(zero) - len(shifted))
    tv = 0.5 * sum(abs(x - y) for x, y in zip(zero, shifted, strict=True))
    guess_many = [k for k in range(len(zero)) if shifted[k] > zero[k]]
    hits = sum(c in guess_many for c in counts["t-1"]) + sum(
        c not in guess_many for c in counts["zero"]
    )
    advantage = 2 * hits / (2 * N_ACCOUNTS) - 1
    assert abs(advantage - tv) < 4 * np.sqrt(1 / N_ACCOUNTS)
    assert np.mean(counts["zero"]) < np.mean(counts["t-1"])

from __future__ import annotations

import secrets

import numpy as np
import pytest

from accord.errors import InvalidInput
from accord.protocols.private_matching.params import DETECTION_PRIME
from accord.protocols.private_matching.share_detection import identify_real_rows, tag_for


def _rows(
    n_real: int, n_random: int, width: int, m: int
) -> tuple[list[int], list[list[int]], set[int]]:
    rng = np.random.default_rng(n_real * 100 + n_random)
    matrix = rng.integers(0, DETECTION_PRIME, size=(m, width), dtype=np.int64)
    zs, tags, real = [], [], set()
    for i in range(n_real + n_random):
        z = secrets.randbelow(DETECTION_PRIME)
        zs.append(z)
        if i < n_real:
            tags.append(tag_for(matrix, z))
            real.add(i)
        else:
            tags.append([secrets.randbelow(DETECTION_PRIME) for _ in range(m)])
    order = list(rng.permutation(len(zs)))
    return [zs[i] for i in order], [tags[i] for i in order], {order.index(i) for i in real}


@pytest.mark.parametrize(("t", "n_random"), [(3, 0), (4, 10), (10, 100), (10, 230)])
def test_real_rows_found_exactly_at_and_above_the_threshold(t: int, n_random: int) -> None:
    m = 256 if n_random > 20 else 16
    zs, tags, real = _rows(t, n_random, t - 1, m)
    assert set(identify_real_rows(zs, tags, t - 1)) == real
    zs, tags, real = _rows(t + 3, n_random, t - 1, m)
    assert set(identify_real_rows(zs, tags, t - 1)) == real


@pytest.mark.parametrize(("t", "n_random"), [(3, 5), (10, 100)])
def test_below_the_threshold_nothing_is_identified(t: int, n_random: int) -> None:
    zs, tags, _ = _rows(t - 1, n_random, t - 1, 256)
    assert identify_real_rows(zs, tags, t - 1) == []


def test_input_checks() -> None:
    assert identify_real_rows([], [], 3) == []
    with pytest.raises(InvalidInput):
        identify_real_rows([1], [], 3)
    with pytest.raises(InvalidInput):
        identify_real_rows([1, 2], [[1], [1, 2]], 3)

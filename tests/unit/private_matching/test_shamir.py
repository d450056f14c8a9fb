from __future__ import annotations

import secrets

import pytest

from accord.errors import InvalidInput
from accord.primitives.shamir import (
    FIELD_PRIME,
    Share,
    evaluate_polynomial,
    field_element_from_bytes,
    field_element_to_bytes,
    recover_secret,
)


def _shares(secret: int, t: int, n: int) -> list[Share]:
    coeffs = [secret] + [secrets.randbelow(FIELD_PRIME) for _ in range(t - 1)]
    xs = [secrets.randbelow(FIELD_PRIME - 1) + 1 for _ in range(n)]
    return [Share(x, evaluate_polynomial(coeffs, x)) for x in xs]


@pytest.mark.parametrize("t", [1, 2, 5, 12])
def test_any_t_shares_recover_a_32_byte_secret(t: int) -> None:
    secret = secrets.randbelow(FIELD_PRIME)
    shares = _shares(secret, t, t + 3)
    assert recover_secret(shares, t) == secret
    assert recover_secret(shares[3:], t) == secret


def test_too_few_shares_refused_and_wrong_shares_give_a_wrong_secret() -> None:
    secret = secrets.randbelow(FIELD_PRIME)
    shares = _shares(secret, 4, 4)
    with pytest.raises(InvalidInput, match="not enough"):
        recover_secret(shares[:3], 4)
    # interpolation cannot detect a bad share: callers verify the result (documented)
    bad = [*shares[:3], Share(shares[3].x, (shares[3].y + 1) % FIELD_PRIME)]
    assert recover_secret(bad, 4) != secret


def test_x_coordinates_must_be_distinct_and_non_zero() -> None:
    s = Share(5, 1)
    with pytest.raises(InvalidInput):
        recover_secret([s, s], 2)
    with pytest.raises(InvalidInput):
        recover_secret([Share(0, 1), s], 2)
    with pytest.raises(InvalidInput):
        recover_secret([s], 0)


def test_field_encoding() -> None:
    assert field_element_from_bytes(field_element_to_bytes(FIELD_PRIME - 1)) == FIELD_PRIME - 1
    with pytest.raises(InvalidInput):
        field_element_from_bytes(FIELD_PRIME.to_bytes(32, "big"))
    with pytest.raises(InvalidInput):
        field_element_from_bytes(bytes(31))

"""Shamir secret sharing over GF(2^255 - 19), for 32-byte secrets.

A share is a point (x, y) on a random polynomial of degree t - 1 whose constant term is the
secret; any t shares with distinct x give the secret back by Lagrange interpolation at 0, fewer
than t say nothing about it. Interpolation itself cannot tell a wrong set of shares from a right
one: callers must check the recovered secret (here, by opening an AEAD ciphertext with a key
derived from it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from accord.errors import InvalidInput

#: The field modulus: 2^255 - 19.
FIELD_PRIME = 2**255 - 19
FIELD_BYTES = 32


def field_element_from_bytes(data: bytes) -> int:
    """Decode a canonical 32-byte big-endian field element."""
    if len(data) != FIELD_BYTES:
        raise InvalidInput("a field element is 32 bytes")
    value = int.from_bytes(data, "big")
    if value >= FIELD_PRIME:
        raise InvalidInput("non-canonical field element")
    return value


def field_element_to_bytes(value: int) -> bytes:
    return (value % FIELD_PRIME).to_bytes(FIELD_BYTES, "big")


def field_element_from_uniform(data: bytes) -> int:
    """Reduce at least 48 uniform bytes modulo the prime (bias below 2^-128)."""
    if len(data) < 48:
        raise InvalidInput("reduction needs at least 48 uniform bytes")
    return int.from_bytes(data, "big") % FIELD_PRIME


@dataclass(frozen=True, slots=True)
class Share:
    x: int
    y: int

    def __repr__(self) -> str:
        return "Share(...)"


def evaluate_polynomial(coefficients: Sequence[int], x: int) -> int:
    """coefficients[0] + coefficients[1] x + ... modulo the prime (Horner)."""
    acc = 0
    for c in reversed(coefficients):
        acc = (acc * x + c) % FIELD_PRIME
    return acc


def recover_secret(shares: Sequence[Share], threshold: int) -> int:
    """Interpolate the first `threshold` shares at 0. Raises InvalidInput if there are too few
    shares or their x coordinates are not distinct and non-zero."""
    if threshold < 1:
        raise InvalidInput("threshold must be positive")
    if len(shares) < threshold:
        raise InvalidInput("not enough shares")
    use = shares[:threshold]
    xs = [s.x % FIELD_PRIME for s in use]
    if len(set(xs)) != len(xs) or 0 in xs:
        raise InvalidInput("share x coordinates must be distinct and non-zero")
    secret = 0
    for i, share in enumerate(use):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * xj % FIELD_PRIME
                den = den * (xj - xs[i]) % FIELD_PRIME
        secret = (secret + share.y * num * pow(den, -1, FIELD_PRIME)) % FIELD_PRIME
    return secret

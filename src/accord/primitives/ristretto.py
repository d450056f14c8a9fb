"""ristretto255 (RFC 9496) over libsodium, through `rbcl`.

Typed values: a `Scalar` is a canonical 32-byte little-endian integer below the group order; a
`Point` is a canonical 32-byte encoding of a group element that is not the identity. Both are
checked when built from bytes, so a decoded value is always safe to use; the identity is refused
because every use here (Diffie-Hellman style blinding) would leak or break on it.

`hash_to_group` is RFC 9380's `hash_to_ristretto255` (expand_message_xmd with SHA-512 to 64
bytes, then RFC 9496's one-way map, `crypto_core_ristretto255_from_hash`), with a caller-chosen
domain separation tag.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

import rbcl

from accord.errors import InvalidInput

POINT_BYTES = 32
SCALAR_BYTES = 32
#: The order of the ristretto255 group (RFC 9496, section 4.4).
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
_IDENTITY = bytes(32)
_SHA512_BLOCK_BYTES = 128
_SHA512_OUT_BYTES = 64


@dataclass(frozen=True, slots=True)
class Scalar:
    """An integer modulo the group order, canonically encoded (32 bytes, little-endian)."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes) or len(self.value) != SCALAR_BYTES:
            raise InvalidInput("a ristretto255 scalar is 32 bytes")
        if int.from_bytes(self.value, "little") >= GROUP_ORDER:
            raise InvalidInput("non-canonical ristretto255 scalar")

    @classmethod
    def random(cls) -> Scalar:
        """A uniformly random non-zero scalar."""
        while True:
            s = bytes(rbcl.crypto_core_ristretto255_scalar_random())
            if s != bytes(32):
                return cls(s)

    @classmethod
    def from_uniform_bytes(cls, data: bytes) -> Scalar:
        """Reduce 64 uniform bytes modulo the group order (negligible bias)."""
        if len(data) != 64:
            raise InvalidInput("scalar reduction takes 64 bytes")
        return cls(bytes(rbcl.crypto_core_ristretto255_scalar_reduce(data)))

    @classmethod
    def from_int(cls, n: int) -> Scalar:
        return cls((n % GROUP_ORDER).to_bytes(32, "little"))

    def to_int(self) -> int:
        return int.from_bytes(self.value, "little")

    def is_zero(self) -> bool:
        return hmac.compare_digest(self.value, bytes(32))

    def __repr__(self) -> str:  # secrets stay out of logs
        return "Scalar(...)"


@dataclass(frozen=True, slots=True)
class Point:
    """A ristretto255 group element other than the identity, canonically encoded."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes) or len(self.value) != POINT_BYTES:
            raise InvalidInput("a ristretto255 point is 32 bytes")
        if not rbcl.crypto_core_ristretto255_is_valid_point(self.value):
            raise InvalidInput("invalid ristretto255 point encoding")
        if hmac.compare_digest(self.value, _IDENTITY):
            raise InvalidInput("the identity is not an acceptable ristretto255 point")

    @classmethod
    def from_uniform_bytes(cls, data: bytes) -> Point:
        """RFC 9496 one-way map from 64 uniform bytes (section 4.3.4)."""
        if len(data) != 64:
            raise InvalidInput("the ristretto255 one-way map takes 64 bytes")
        return cls(bytes(rbcl.crypto_core_ristretto255_from_hash(data)))

    @classmethod
    def _from_libsodium(cls, value: bytes) -> Point:
        """Wrap an encoding libsodium just produced from valid inputs (skips re-validation)."""
        point = object.__new__(cls)
        object.__setattr__(point, "value", value)
        return point

    def __repr__(self) -> str:
        return f"Point({self.value[:4].hex()}...)"


def decode_point_or_identity(data: bytes) -> bytes:
    """Validate an encoding that may be the identity (for test vectors); returns the bytes."""
    if len(data) != POINT_BYTES or not rbcl.crypto_core_ristretto255_is_valid_point(data):
        raise InvalidInput("invalid ristretto255 point encoding")
    return data


def generator_multiple(scalar: Scalar) -> Point:
    """scalar * G, for a non-zero scalar."""
    if scalar.is_zero():
        raise InvalidInput("zero scalar")
    return Point._from_libsodium(bytes(rbcl.crypto_scalarmult_ristretto255_base(scalar.value)))


def multiply(scalar: Scalar, point: Point) -> Point:
    """scalar * point. The result is never the identity for a non-zero scalar (prime order)."""
    if scalar.is_zero():
        raise InvalidInput("zero scalar")
    # A non-zero scalar times a non-identity element of a prime-order group is never the identity.
    return Point._from_libsodium(
        bytes(rbcl.crypto_scalarmult_ristretto255(scalar.value, point.value))
    )


def add(p: Point, q: Point) -> Point:
    """p + q; raises InvalidInput if the sum is the identity."""
    return Point(bytes(rbcl.crypto_core_ristretto255_add(p.value, q.value)))


def subtract(p: Point, q: Point) -> Point:
    return Point(bytes(rbcl.crypto_core_ristretto255_sub(p.value, q.value)))


def expand_message_xmd_sha512(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380, section 5.3.1, with SHA-512."""
    if not 1 <= len(dst) <= 255:
        raise InvalidInput("a domain separation tag is 1 to 255 bytes")
    ell = -(-len_in_bytes // _SHA512_OUT_BYTES)
    if ell > 255 or len_in_bytes > 65535 or len_in_bytes < 1:
        raise InvalidInput("requested output too long")
    dst_prime = dst + bytes([len(dst)])
    z_pad = bytes(_SHA512_BLOCK_BYTES)
    l_i_b_str = len_in_bytes.to_bytes(2, "big")
    b_0 = hashlib.sha512(z_pad + msg + l_i_b_str + b"\x00" + dst_prime).digest()
    b_i = hashlib.sha512(b_0 + b"\x01" + dst_prime).digest()
    out = [b_i]
    for i in range(2, ell + 1):
        b_i = hashlib.sha512(
            bytes(x ^ y for x, y in zip(b_0, b_i, strict=True)) + bytes([i]) + dst_prime
        ).digest()
        out.append(b_i)
    return b"".join(out)[:len_in_bytes]


def hash_to_group(msg: bytes, dst: bytes) -> Point:
    """RFC 9380 hash_to_ristretto255: expand_message_xmd(SHA-512, 64 bytes) + one-way map."""
    return Point.from_uniform_bytes(expand_message_xmd_sha512(msg, dst, 64))


def multiply_hashed_batch(scalar: Scalar, messages: Iterable[bytes], dst: bytes) -> bytes:
    """scalar * hash_to_group(m, dst) for every message, concatenated (32 bytes each).

    The same computation as `multiply(scalar, hash_to_group(m, dst))`, without a `Point` per
    element: the outputs of libsodium's one-way map and scalar multiplication are valid,
    non-identity encodings by construction (prime order, non-zero scalar)."""
    if scalar.is_zero():
        raise InvalidInput("zero scalar")
    from_hash = rbcl.crypto_core_ristretto255_from_hash
    scalarmult = rbcl.crypto_scalarmult_ristretto255
    k = scalar.value
    return b"".join(
        bytes(scalarmult(k, from_hash(expand_message_xmd_sha512(m, dst, 64)))) for m in messages
    )


def random_points(count: int) -> bytes:
    """`count` uniformly random group elements, concatenated (32 bytes each)."""
    random = rbcl.crypto_core_ristretto255_random
    return b"".join(bytes(random()) for _ in range(count))

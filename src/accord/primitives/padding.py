"""Padding of plaintexts to size buckets, so ciphertext lengths reveal only the bucket.

Buckets are powers of two from `MIN_PADDED_BYTES`; the pad is ISO/IEC 7816-4 (0x80 then zeros),
which removes unambiguously.
"""

from __future__ import annotations

from accord.errors import DecryptionError, InvalidInput

MIN_PADDED_BYTES = 256
MAX_PADDED_BYTES = 1 << 20


def padded_size(length: int) -> int:
    """Smallest bucket that holds `length` bytes plus the 0x80 marker."""
    need = length + 1
    size = MIN_PADDED_BYTES
    while size < need:
        size <<= 1
    if size > MAX_PADDED_BYTES:
        raise InvalidInput(f"plaintext longer than {MAX_PADDED_BYTES - 1} bytes")
    return size


def pad(data: bytes) -> bytes:
    size = padded_size(len(data))
    return data + b"\x80" + b"\x00" * (size - len(data) - 1)


def unpad(data: bytes) -> bytes:
    """Remove the pad; anything that is not a well-formed bucket is a decryption failure."""
    size = len(data)
    if size < MIN_PADDED_BYTES or size > MAX_PADDED_BYTES or size & (size - 1):
        raise DecryptionError()
    end = data.rstrip(b"\x00")
    if not end or end[-1] != 0x80:
        raise DecryptionError()
    return end[:-1]

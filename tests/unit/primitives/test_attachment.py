"""Attachment encryption: round trips, every rejection, and key commitment."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import DecryptionError, InvalidInput, TooLarge
from accord.primitives.attachment import (
    CHUNK_BYTES,
    OVERHEAD_BYTES,
    AttachmentSecrets,
    decrypt_stream,
    encrypt_stream,
)


def _encrypt(data: bytes) -> tuple[bytes, AttachmentSecrets]:
    out = io.BytesIO()
    secrets = encrypt_stream(io.BytesIO(data), out, max_plaintext_bytes=1 << 30)
    return out.getvalue(), secrets


def _decrypt(blob: bytes, secrets: AttachmentSecrets) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, secrets)
    return out.getvalue()


@pytest.mark.parametrize(
    "size", [0, 1, 15, 16, 17, CHUNK_BYTES - 1, CHUNK_BYTES, 3 * CHUNK_BYTES + 5]
)
def test_round_trip(size: int) -> None:
    data = os.urandom(size)
    blob, secrets = _encrypt(data)
    assert len(blob) == size + OVERHEAD_BYTES
    assert secrets.size == size and secrets.sha256 == hashlib.sha256(blob).digest()
    assert _decrypt(blob, secrets) == data


def test_ciphertext_differs_each_time() -> None:
    data = b"same file" * 100
    a, _ = _encrypt(data)
    b, _ = _encrypt(data)
    assert a != b


@settings(max_examples=60)
@given(st.integers(min_value=0, max_value=10_000 + OVERHEAD_BYTES - 1), st.integers(0, 7))
def test_any_flipped_bit_is_rejected(position: int, bit: int) -> None:
    data = bytes(range(256)) * 40
    blob, secrets = _encrypt(data)
    tampered = bytearray(blob)
    tampered[position % len(blob)] ^= 1 << bit
    with pytest.raises(DecryptionError):
        _decrypt(bytes(tampered), secrets)


def test_truncated_extended_and_wrong_key_are_rejected() -> None:
    data = os.urandom(5000)
    blob, secrets = _encrypt(data)
    for bad_blob in (blob[:-1], blob + b"\x00", blob[:10], b""):
        with pytest.raises(DecryptionError):
            _decrypt(bad_blob, secrets)
    wrong = AttachmentSecrets(key=os.urandom(32), sha256=secrets.sha256, size=secrets.size)
    with pytest.raises(DecryptionError):
        _decrypt(blob, wrong)
    wrong_size = AttachmentSecrets(key=secrets.key, sha256=secrets.sha256, size=secrets.size - 1)
    with pytest.raises(DecryptionError):
        _decrypt(blob, wrong_size)


def test_tag_valid_but_digest_wrong_is_rejected() -> None:
    blob, secrets = _encrypt(b"x" * 100)
    other = AttachmentSecrets(key=secrets.key, sha256=hashlib.sha256(b"other").digest(), size=100)
    with pytest.raises(DecryptionError):
        _decrypt(blob, other)


def test_key_commitment_one_blob_two_keys() -> None:
    """A blob made under one key never opens under another, even with the digest it carries."""
    blob, secrets = _encrypt(b"attack at dawn" * 10)
    for _ in range(50):
        other = AttachmentSecrets(key=os.urandom(32), sha256=secrets.sha256, size=secrets.size)
        with pytest.raises(DecryptionError):
            _decrypt(blob, other)


def test_limits_and_malformed_secrets() -> None:
    with pytest.raises(TooLarge):
        encrypt_stream(io.BytesIO(b"x" * 11), io.BytesIO(), max_plaintext_bytes=10)
    with pytest.raises(InvalidInput):
        AttachmentSecrets(key=b"short", sha256=b"\x00" * 32, size=1)
    with pytest.raises(InvalidInput):
        AttachmentSecrets(key=b"\x00" * 32, sha256=b"\x00" * 31, size=1)
    with pytest.raises(InvalidInput):
        encrypt_stream(io.BytesIO(b""), io.BytesIO(), max_plaintext_bytes=1, key=b"k")

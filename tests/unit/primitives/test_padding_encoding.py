from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import DecryptionError, InvalidInput
from accord.primitives.encoding import b64decode, b64decode_unpadded, b64encode, canonical_json
from accord.primitives.padding import MIN_PADDED_BYTES, pad, padded_size, unpad


@given(st.binary(max_size=5000))
def test_pad_round_trip_and_buckets(data: bytes) -> None:
    padded = pad(data)
    assert len(padded) == padded_size(len(data))
    assert len(padded) >= MIN_PADDED_BYTES and len(padded) & (len(padded) - 1) == 0
    assert unpad(padded) == data


def test_lengths_in_one_bucket_look_the_same() -> None:
    assert len(pad(b"")) == len(pad(b"x" * 200)) == 256
    assert len(pad(b"x" * 255)) == 256
    assert len(pad(b"x" * 256)) == 512


@pytest.mark.parametrize(
    "bad", [b"", b"\x80" * 255, b"\x00" * 256, b"abc" + b"\x00" * 253, b"\x80" + b"\x00" * 299]
)
def test_unpad_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(DecryptionError):
        unpad(bad)


@given(st.binary(max_size=1024))
def test_unpad_never_crashes(data: bytes) -> None:
    try:
        unpad(data)
    except DecryptionError:
        pass


def test_base64_is_strict() -> None:
    assert b64decode(b64encode(b"hello"), max_bytes=5) == b"hello"
    for bad in ("aGVsbG8", "aGVs bG8=", "a$==", "aGVsbG8=\n"):
        with pytest.raises(InvalidInput):
            b64decode(bad, max_bytes=100)
    with pytest.raises(InvalidInput):
        b64decode(b64encode(b"x" * 33), max_bytes=32)
    with pytest.raises(InvalidInput):
        b64decode_unpadded("aGVsbG8=", max_bytes=10)
    assert b64decode_unpadded("aGVsbG8", max_bytes=10) == b"hello"


def test_canonical_json_is_one_encoding() -> None:
    assert (
        canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    )
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})
    for bad in ({"x": 1.5}, {"x": 2**60}, {1: "x"}, {"x": b"bytes"}):
        with pytest.raises(InvalidInput):
            canonical_json(bad)

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from accord.errors import InvalidInput
from accord.primitives.ristretto import (
    GROUP_ORDER,
    Point,
    Scalar,
    add,
    decode_point_or_identity,
    expand_message_xmd_sha512,
    generator_multiple,
    hash_to_group,
    multiply,
    subtract,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "ristretto255"
RISTRETTO = json.loads((VECTORS / "rfc9496_ristretto255.json").read_text())
XMD = json.loads((VECTORS / "rfc9380_expand_message_xmd_sha512.json").read_text())


def test_small_multiples_of_the_generator() -> None:
    vectors = RISTRETTO["small_multiples"]
    assert len(vectors) == 16
    with pytest.raises(InvalidInput, match="identity"):
        Point(bytes.fromhex(vectors[0]["encoding"]))
    assert decode_point_or_identity(bytes.fromhex(vectors[0]["encoding"])) == bytes(32)
    g = generator_multiple(Scalar.from_int(1))
    acc = g
    for v in vectors[1:]:
        expected = bytes.fromhex(v["encoding"])
        assert generator_multiple(Scalar.from_int(v["k"])).value == expected
        assert multiply(Scalar.from_int(v["k"]), g).value == expected
        assert Point(expected).value == expected
        assert acc.value == expected
        if v["k"] < 15:
            acc = add(acc, g)
    assert subtract(acc, g).value == bytes.fromhex(vectors[14]["encoding"])


@pytest.mark.parametrize("vector", RISTRETTO["bad_encodings"], ids=lambda v: v["reason"])
def test_bad_encodings_are_rejected(vector: dict[str, str]) -> None:
    assert vector["expected"] == "reject"
    with pytest.raises(InvalidInput):
        Point(bytes.fromhex(vector["encoding"]))
    with pytest.raises(InvalidInput):
        decode_point_or_identity(bytes.fromhex(vector["encoding"]))


def test_bad_vector_list_is_complete() -> None:
    assert len(RISTRETTO["bad_encodings"]) == 29


@pytest.mark.parametrize("vector", RISTRETTO["one_way_map"], ids=lambda v: v["element"][:8])
def test_one_way_map(vector: dict[str, str]) -> None:
    digest = hashlib.sha512(vector["input_sha512_of_utf8"].encode()).digest()
    assert Point.from_uniform_bytes(digest).value == bytes.fromhex(vector["element"])


@pytest.mark.parametrize("vector", XMD["vectors"], ids=lambda v: f"{v['len_in_bytes']}")
def test_expand_message_xmd_sha512(vector: dict[str, object]) -> None:
    out = expand_message_xmd_sha512(
        str(vector["msg"]).encode(), XMD["dst"].encode(), int(str(vector["len_in_bytes"]))
    )
    assert out.hex() == vector["uniform_bytes"]


def test_hash_to_group_composes_xmd_and_the_map() -> None:
    dst = b"accord-test"
    expected = Point.from_uniform_bytes(expand_message_xmd_sha512(b"m", dst, 64))
    assert hash_to_group(b"m", dst) == expected
    assert hash_to_group(b"m", b"other") != expected


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_sizes_are_rejected(size: int) -> None:
    with pytest.raises(InvalidInput):
        Point(bytes(size))
    with pytest.raises(InvalidInput):
        Scalar(bytes(size))


def test_scalars() -> None:
    with pytest.raises(InvalidInput, match="non-canonical"):
        Scalar(GROUP_ORDER.to_bytes(32, "little"))
    with pytest.raises(InvalidInput):
        generator_multiple(Scalar(bytes(32)))
    with pytest.raises(InvalidInput):
        Scalar.from_uniform_bytes(bytes(32))
    s = Scalar.random()
    assert 0 < s.to_int() < GROUP_ORDER
    assert "..." in repr(s) and s.value.hex() not in repr(s)
    with pytest.raises(InvalidInput):
        expand_message_xmd_sha512(b"", b"", 32)
    with pytest.raises(InvalidInput):
        expand_message_xmd_sha512(b"", b"d", 255 * 64 + 1)

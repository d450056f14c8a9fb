"""Typed hash values and their text forms."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import InvalidInput
from accord.protocols.detection.signals import (
    PDQ_MATCH_THRESHOLD_BITS,
    PDQ_MIN_QUALITY,
    Md5Hash,
    PdqHash,
    Sha256Hash,
    VpdqFrame,
    VpdqHash,
    parse_hash,
    signal_type_named,
)


def test_constants() -> None:
    assert PDQ_MATCH_THRESHOLD_BITS == 31
    assert PDQ_MIN_QUALITY == 50


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_pdq_round_trip_and_distance(a: bytes, b: bytes) -> None:
    ha, hb = PdqHash(a), PdqHash(b)
    assert PdqHash.from_hex(ha.hex()) == ha
    assert PdqHash.from_hex(ha.hex().upper()) == ha
    assert ha.distance(hb) == sum(bin(x ^ y).count("1") for x, y in zip(a, b, strict=True))
    assert ha.hex() not in repr(ha)


@pytest.mark.parametrize("text", ["", "00", "g" * 64, "0" * 63, "0" * 65, " " * 64])
def test_pdq_rejects(text: str) -> None:
    with pytest.raises(InvalidInput):
        PdqHash.from_hex(text)


def test_other_types() -> None:
    assert Md5Hash.of(b"hello").hex() == "5d41402abc4b2a76b9719d911017c592"
    assert Sha256Hash.of(b"").hex().startswith("e3b0c442")
    with pytest.raises(InvalidInput):
        Md5Hash(b"short")
    assert signal_type_named("VIDEO_MD5") == "md5"
    with pytest.raises(InvalidInput):
        signal_type_named("url")
    assert isinstance(parse_hash("sha256", "00" * 32), Sha256Hash)


def test_vpdq_text_form_is_python_threatexchange_compatible() -> None:
    frames = (VpdqFrame(PdqHash(bytes(32)), 100, 0.0), VpdqFrame(PdqHash(b"\x01" * 32), 40, 1.5))
    h = VpdqHash(frames)
    text = h.hex()
    assert text.startswith('["' + "0" * 64 + ',100,0.000"')
    assert VpdqHash.from_hex(text) == h
    assert h.good_frames() == [PdqHash(bytes(32))]
    for bad in (
        "{",
        "[1]",
        '["00,1,2"]',
        '["' + "0" * 64 + ',101,0"]',
        '["' + "0" * 64 + ',1,-1"]',
    ):
        with pytest.raises(InvalidInput):
            VpdqHash.from_hex(bad)


@given(st.text(max_size=300))
def test_fuzz_vpdq_parser(text: str) -> None:
    with contextlib.suppress(InvalidInput):
        VpdqHash.from_hex(text)

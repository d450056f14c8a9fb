"""The image loader: formats, EXIF, limits, and that bad files give clear errors (fuzzed)."""

from __future__ import annotations

import contextlib
import io
import struct
import zlib

import numpy as np
import pytest
from detection_helpers import encode, photo_pixels
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from accord.errors import InvalidInput, TooLarge
from accord.protocols.detection.hashers import hash_image_bytes, pdq_from_pixels
from accord.protocols.detection.images import ImageLimits, load_image

PIXELS = photo_pixels(1)
REFERENCE = pdq_from_pixels(PIXELS)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_supported_formats_hash_alike(fmt: str) -> None:
    kw = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    decoded = load_image(encode(PIXELS, fmt, **kw))
    assert decoded.size == (320, 240)
    result = pdq_from_pixels(decoded.pixels)
    assert result.quality >= 80
    # GIF quantises to 256 colours; the rest are lossless or near it.
    assert result.hash.distance(REFERENCE.hash) <= (30 if fmt == "GIF" else 12)


def test_gif_first_frame() -> None:
    frames = [Image.fromarray(PIXELS), Image.fromarray(photo_pixels(7))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    first = pdq_from_pixels(load_image(buf.getvalue()).pixels).hash
    assert first.distance(REFERENCE.hash) <= 30
    assert first.distance(pdq_from_pixels(photo_pixels(7)).hash) > 60


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied(orientation: int) -> None:
    # Stored turned, tagged so that a viewer turns it back upright.
    inverse = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    stored = Image.fromarray(PIXELS).transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif)
    upright = load_image(buf.getvalue())
    assert upright.size == (320, 240)
    assert pdq_from_pixels(upright.pixels).hash.distance(REFERENCE.hash) <= 12
    raw = load_image(buf.getvalue(), apply_exif=False)
    assert pdq_from_pixels(raw.pixels).hash.distance(REFERENCE.hash) > 60


def test_large_jpeg_is_drafted() -> None:
    big = np.asarray(Image.fromarray(PIXELS).resize((2400, 1800), Image.Resampling.BICUBIC))
    data = encode(big, "JPEG", quality=92)
    fast, full = load_image(data), load_image(data, draft=False)
    assert fast.drafted and not full.drafted
    assert min(fast.size) >= 512 and fast.size[0] < 2400
    drift = pdq_from_pixels(fast.pixels).hash.distance(pdq_from_pixels(full.pixels).hash)
    assert drift <= 8
    # Matching asks only for the long side it reduces its query to: 1/4 scale here (600 px),
    # where hashing wants both sides >= 512 (1/2 scale).
    query = load_image(data, draft_long_side_px=480)
    assert query.drafted and query.size == (600, 450) and fast.size == (1200, 900)
    drift = pdq_from_pixels(query.pixels).hash.distance(pdq_from_pixels(full.pixels).hash)
    assert drift <= 8
    small = load_image(encode(PIXELS, "JPEG"), draft_long_side_px=480)
    assert not small.drafted and small.size == (PIXELS.shape[1], PIXELS.shape[0])


def test_byte_limit() -> None:
    with pytest.raises(TooLarge):
        load_image(encode(PIXELS), limits=ImageLimits(max_bytes=100))


def test_pixel_limit_checked_before_decoding() -> None:
    with pytest.raises(TooLarge):
        load_image(encode(PIXELS), limits=ImageLimits(max_pixels=1000))


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that claims to be huge (header only, little data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_decompression_bomb() -> None:
    with pytest.raises(TooLarge):
        load_image(_png_bomb(60_000, 60_000))


def test_corrupt_and_truncated() -> None:
    good = encode(PIXELS, "JPEG")
    with pytest.raises(InvalidInput, match="truncated"):
        load_image(good[: len(good) // 3])
    with pytest.raises(InvalidInput):
        load_image(b"")
    with pytest.raises(InvalidInput, match="supported format"):
        load_image(b"definitely not an image")
    with pytest.raises(InvalidInput):
        load_image(encode(PIXELS, "PNG")[:60])


def test_unsupported_format_refused() -> None:
    buf = io.BytesIO()
    Image.fromarray(PIXELS).save(buf, "PPM")
    with pytest.raises(InvalidInput):
        load_image(buf.getvalue())


def test_error_messages_carry_no_hashes() -> None:
    good = encode(PIXELS, "JPEG")
    try:
        hash_image_bytes(good[:500])
    except InvalidInput as exc:
        assert REFERENCE.hash.hex() not in exc.diagnostics()
        assert len(exc.diagnostics()) < 120


def test_low_quality_is_reported() -> None:
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    assert not pdq_from_pixels(flat).usable


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        load_image(data)


_SEEDS = {
    fmt: encode(photo_pixels(3, (96, 64)), fmt)
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(_SEEDS)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    st.integers(0, 10_000),
)
def test_fuzz_mutated_images(fmt: str, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_SEEDS[fmt])
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut:
        data = data[: max(1, len(data) - cut % len(data))]
    try:
        decoded = load_image(bytes(data))
    except InvalidInput:
        return
    assert decoded.pixels.ndim == 3 and decoded.pixels.shape[2] == 3
    pdq_from_pixels(decoded.pixels)

"""Decoding untrusted image bytes into RGB pixels, safely.

Every image comes from outside, so the loader checks, in order: the byte size; the format (only
JPEG, PNG, GIF, WebP, BMP and TIFF are opened, never a format Pillow happens to recognise);
the pixel count announced in the header, before any pixel is decoded (decompression bombs);
then it decodes, applies the EXIF orientation and converts to RGB. Every failure of the decoder
becomes `InvalidInput` (or `TooLarge`) with a short message that says what was wrong with the
file, never a traceback from inside Pillow.

Large JPEGs are decoded at a reduced size with Pillow's `draft` (the JPEG decoder scales by 1/2,
1/4 or 1/8 while decoding, many times faster than decoding the full image); PDQ downsamples to
64x64 anyway, so this moves the hash by a few bits at most (measured in docs/detection.md).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from accord.errors import InvalidInput, TooLarge

#: Default limit on an image file's size.
IMAGE_MAX_BYTES = 64 * 1024 * 1024
#: Default limit on the decoded pixel count (width x height); 100 MP covers phone cameras.
IMAGE_MAX_PIXELS = 100_000_000
#: JPEGs are decoded at the smallest 1/2, 1/4 or 1/8 scale whose sides stay >= this.
DRAFT_MIN_SIDE_PX = 512

ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF"})
# MPO (multi-picture JPEG from cameras) is opened by the JPEG plugin.
_OPEN_FORMATS = ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"]

# Pillow's own bomb guard is a process-wide setting; keep it on as a second line of defence and
# never let it merely warn. Our explicit check below runs first and gives the clearer error.
Image.MAX_IMAGE_PIXELS = IMAGE_MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

RgbArray = npt.NDArray[np.uint8]

#: The transpose that brings an image upright, per EXIF orientation (as ImageOps.exif_transpose).
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageLimits:
    max_bytes: int = IMAGE_MAX_BYTES
    max_pixels: int = IMAGE_MAX_PIXELS


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An image as RGB pixels (height x width x 3, uint8), with what was learnt decoding it."""

    pixels: RgbArray
    format: str
    original_size: tuple[int, int]
    drafted: bool

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.pixels.shape[1]), int(self.pixels.shape[0]))


_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    struct.error,
    ZeroDivisionError,
    RuntimeError,
    MemoryError,
    OverflowError,
    AttributeError,
)


def load_image(
    data: bytes,
    *,
    limits: ImageLimits | None = None,
    draft: bool = True,
    draft_long_side_px: int | None = None,
    apply_exif: bool = True,
) -> DecodedImage:
    """Decode image bytes into RGB pixels; raise `InvalidInput`/`TooLarge` on anything wrong.

    `draft` decodes large JPEGs at a reduced scale (sides stay >= DRAFT_MIN_SIDE_PX, or with
    `draft_long_side_px` the long side stays >= that: matching reduces its query to 512 px
    anyway);
    `apply_exif` rotates/flips by the EXIF orientation tag (the reference C++ tool does not).
    GIFs and other multi-frame files give their first frame.
    """
    limits = limits or ImageLimits()
    if len(data) > limits.max_bytes:
        raise TooLarge(f"image file exceeds {limits.max_bytes} bytes")
    if not data:
        raise InvalidInput("empty image file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decoder chatter about malformed files (may echo data)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _decode(
                data, limits, draft=draft, long_side=draft_long_side_px, apply_exif=apply_exif
            )
        except (TooLarge, InvalidInput):
            raise
        except Image.DecompressionBombError:
            raise TooLarge("image has too many pixels (decompression bomb?)") from None
        except Image.DecompressionBombWarning:
            raise TooLarge("image has too many pixels (decompression bomb?)") from None
        except UnidentifiedImageError:
            raise InvalidInput("not an image file in a supported format") from None
        except MemoryError:
            raise TooLarge("image too large to decode") from None
        except _DECODE_ERRORS as exc:
            reason = "truncated" if "truncated" in str(exc) else "corrupt"
            raise InvalidInput(f"image file is {reason} and cannot be decoded") from None


def _draft_request(width: int, height: int, long_side: int | None) -> tuple[int, int] | None:
    """The size to ask Pillow's `draft` for (it picks the smallest 1/2, 1/4 or 1/8 scale at
    least this large), or None when the image is too small to reduce."""
    if long_side is None:
        if min(width, height) < 2 * DRAFT_MIN_SIDE_PX:
            return None
        return (DRAFT_MIN_SIDE_PX, DRAFT_MIN_SIDE_PX)
    longest = max(width, height)
    if longest < 2 * long_side:
        return None
    return (-(-width * long_side // longest), -(-height * long_side // longest))


def _decode(
    data: bytes, limits: ImageLimits, *, draft: bool, long_side: int | None, apply_exif: bool
) -> DecodedImage:
    image = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    fmt = str(image.format or "")
    if fmt not in ALLOWED_FORMATS:  # pragma: no cover - `formats=` already restricts this
        raise InvalidInput("unsupported image format")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidInput("image has no pixels")
    if width * height > limits.max_pixels:
        raise TooLarge(f"image exceeds {limits.max_pixels} pixels")
    drafted = False
    request = _draft_request(width, height, long_side) if draft else None
    if request is not None and fmt in ("JPEG", "MPO"):
        result = image.draft("RGB", request)
        drafted = result is not None and image.size != (width, height)
    image.load()
    oriented: Image.Image = image
    if apply_exif:
        method = _ORIENTATIONS.get(image.getexif().get(ExifTags.Base.Orientation, 1))
        if method is not None:
            # What ImageOps.exif_transpose does to the pixels, without copying an upright image
            # or rewriting the metadata, which nothing here reads.
            oriented = image.transpose(method)
    rgb = _to_rgb(oriented)
    pixels = np.asarray(rgb, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise InvalidInput("image could not be converted to RGB")
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels),
        format=fmt,
        original_size=(width, height),
        drafted=drafted,
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert as python-threatexchange does (alpha dropped, not composited), so hashes agree."""
    if image.mode == "RGB":
        return image
    return image.convert("RGB")


def image_from_pixels(pixels: RgbArray) -> Image.Image:
    return Image.fromarray(pixels, "RGB")

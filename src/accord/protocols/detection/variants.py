"""Beyond plain PDQ: the extra hashes that let everyday edits still match.

Plain PDQ survives re-compression, resizing and mild colour changes, but not rotations and flips,
added borders or caption bands, or crops. The measures below, each measured on its own in
`accord eval detection` (docs/detection.md):

1. *Dihedral queries*: a query also asks for its seven rotated/flipped variants
   (`pdqhash.compute_dihedral`, for about the cost of one hash).
2. *Trimming*: uniform margins (borders, letterbox bars) and caption bands (a uniform band with
   some text on it) are cut off before hashing; the query asks for both the trimmed and the
   untrimmed hash, and a banked image is indexed both ways too (so an image whose own edge was
   uniform is trimmed alike on both sides).
3. *Crop hashes*: when the bank holds the image itself (not only a hash from a third party),
   a few central crops are indexed as extra hashes of the same entry, so a modestly cropped copy
   lands near one of them.
4. *Geometry hashes* (banks that hold images): off-centre crops (5-15% off one side, 5-15% off
   two adjacent sides), small rotations (+-3, +-6 and +-10 degrees) and the middle band (the
   top and bottom 15% cut off, where meme captions go) are indexed too; a query also asks for
   its own middle band. Chosen by measurement (docs/detection.md, "Derived hashes"): each
   family brings one family of edits within reach of the first stage, which the verifying
   stage (`features.py`) then confirms or refuses.
5. *Tiles* (query side, where a bank holds images): the query's halves and quarters, where a
   collage of two or four puts a photo, hashed from a copy at half its size; candidates that
   only the verifying stage may accept (`verified_only`), so they are computed only where it
   can run.

Every extra hash is another chance of a false match; the evaluation reports the false-match rate
of each measure on unrelated photos, and hashes below PDQ_MIN_QUALITY are always dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from accord.protocols.detection.hashers import (
    DIHEDRAL_NAMES,
    PDQ_MIRROR_NAME,
    PdqResult,
    pdq_dihedral_from_pixels,
    pdq_from_pixels,
)
from accord.protocols.detection.images import RgbArray

#: Per-channel distances (0..255) within which a pixel counts as the margin's colour; one trim
#: per tolerance (a strict and a looser one: either may be the one that cuts alike on both sides).
TRIM_COLOR_TOLERANCES = (6, 10)
#: Share of a line's pixels in the margin colour for the line to be margin.
TRIM_MARGIN_LINE_FRACTION = 0.98
#: A caption band's lines are at least this much background (text covers the rest)...
TRIM_BAND_LINE_FRACTION = 0.55
#: ...and on average at least this much.
TRIM_BAND_MEAN_FRACTION = 0.8
#: A caption band ends where a run of this share of the lines is clearly not background: longer
#: than a line of the caption's text (a 50th let the text end the band once a query reduced by
#: a box filter had blurred it: `caption/band-top` from 76% to 91%).
TRIM_BAND_CONTENT_RUN_FRACTION = 0.1
#: No side loses more than this share of its dimension.
TRIM_MAX_SIDE_FRACTION = 0.35
#: Trims smaller than this share of the dimension are ignored (JPEG edge noise).
TRIM_MIN_FRACTION = 0.015
#: Central crops indexed for banked images (share of each side kept).
CROP_FRACTIONS = (0.95, 0.9, 0.8, 0.7)
#: Off-centre crops indexed for banked images: shares cut off one side (left, top, right,
#: bottom) and off two adjacent sides (the four corners).
SIDE_CROP_FRACTIONS = (0.05, 0.1, 0.15)
CORNER_CROP_FRACTIONS = (0.05, 0.08, 0.1, 0.15)
#: Small rotations indexed for banked images, in degrees (the corners filled white).
ROTATION_DEGREES = (-10.0, -6.0, -3.0, 3.0, 6.0, 10.0)
#: The middle band: this share of the height is cut off the top and off the bottom.
BAND_CUT_FRACTION = 0.15
#: A query whose own hash is below PDQ_MIN_QUALITY (a dark photo, or a photo darkened) is also
#: hashed with its shadows lifted by this gamma (out = in ** gamma): PDQ's quality measures
#: gradients, which darkening crushes, while the hash itself moves only 14-30 bits.
LIFT_GAMMA = 0.5
#: Query variants are hashed on a copy at most this many pixels on its long side.
QUERY_SIDE_PX = 512
#: A query JPEG is decoded at the smallest 1/2, 1/4 or 1/8 scale whose long side stays at least
#: this (a 12 MP photo at 1/8: 504 px), since it is reduced to QUERY_SIDE_PX anyway.
QUERY_DECODE_LONG_SIDE_PX = 480
#: A query's tiles are hashed from a copy at half its size if that copy's long side is at least
#: this, else from the query itself.
TILE_SIDE_PX = 128
#: The trim box is computed on a copy at most this many pixels on its long side.
_TRIM_ANALYSIS_SIDE_PX = 512
#: Trimming passes: one, and two (a second pass cuts what the first uncovered: the header and
#: the buttons around a photo in an app's screenshot, under its status bar). Both boxes are kept.
TRIM_PASSES = (1, 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchMeasures:
    """Which of the measures above are on."""

    dihedral: bool = True
    trim: bool = True
    crops: bool = True
    geometry: bool = True
    #: Query side, for banks that hold images: the halves and quarters of the query (where a
    #: collage puts a photo), each a candidate only for the verifying stage. Off where nothing
    #: can verify (hash-only banks, `--no-verify`): they could decide nothing there.
    tiles: bool = True

    @classmethod
    def plain(cls) -> MatchMeasures:
        return cls(dihedral=False, trim=False, crops=False, geometry=False, tiles=False)

    @property
    def name(self) -> str:
        flags = (
            ("dihedral", self.dihedral),
            ("trim", self.trim),
            ("crops", self.crops),
            ("geometry", self.geometry),
            ("tiles", self.tiles),
        )
        on = [n for n, v in flags if v]
        return "+".join(on) if on else "plain"


@dataclass(frozen=True, slots=True)
class Box:
    """A crop box in pixels: left, top, right, bottom (right/bottom exclusive)."""

    left: int
    top: int
    right: int
    bottom: int

    def apply(self, pixels: RgbArray) -> RgbArray:
        return pixels[self.top : self.bottom, self.left : self.right]


def _line_fractions(
    lines: npt.NDArray[np.uint8], color: npt.NDArray[np.int16], tolerance: int
) -> npt.NDArray[np.float64]:
    """For (n_lines, length, 3) pixels: share of each line whose every channel is within
    tolerance of `color` (OpenCV's inRange: one pass, several times faster than numpy's)."""
    low = tuple(float(max(0, c - tolerance)) for c in color.tolist())
    high = tuple(float(min(255, c + tolerance)) for c in color.tolist())
    close = cv2.inRange(np.ascontiguousarray(lines), low, high)
    out: npt.NDArray[np.float64] = np.count_nonzero(close, axis=1) / close.shape[1]
    return out


def _trim_side(lines: npt.NDArray[np.uint8], tolerance: int) -> int:
    """How many lines to cut from the start of `lines` (n, length, 3), outermost first."""
    n = lines.shape[0]
    limit = int(n * TRIM_MAX_SIDE_FRACTION)
    if limit < 2:
        return 0
    # The reference colour is taken a couple of lines in: the line at a border's inner edge is
    # often a blend (resampling, JPEG), which must not stop the next pass.
    skip = 2
    color = np.median(lines[skip], axis=0).astype(np.int16)
    frac = _line_fractions(lines[:limit], color, tolerance)
    frac[:skip] = 1.0
    margin = 0
    while margin < limit and frac[margin] >= TRIM_MARGIN_LINE_FRACTION:
        margin += 1
    if margin <= skip:
        margin = 0
        color = np.median(lines[0], axis=0).astype(np.int16)
        frac = _line_fractions(lines[:limit], color, tolerance)
    # A caption band: continues until a run of clearly non-background lines starts.
    run = max(2, round(n * TRIM_BAND_CONTENT_RUN_FRACTION))
    low = frac < TRIM_BAND_LINE_FRACTION
    band = 0
    i = 0
    while i < limit:
        if low[i] and bool(low[i : i + run].all()):
            band = i
            break
        i += 1
    else:
        band = 0  # no content found within the limit: not a band we trust
    if band > margin and frac[:band].mean() >= TRIM_BAND_MEAN_FRACTION:
        return band
    return margin


@dataclass(frozen=True, slots=True)
class _TrimView:
    """An image as the trim analysis reads it: a copy at most _TRIM_ANALYSIS_SIDE_PX long, and
    its columns as rows (so the left and right sides are read as contiguous lines too)."""

    small: RgbArray
    columns: RgbArray
    step: int
    height: int
    width: int

    @classmethod
    def of(cls, pixels: RgbArray) -> _TrimView:
        height, width = pixels.shape[:2]
        step = max(1, int(np.ceil(max(height, width) / _TRIM_ANALYSIS_SIDE_PX)))
        small = np.ascontiguousarray(pixels[::step, ::step])
        # OpenCV's transpose: one SIMD pass, where numpy's copy of a transposed view is about
        # 15 times slower.
        columns = np.asarray(cv2.transpose(small), dtype=np.uint8)
        return cls(small, columns, step, height, width)


def trim_boxes(pixels: RgbArray) -> list[Box]:
    """The distinct trim boxes, one per tolerance in TRIM_COLOR_TOLERANCES and number of passes
    in TRIM_PASSES."""
    view = _TrimView.of(pixels)
    by_tolerance = [_trim_passes(view, t, max(TRIM_PASSES)) for t in TRIM_COLOR_TOLERANCES]
    out: list[Box] = []
    for passes in TRIM_PASSES:
        for boxes in by_tolerance:
            box = boxes[passes - 1]
            if box is not None and box not in out:
                out.append(box)
    return out


def trim_box(pixels: RgbArray, *, tolerance: int = TRIM_COLOR_TOLERANCES[0]) -> Box | None:
    """The box left after cutting uniform margins and caption bands, or None if nothing to cut."""
    return _trim_passes(_TrimView.of(pixels), tolerance, TRIM_PASSES[0])[-1]


def _trim_passes(trim: _TrimView, tolerance: int, passes: int) -> list[Box | None]:
    """The box after each of `passes` passes (None where nothing is cut); each pass cuts what
    the one before uncovered (a band inside a border...), and once a pass cuts nothing the
    later ones are the same."""
    small, columns = trim.small, trim.columns
    h, w = small.shape[:2]
    top, bottom, left, right = 0, h, 0, w
    out: list[Box | None] = []
    while len(out) < passes:
        view = small[top:bottom, left:right]
        if view.shape[0] < 8 or view.shape[1] < 8:
            return out + [None] * (passes - len(out))
        t = _trim_side(view, tolerance)
        b = _trim_side(view[::-1], tolerance)
        top, bottom = top + t, bottom - b
        view = columns[left:right, top:bottom]
        lft = _trim_side(view, tolerance)
        rgt = _trim_side(view[::-1], tolerance)
        left, right = left + lft, right - rgt
        box = _trim_result(trim, top, bottom, left, right)
        if t == b == lft == rgt == 0:
            return out + [box] * (passes - len(out))
        out.append(box)
    return out


def _trim_result(trim: _TrimView, top: int, bottom: int, left: int, right: int) -> Box | None:
    """The cut, in the full image's pixels; None if it leaves too little or cuts too little."""
    h, w = trim.small.shape[:2]
    if bottom - top < h * 0.3 or right - left < w * 0.3:
        return None
    cut = (top, h - bottom, left, w - right)
    mins = (h, h, w, w)
    if all(c < m * TRIM_MIN_FRACTION for c, m in zip(cut, mins, strict=True)):
        return None
    step, height, width = trim.step, trim.height, trim.width
    return Box(
        left=min(width - 1, left * step),
        top=min(height - 1, top * step),
        right=max(left * step + 1, min(width, right * step)),
        bottom=max(top * step + 1, min(height, bottom * step)),
    )


def central_crop(pixels: RgbArray, fraction: float) -> RgbArray:
    height, width = pixels.shape[:2]
    ch, cw = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - ch) // 2, (width - cw) // 2
    return pixels[top : top + ch, left : left + cw]


def crop_sides(
    pixels: RgbArray,
    *,
    left: float = 0.0,
    top: float = 0.0,
    right: float = 0.0,
    bottom: float = 0.0,
) -> RgbArray:
    """Cut these shares of the width and height off each side."""
    height, width = pixels.shape[:2]
    return pixels[
        round(height * top) : height - round(height * bottom),
        round(width * left) : width - round(width * right),
    ]


def rotate_small(pixels: RgbArray, degrees: float) -> RgbArray:
    """Rotate about the centre, same size, corners filled white."""
    image = Image.fromarray(pixels, "RGB").rotate(
        degrees, resample=Image.Resampling.BICUBIC, expand=False, fillcolor="white"
    )
    return np.asarray(image, dtype=np.uint8)


def middle_band(pixels: RgbArray) -> RgbArray:
    return crop_sides(pixels, top=BAND_CUT_FRACTION, bottom=BAND_CUT_FRACTION)


def geometry_variants(pixels: RgbArray) -> list[tuple[str, RgbArray]]:
    """The off-centre crops, rotations and middle band indexed for a banked image."""
    out: list[tuple[str, RgbArray]] = []
    for f in SIDE_CROP_FRACTIONS:
        for side in ("left", "top", "right", "bottom"):
            out.append((f"crop-{side}-{f:g}", crop_sides(pixels, **{side: f})))
    for f in CORNER_CROP_FRACTIONS:
        for a, b in (("left", "top"), ("top", "right"), ("right", "bottom"), ("bottom", "left")):
            out.append((f"crop-{a}-{b}-{f:g}", crop_sides(pixels, **{a: f, b: f})))
    for degrees in ROTATION_DEGREES:
        out.append((f"rotate-{degrees:g}", rotate_small(pixels, degrees)))
    out.append(("band", middle_band(pixels)))
    return out


@dataclass(frozen=True, slots=True)
class NamedHash:
    """A hash and how it was derived ("original", "trim/rotate90", "crop-0.8"...).

    `verified_only`: the hash may find only entries that the verifying stage then checks (it
    was derived from an image whose own hash is below the quality gate).
    """

    via: str
    result: PdqResult
    verified_only: bool = False


def _hashes_of(pixels: RgbArray, prefix: str, dihedral: bool) -> list[NamedHash]:
    if dihedral:
        results = list(pdq_dihedral_from_pixels(pixels))
        if not prefix:
            # pdqhash derives the flips from the transform's coefficients, which is exact only
            # for the transposes: a true mirror image lands 0-4 bits from the banked hash where
            # the derived flip can land 14-88 bits away (fine textures). The everyday mirror is
            # hashed from mirrored pixels.
            mirror = DIHEDRAL_NAMES.index(PDQ_MIRROR_NAME)
            results[mirror] = pdq_from_pixels(_mirrored(pixels))
        return [NamedHash(prefix + n, r) for n, r in zip(DIHEDRAL_NAMES, results, strict=True)]
    return [NamedHash(prefix + "original", pdq_from_pixels(pixels))]


def _mirrored(pixels: RgbArray) -> RgbArray:
    """A left-right mirror image, copied by OpenCV (numpy's copy of a reversed view of RGB
    pixels is about 30 times slower)."""
    return np.asarray(cv2.flip(np.ascontiguousarray(pixels), 1), dtype=np.uint8)


def lift_shadows(pixels: RgbArray) -> RgbArray:
    """Brighten dark tones by LIFT_GAMMA (a lookup table per channel value)."""
    table = np.round(255 * (np.arange(256) / 255) ** LIFT_GAMMA).astype(np.uint8)
    out: RgbArray = table[pixels]
    return out


def _usable_distinct(hashes: list[NamedHash]) -> list[NamedHash]:
    seen: set[bytes] = set()
    out = []
    for h in hashes:
        if h.result.usable and h.result.hash.value not in seen:
            seen.add(h.result.hash.value)
            out.append(h)
    return out


def _reduced(pixels: RgbArray, factor: int) -> RgbArray:
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB").reduce(factor)
    return np.asarray(image, dtype=np.uint8)


def reduced_for_query(pixels: RgbArray) -> RgbArray:
    """A copy with the long side at most QUERY_SIDE_PX (box filter, integer factor): PDQ works
    on a 64x64 reduction, and hashing the query's variants at 12 MP would cost four times more
    for a few bits of drift (docs/detection.md, section 9)."""
    factor = int(np.ceil(max(pixels.shape[:2]) / QUERY_SIDE_PX))
    return pixels if factor <= 1 else _reduced(pixels, factor)


def query_hashes(pixels: RgbArray, measures: MatchMeasures) -> list[NamedHash]:
    """The PDQ hashes to look up for one image (usable quality, distinct)."""
    if measures != MatchMeasures.plain():
        pixels = reduced_for_query(pixels)
    out = _hashes_of(pixels, "", measures.dihedral)
    if measures.geometry and not out[0].result.usable:
        lifted = pdq_from_pixels(lift_shadows(pixels))
        out.append(NamedHash("lifted", lifted, verified_only=True))
    if measures.trim:
        for box in trim_boxes(pixels):
            out += _hashes_of(box.apply(pixels), "trim/", measures.dihedral)
    if measures.geometry:
        out.append(NamedHash("band", pdq_from_pixels(middle_band(pixels))))
    if measures.tiles:
        # Hashed from a copy at half the size: a tile is a candidate within the verifying
        # stage's generous distance, and four times fewer pixels make the eight hashes cheap.
        half = _reduced(pixels, 2) if max(pixels.shape[:2]) >= 2 * TILE_SIDE_PX else pixels
        for via, tile in grid_tiles(half):
            out.append(NamedHash(via, pdq_from_pixels(tile), verified_only=True))
    return _usable_distinct(out)


def grid_tiles(pixels: RgbArray) -> list[tuple[str, RgbArray]]:
    """The halves and quarters of an image: where a collage of two or four puts a photo."""
    height, width = pixels.shape[:2]
    h2, w2 = height // 2, width // 2
    return [
        ("tile-left", pixels[:, :w2]),
        ("tile-right", pixels[:, w2:]),
        ("tile-top", pixels[:h2]),
        ("tile-bottom", pixels[h2:]),
        ("tile-top-left", pixels[:h2, :w2]),
        ("tile-top-right", pixels[:h2, w2:]),
        ("tile-bottom-left", pixels[h2:, :w2]),
        ("tile-bottom-right", pixels[h2:, w2:]),
    ]


def bank_hashes(pixels: RgbArray, measures: MatchMeasures) -> list[NamedHash]:
    """The PDQ hashes to index for one banked image (usable quality, distinct)."""
    out = [NamedHash("original", pdq_from_pixels(pixels))]
    if measures.trim:
        for box in trim_boxes(pixels):
            out.append(NamedHash("trim", pdq_from_pixels(box.apply(pixels))))
    if measures.crops:
        for fraction in CROP_FRACTIONS:
            out.append(
                NamedHash(f"crop-{fraction:g}", pdq_from_pixels(central_crop(pixels, fraction)))
            )
    if measures.geometry:
        for via, variant in geometry_variants(pixels):
            out.append(NamedHash(via, pdq_from_pixels(variant)))
    return _usable_distinct(out)

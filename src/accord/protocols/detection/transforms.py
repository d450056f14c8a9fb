"""Everyday edits, for measuring how well hashes survive them (`accord eval detection`).

Each transform takes and returns RGB pixels; all are deterministic. They stand for what people
do to images when re-sharing them, not for adversarial evasion (see docs/detection.md).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from accord.protocols.detection.images import RgbArray

Transform = Callable[[Image.Image], Image.Image]


def _jpeg(quality: int) -> Transform:
    def f(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return f


def _scale(factor: float, resample: Image.Resampling = Image.Resampling.LANCZOS) -> Transform:
    def f(im: Image.Image) -> Image.Image:
        w, h = im.size
        return im.resize((max(8, round(w * factor)), max(8, round(h * factor))), resample)

    return f


def _crop_central(fraction: float) -> Transform:
    def f(im: Image.Image) -> Image.Image:
        w, h = im.size
        cw, ch = round(w * fraction), round(h * fraction)
        left, top = (w - cw) // 2, (h - ch) // 2
        return im.crop((left, top, left + cw, top + ch))

    return f


def _crop_corner(fraction: float) -> Transform:
    def f(im: Image.Image) -> Image.Image:
        w, h = im.size
        return im.crop((0, 0, round(w * fraction), round(h * fraction)))

    return f


def _rotate_small(degrees: float) -> Transform:
    def f(im: Image.Image) -> Image.Image:
        return im.rotate(
            degrees, resample=Image.Resampling.BICUBIC, expand=False, fillcolor="white"
        )

    return f


def _enhance(kind: type[ImageEnhance._Enhance], factor: float) -> Transform:
    def f(im: Image.Image) -> Image.Image:
        return kind(im).enhance(factor)  # type: ignore[call-arg]

    return f


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _text_overlay(im: Image.Image) -> Image.Image:
    out = im.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    size = max(10, h // 12)
    draw.text(
        (w // 20, h - 2 * size),
        "when you see it lol",
        fill="white",
        font=_font(size),
        stroke_width=max(1, size // 12),
        stroke_fill="black",
    )
    return out


def _watermark(im: Image.Image) -> Image.Image:
    base = im.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w, h = base.size
    size = max(10, w // 10)
    draw.text(
        (w // 6, h // 2 - size // 2), "@sharedagain", fill=(255, 255, 255, 110), font=_font(size)
    )
    return Image.alpha_composite(base, layer).convert("RGB")


def _border(fraction: float, color: str) -> Transform:
    def f(im: Image.Image) -> Image.Image:
        w, h = im.size
        return ImageOps.expand(im, border=max(1, round(min(w, h) * fraction)), fill=color)

    return f


def _letterbox(im: Image.Image) -> Image.Image:
    """Pad to 16:9 landscape (or 9:16 portrait) with black bars, as video players do."""
    w, h = im.size
    if w >= h:
        target_h = max(h, round(w * 9 / 16))
        if target_h == h:
            target_h = round(h * 1.3)
        canvas = Image.new("RGB", (w, target_h), "black")
        canvas.paste(im, (0, (target_h - h) // 2))
    else:
        target_w = max(w, round(h * 9 / 16))
        if target_w == w:
            target_w = round(w * 1.3)
        canvas = Image.new("RGB", (target_w, h), "black")
        canvas.paste(im, ((target_w - w) // 2, 0))
    return canvas


def _caption(position: str) -> Transform:
    def f(im: Image.Image) -> Image.Image:
        w, h = im.size
        band = max(16, round(h * 0.22))
        canvas = Image.new("RGB", (w, h + band), "white")
        y_img = band if position == "top" else 0
        canvas.paste(im, (0, y_img))
        draw = ImageDraw.Draw(canvas)
        size = max(8, band // 3)
        y_text = (band - size) // 2 if position == "top" else h + (band - size) // 2
        draw.text((w // 16, y_text), "me explaining this to my mum", fill="black", font=_font(size))
        return canvas

    return f


def _screenshot(im: Image.Image) -> Image.Image:
    """Shown on a phone and captured: rescaled, a status bar and a bottom bar, re-compressed."""
    w, h = im.size
    shown = im.resize((round(w * 0.8), round(h * 0.8)), Image.Resampling.BILINEAR)
    sw, sh = shown.size
    bar = max(8, round(sh * 0.06))
    canvas = Image.new("RGB", (sw, sh + 3 * bar), (18, 18, 18))
    canvas.paste(shown, (0, bar))
    draw = ImageDraw.Draw(canvas)
    draw.text((sw // 20, bar // 4), "12:45", fill="white", font=_font(max(6, bar // 2)))
    return _jpeg(75)(canvas)


def _rescale_recompress(im: Image.Image) -> Image.Image:
    return _jpeg(70)(_scale(0.7, Image.Resampling.BILINEAR)(im))


TRANSFORMS: dict[str, Transform] = {
    "identity": lambda im: im,
    "jpeg-q90": _jpeg(90),
    "jpeg-q70": _jpeg(70),
    "jpeg-q50": _jpeg(50),
    "jpeg-q20": _jpeg(20),
    "downscale-0.5": _scale(0.5),
    "downscale-0.25": _scale(0.25),
    "crop-central-0.95": _crop_central(0.95),
    "crop-central-0.9": _crop_central(0.9),
    "crop-central-0.8": _crop_central(0.8),
    "crop-central-0.7": _crop_central(0.7),
    "crop-corner-0.85": _crop_corner(0.85),
    "rotate-90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rotate-180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
    "rotate-5deg": _rotate_small(5),
    "flip-h": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "flip-v": lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    "brightness+30%": _enhance(ImageEnhance.Brightness, 1.3),
    "brightness-30%": _enhance(ImageEnhance.Brightness, 0.7),
    "contrast+30%": _enhance(ImageEnhance.Contrast, 1.3),
    "contrast-30%": _enhance(ImageEnhance.Contrast, 0.7),
    "blur-r1": lambda im: im.filter(ImageFilter.GaussianBlur(1)),
    "blur-r3": lambda im: im.filter(ImageFilter.GaussianBlur(3)),
    "text-overlay": _text_overlay,
    "watermark": _watermark,
    "border-white": _border(0.08, "white"),
    "border-black": _border(0.08, "black"),
    "letterbox": _letterbox,
    "caption-top": _caption("top"),
    "caption-bottom": _caption("bottom"),
    "grayscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "screenshot": _screenshot,
    "rescale-recompress": _rescale_recompress,
}


def apply_transform(name: str, pixels: RgbArray) -> RgbArray:
    image = Image.fromarray(pixels, "RGB")
    out = TRANSFORMS[name](image).convert("RGB")
    return np.ascontiguousarray(np.asarray(out, dtype=np.uint8))

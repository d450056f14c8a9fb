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


def _crop_sides(left: float, top: float, right: float, bottom: float) -> Transform:
    """Cut these shares of the width/height off each side (an off-centre crop)."""

    def f(im: Image.Image) -> Image.Image:
        w, h = im.size
        return im.crop(
            (round(w * left), round(h * top), w - round(w * right), h - round(h * bottom))
        )

    return f


def _skew(fraction: float, vertical: bool = False) -> Transform:
    """Shear by `fraction` of the other side (a 3% skew moves one edge by 3% of the width)."""

    def f(im: Image.Image) -> Image.Image:
        w, h = im.size
        if vertical:
            coeffs = (1.0, 0.0, 0.0, fraction * h / w, 1.0, -fraction * h / 2)
        else:
            coeffs = (1.0, fraction * w / h, -fraction * w / 2, 0.0, 1.0, 0.0)
        return im.transform(
            (w, h), Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC, fillcolor="white"
        )

    return f


def _meme(share: float) -> Transform:
    """Impact-style white text with a black outline over the top and bottom of the photo,
    the two lines together covering `share` of its height."""

    def f(im: Image.Image) -> Image.Image:
        out = im.copy()
        draw = ImageDraw.Draw(out)
        w, h = out.size
        size = max(8, round(h * share / 2))
        font = _font(size)
        stroke = max(1, size // 10)
        for text, y in (("WHEN THE WEEKEND", 0), ("FINALLY ARRIVES", h - size)):
            box = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
            scale = min(1.0, 0.96 * w / max(1, box[2] - box[0]))
            line = _font(max(6, round(size * scale)))
            box = draw.textbbox((0, 0), text, font=line, stroke_width=stroke)
            x = (w - (box[2] - box[0])) // 2
            draw.text(
                (x, y), text, fill="white", font=line, stroke_width=stroke, stroke_fill="black"
            )
        return out

    return f


def _hue_saturation(im: Image.Image) -> Image.Image:
    hsv = np.asarray(im.convert("HSV"), dtype=np.int16).copy()
    hsv[..., 0] = (hsv[..., 0] + 12) % 256
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.3, 0, 255)
    return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


def _gamma(value: float) -> Transform:
    def f(im: Image.Image) -> Image.Image:
        table = [round(255 * (i / 255) ** value) for i in range(256)] * 3
        return im.point(table)

    return f


def _salt_noise(im: Image.Image) -> Image.Image:
    a = np.asarray(im, dtype=np.uint8).copy()
    rng = np.random.default_rng(16)
    mask = rng.random(a.shape[:2])
    a[mask < 0.01] = 255
    a[mask > 0.99] = 0
    return Image.fromarray(a, "RGB")


def _rotate_shrink(im: Image.Image) -> Image.Image:
    return _scale(0.6)(im.transpose(Image.Transpose.ROTATE_90))


def _ui_screenshot(im: Image.Image) -> Image.Image:
    """A post in a social app, captured on a phone: status bar, header with an avatar and a
    name, the photo at 90% of the screen width, buttons and a comment line, JPEG."""
    w, h = im.size
    screen_w = max(64, round(w / 0.9))
    shown = im.resize((round(screen_w * 0.9), max(8, round(h * screen_w * 0.9 / w))))
    sw, sh = shown.size
    unit = max(8, screen_w // 14)
    canvas = Image.new("RGB", (screen_w, sh + 6 * unit), "white")
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, screen_w, unit), fill=(240, 240, 240))
    draw.text((unit // 2, unit // 5), "09:41", fill="black", font=_font(max(6, unit // 2)))
    draw.ellipse((unit // 2, unit + unit // 4, unit * 3 // 2, unit * 9 // 4), fill=(90, 140, 200))
    draw.text(
        (2 * unit, unit + unit // 3), "friend_of_a_friend", fill="black", font=_font(unit // 2)
    )
    top = 5 * unit // 2
    canvas.paste(shown, ((screen_w - sw) // 2, top))
    for k in range(3):
        x = unit // 2 + k * 2 * unit
        draw.rectangle(
            (x, top + sh + unit // 3, x + unit, top + sh + 4 * unit // 3), outline="black"
        )
    draw.text(
        (unit // 2, top + sh + 2 * unit), "1,204 likes  wow", fill="black", font=_font(unit // 2)
    )
    return _jpeg(80)(canvas)


def _collage(cols: int, rows: int) -> Transform:
    """The photo as one tile of a grid, the other tiles flat colour gradients."""

    def f(im: Image.Image) -> Image.Image:
        w, h = im.size
        canvas = Image.new("RGB", (w * cols, h * rows), "white")
        ramp = np.linspace(40, 220, w, dtype=np.float32)
        for k in range(1, cols * rows):
            tile = np.zeros((h, w, 3), dtype=np.uint8)
            tile[..., k % 3] = ramp.astype(np.uint8)
            tile[..., (k + 1) % 3] = 255 - ramp[::-1].astype(np.uint8)
            canvas.paste(Image.fromarray(tile, "RGB"), ((k % cols) * w, (k // cols) * h))
        canvas.paste(im, (0, 0))
        return _scale(1 / max(cols, rows))(canvas)

    return f


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

#: The edits of issue 16's table and the harder ones it asks for (`accord eval detection
#: --edits issue16`); names say the family first so the heatmap groups them.
EVERYDAY_TRANSFORMS: dict[str, Transform] = {
    "mild/jpeg40-resize60": lambda im: _jpeg(40)(_scale(0.6)(im)),
    "mild/hue-saturation": _hue_saturation,
    "mild/dark-gamma": _gamma(1.8),
    "mild/sharpen": lambda im: im.filter(ImageFilter.UnsharpMask(2, 150, 3)),
    "mild/salt-noise": _salt_noise,
    "mild/upscale-jpeg": lambda im: _jpeg(75)(_scale(1.5)(im)),
    "mild/grayscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "border/thin": _border(0.02, "white"),
    "border/wide-black": _border(0.08, "black"),
    "mirror/jpeg": lambda im: _jpeg(75)(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    "rotate/90-shrink": _rotate_shrink,
    "crop/left-5": _crop_sides(0.05, 0, 0, 0),
    "crop/left-10": _crop_sides(0.10, 0, 0, 0),
    "crop/left-15": _crop_sides(0.15, 0, 0, 0),
    "crop/top-10": _crop_sides(0, 0.10, 0, 0),
    "crop/top-left-8": _crop_sides(0.08, 0.08, 0, 0),
    "crop/bottom-right-8": _crop_sides(0, 0, 0.08, 0.08),
    "crop/top-right-10": _crop_sides(0, 0.10, 0.10, 0),
    "crop/bottom-left-15": _crop_sides(0.15, 0, 0, 0.15),
    "crop/central-80": _crop_central(0.8),
    "rotate/1deg": _rotate_small(1),
    "rotate/2deg": _rotate_small(2),
    "rotate/3deg": _rotate_small(3),
    "rotate/5deg": _rotate_small(5),
    "rotate/-5deg": _rotate_small(-5),
    "rotate/7deg": _rotate_small(7),
    "rotate/10deg": _rotate_small(10),
    "skew/3%": _skew(0.03),
    "skew/3%-vertical": _skew(0.03, vertical=True),
    "skew/6%": _skew(0.06),
    "caption/meme-10%": _meme(0.10),
    "caption/meme-25%": _meme(0.25),
    "caption/meme-40%": _meme(0.40),
    "caption/band-top": _caption("top"),
    "screenshot/phone": _screenshot,
    "screenshot/social-app": _ui_screenshot,
    "collage/1x2": _collage(2, 1),
    "collage/2x2": _collage(2, 2),
}
ALL_TRANSFORMS: dict[str, Transform] = {**TRANSFORMS, **EVERYDAY_TRANSFORMS}


def apply_transform(name: str, pixels: RgbArray) -> RgbArray:
    image = Image.fromarray(pixels, "RGB")
    out = ALL_TRANSFORMS[name](image).convert("RGB")
    return np.ascontiguousarray(np.asarray(out, dtype=np.uint8))

"""Hashers: PDQ for images (Meta's C++ core via `pdqhash`), MD5 and SHA-256 for any file,
vPDQ for video (optional: `accord[video]`).

PDQ values are converted exactly as python-threatexchange does (bit i of the reference vector is
bit i of the hash, most significant first), so hashes agree with Meta's tools and HMA.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pdqhash

from accord.errors import ConfigurationError, InvalidInput, TooLarge
from accord.protocols.detection.images import (
    IMAGE_MAX_BYTES,
    DecodedImage,
    ImageLimits,
    RgbArray,
    load_image,
)
from accord.protocols.detection.signals import (
    PDQ_MIN_QUALITY,
    Md5Hash,
    PdqHash,
    Sha256Hash,
    VpdqFrame,
    VpdqHash,
)

#: The eight dihedral transforms, in the order `pdqhash.compute_dihedral` returns them.
DIHEDRAL_NAMES = (
    "original",
    "rotate90",
    "rotate180",
    "rotate270",
    "flipx",
    "flipy",
    "flip_plus1",
    "flip_minus1",
)
#: The name upstream gives a left-right mirror image (its axis is vertical).
PDQ_MIRROR_NAME = "flipy"
#: Limit on a video file's size.
VIDEO_MAX_BYTES = 2 * 1024 * 1024 * 1024
#: Limit on any other file hashed (read in chunks; only MD5/SHA-256 are computed).
FILE_MAX_BYTES = 8 * 1024 * 1024 * 1024

FileKind = Literal["image", "video", "other"]


@dataclass(frozen=True, slots=True)
class PdqResult:
    """A PDQ hash with its quality (0..100; below PDQ_MIN_QUALITY it is not used for matching)."""

    hash: PdqHash
    quality: int

    @property
    def usable(self) -> bool:
        return self.quality >= PDQ_MIN_QUALITY


def _to_hash(vector: np.ndarray) -> PdqHash:
    return PdqHash(np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes())


def _prepare(pixels: RgbArray) -> RgbArray:
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise InvalidInput("PDQ needs an RGB uint8 image")
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise InvalidInput("image has no pixels")
    return np.ascontiguousarray(pixels)


def pdq_from_pixels(pixels: RgbArray) -> PdqResult:
    """PDQ hash and quality of an RGB image (height x width x 3, uint8)."""
    vector, quality = pdqhash.compute(_prepare(pixels))
    return PdqResult(_to_hash(vector), int(quality))


def pdq_dihedral_from_pixels(pixels: RgbArray) -> tuple[PdqResult, ...]:
    """The PDQ hashes of the eight rotations/flips (DIHEDRAL_NAMES order), for about one's cost."""
    vectors, quality = pdqhash.compute_dihedral(_prepare(pixels))
    return tuple(PdqResult(_to_hash(v), int(quality)) for v in vectors)


def md5_of(data: bytes) -> Md5Hash:
    return Md5Hash.of(data)


def sha256_of(data: bytes) -> Sha256Hash:
    return Sha256Hash.of(data)


@dataclass(frozen=True, slots=True)
class FileHashes:
    """Everything `accord hash` reports for one file."""

    kind: FileKind
    md5: Md5Hash
    sha256: Sha256Hash
    pdq: PdqResult | None = None
    vpdq: VpdqHash | None = None
    image: DecodedImage | None = None


_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
)


def sniff_kind(head: bytes) -> FileKind:
    """Image, video or other, from the first bytes of a file (not from its name)."""
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head[4:8] == b"ftyp":  # MP4, MOV, 3GP, M4V
        return "video"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # Matroska / WebM
        return "video"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    if head[:3] == b"FLV" or head[:4] == b"\x00\x00\x01\xba":  # Flash video, MPEG-PS
        return "video"
    return "other"


def hash_image_bytes(
    data: bytes,
    *,
    limits: ImageLimits | None = None,
    draft: bool = True,
    draft_long_side_px: int | None = None,
    pdq: bool = True,
) -> FileHashes:
    """Hash an image file's bytes: MD5, SHA-256 and PDQ (corrupt images raise InvalidInput).

    `pdq=False` leaves the PDQ hash to the caller (matching hashes its own query variants)."""
    image = load_image(data, limits=limits, draft=draft, draft_long_side_px=draft_long_side_px)
    return FileHashes(
        kind="image",
        md5=md5_of(data),
        sha256=sha256_of(data),
        pdq=pdq_from_pixels(image.pixels) if pdq else None,
        image=image,
    )


def hash_file(
    path: Path,
    *,
    limits: ImageLimits | None = None,
    draft: bool = True,
    draft_long_side_px: int | None = None,
    video: bool = True,
    pdq: bool = True,
) -> FileHashes:
    """Hash a file by what it contains: images get PDQ, videos vPDQ (if installed), all MD5/SHA-256.

    `video=False` skips vPDQ even where it is installed; `pdq=False` decodes an image but leaves
    its PDQ hash to the caller; `draft_long_side_px` as for `load_image`.
    """
    limits = limits or ImageLimits()
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        raise InvalidInput("cannot read the file") from None
    kind = sniff_kind(head)
    if kind == "image":
        if size > limits.max_bytes:
            raise TooLarge(f"image file exceeds {limits.max_bytes} bytes")
        return hash_image_bytes(
            path.read_bytes(),
            limits=limits,
            draft=draft,
            draft_long_side_px=draft_long_side_px,
            pdq=pdq,
        )
    if size > FILE_MAX_BYTES:
        raise TooLarge(f"file exceeds {FILE_MAX_BYTES} bytes")
    md5, sha256 = _digest_file(path)
    vpdq_hash = None
    if kind == "video" and video and vpdq_available():
        if size > VIDEO_MAX_BYTES:
            raise TooLarge(f"video file exceeds {VIDEO_MAX_BYTES} bytes")
        vpdq_hash = vpdq_from_file(path)
    return FileHashes(kind=kind, md5=md5, sha256=sha256, vpdq=vpdq_hash)


def _digest_file(path: Path) -> tuple[Md5Hash, Sha256Hash]:
    import hashlib

    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
    return Md5Hash(md5.digest()), Sha256Hash(sha.digest())


# -- video -------------------------------------------------------------------------------------


def vpdq_available() -> bool:
    """True when the optional `vpdq` bindings (extra `accord[video]`) are importable."""
    try:
        import vpdq  # noqa: F401
    except ImportError:
        return False
    return True


def vpdq_from_file(path: Path, *, seconds_per_hash: float = 1.0) -> VpdqHash:
    """vPDQ of a video file (one frame hash per `seconds_per_hash`), via FFmpeg's libraries."""
    try:
        import vpdq
    except ImportError:
        raise ConfigurationError(
            "video hashing needs the optional extra: pip install 'accord[video]'"
        ) from None
    if not path.is_file():
        raise InvalidInput("cannot read the video file")
    try:
        features = vpdq.computeHash(str(path), seconds_per_hash=seconds_per_hash)
    except Exception:  # the bindings raise a bare Exception for undecodable files
        raise InvalidInput("video file is corrupt or in an unsupported format") from None
    if not features:
        raise InvalidInput("video file is corrupt or has no frames")
    frames = tuple(
        VpdqFrame(PdqHash.from_hex(f.hex), int(f.quality), round(float(f.timestamp), 3))
        for f in features
    )
    return VpdqHash(frames)


def vpdq_from_bytes(data: bytes, *, seconds_per_hash: float = 1.0) -> VpdqHash:
    """vPDQ of video bytes (written to a private temporary file: FFmpeg reads paths)."""
    if len(data) > VIDEO_MAX_BYTES:
        raise TooLarge(f"video file exceeds {VIDEO_MAX_BYTES} bytes")
    fd, name = tempfile.mkstemp(prefix="accord-video-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return vpdq_from_file(Path(name), seconds_per_hash=seconds_per_hash)
    finally:
        os.unlink(name)


__all__ = [
    "DIHEDRAL_NAMES",
    "IMAGE_MAX_BYTES",
    "FileHashes",
    "PdqResult",
    "hash_file",
    "hash_image_bytes",
    "md5_of",
    "pdq_dihedral_from_pixels",
    "pdq_from_pixels",
    "sha256_of",
    "sniff_kind",
    "vpdq_available",
    "vpdq_from_bytes",
    "vpdq_from_file",
]

"""The verifying stage: local features of a banked image, checked geometrically.

A PDQ hit only says that two images have similar 64x64 low-frequency structure. Where a bank
holds the image itself (`accord bank add`), Accord also keeps the image's ORB keypoints and
descriptors (not the image) and confirms each candidate by geometry: the query's descriptors are
matched to the banked ones (Lowe's ratio test) and a homography is fitted with RANSAC; the
candidate is confirmed only if enough matches agree on one plausible homography. This is the
check Thorn's `perception` runs in its local-descriptor deduplication; it lets the hash stage be
generous (more derived hashes, a wider candidate distance) while the final answer stays exact.

Stored form (`serialize_features` / `parse_features`), little-endian:

    b"ACFT1"  uint16 width  uint16 height  uint16 count
    count x (uint16 x*4, uint16 y*4, 32 bytes ORB descriptor)

Coordinates are in the analysis image (long side FEATURE_SIDE_PX), in quarter pixels.
At most FEATURE_MAX_KEYPOINTS keypoints: 18,011 bytes per banked image at most.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from accord.errors import InvalidInput
from accord.protocols.detection.images import RgbArray

#: Features are computed on a copy with this long side (banked and query images alike).
FEATURE_SIDE_PX = 512
#: ORB keypoints kept per image (the strongest).
FEATURE_MAX_KEYPOINTS = 500
#: A query with fewer keypoints than this cannot be verified (flat or tiny images).
FEATURE_MIN_KEYPOINTS = 40
#: Lowe's ratio: a match is kept if its best distance is below this share of the second best.
VERIFY_RATIO = 0.8
#: RANSAC reprojection tolerance, in analysis pixels.
VERIFY_RANSAC_PX = 6.0
#: Matches that must agree on one homography to confirm a candidate. Measured
#: (bench/detection_inliers.py, docs/detection.md section 9): unrelated pairs reach at most 13
#: as they are and 21 with the mirror-image try; edited originals at least 58 with their best try.
VERIFY_MIN_INLIERS = 24
#: Median filter of the query's last try (salt-and-pepper noise), in pixels.
DENOISE_KERNEL_PX = 3
#: The homography's linear part may scale area by at most this factor (or 1 / it).
_MAX_AREA_SCALE = 16.0

_MAGIC = b"ACFT1"
_HEADER = len(_MAGIC) + 6
_RECORD = 4 + 32
#: The largest stored form a parser accepts.
FEATURES_MAX_BYTES = _HEADER + FEATURE_MAX_KEYPOINTS * _RECORD


@dataclass(frozen=True, slots=True, eq=False)
class LocalFeatures:
    """ORB keypoints (n, 2) float32 and descriptors (n, 32) uint8 of one analysis image."""

    width: int
    height: int
    points: npt.NDArray[np.float32]
    descriptors: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __repr__(self) -> str:  # never show descriptors of user content
        return f"LocalFeatures({self.width}x{self.height}, {len(self)} keypoints)"


def _analysis_gray(pixels: RgbArray) -> npt.NDArray[np.uint8]:
    height, width = pixels.shape[:2]
    scale = FEATURE_SIDE_PX / max(height, width)
    gray = np.asarray(
        cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY), dtype=np.uint8
    )
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        gray = np.asarray(cv2.resize(gray, size, interpolation=interp), dtype=np.uint8)
    return gray


def extract_features(pixels: RgbArray) -> LocalFeatures:
    """The strongest ORB keypoints of an image, at the analysis size."""
    return _features_of(_analysis_gray(pixels))


def _features_of(gray: npt.NDArray[np.uint8]) -> LocalFeatures:
    orb = cv2.ORB_create(nfeatures=FEATURE_MAX_KEYPOINTS)  # type: ignore[attr-defined]
    keypoints, descriptors = orb.detectAndCompute(gray, None)
    height, width = gray.shape[:2]
    if descriptors is None or not keypoints:
        return LocalFeatures(
            width=width,
            height=height,
            points=np.zeros((0, 2), dtype=np.float32),
            descriptors=np.zeros((0, 32), dtype=np.uint8),
        )
    keypoints = keypoints[:FEATURE_MAX_KEYPOINTS]
    raw = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    # Quantised as stored, so a fresh extraction and a parsed one verify alike.
    points = (np.round(raw * 4) / 4).astype(np.float32)
    return LocalFeatures(
        width=width,
        height=height,
        points=points,
        descriptors=np.ascontiguousarray(descriptors[: len(points)], dtype=np.uint8),
    )


def serialize_features(features: LocalFeatures) -> bytes:
    """The stored form (module docstring)."""
    n = len(features)
    coords = np.clip(np.round(features.points * 4), 0, 65535).astype("<u2")
    records = np.concatenate([coords.view(np.uint8).reshape(n, 4), features.descriptors], axis=1)
    header = np.array([features.width, features.height, n], dtype="<u2").tobytes()
    return _MAGIC + header + records.tobytes()


def parse_features(data: bytes) -> LocalFeatures:
    """Parse a stored form; anything malformed or too large is `InvalidInput`."""
    if len(data) > FEATURES_MAX_BYTES:
        raise InvalidInput("stored local features are too large", code="features_too_large")
    if len(data) < _HEADER or data[: len(_MAGIC)] != _MAGIC:
        raise InvalidInput("stored local features are malformed", code="features_malformed")
    width, height, n = (int(v) for v in np.frombuffer(data, dtype="<u2", count=3, offset=5))
    if (
        n > FEATURE_MAX_KEYPOINTS
        or len(data) != _HEADER + n * _RECORD
        or not 0 < width <= FEATURE_SIDE_PX
        or not 0 < height <= FEATURE_SIDE_PX
    ):
        raise InvalidInput("stored local features are malformed", code="features_malformed")
    records = np.frombuffer(data, dtype=np.uint8, offset=_HEADER).reshape(n, _RECORD)
    coords = (records[:, :4].copy().view("<u2").reshape(n, 2) / 4).astype(np.float32)
    if n and (coords[:, 0].max() > width or coords[:, 1].max() > height):
        raise InvalidInput("stored local features are malformed", code="features_malformed")
    return LocalFeatures(
        width=width,
        height=height,
        points=coords,
        descriptors=np.ascontiguousarray(records[:, 4:]),
    )


def count_inliers(query: LocalFeatures, banked: LocalFeatures) -> int:
    """How many ratio-tested matches agree on one plausible homography (0 if none)."""
    if len(query) < 4 or len(banked) < 4:
        return 0
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(query.descriptors, banked.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < VERIFY_RATIO * p[1].distance]
    if len(good) < 4:
        return 0
    return _inliers(query, banked, good)


def _inliers(query: LocalFeatures, banked: LocalFeatures, good: list[cv2.DMatch]) -> int:
    src = query.points[[m.queryIdx for m in good]].reshape(-1, 1, 2)
    dst = banked.points[[m.trainIdx for m in good]].reshape(-1, 1, 2)
    homography, mask = cv2.findHomography(src, dst, cv2.RANSAC, VERIFY_RANSAC_PX)
    if homography is None or mask is None:
        return 0
    area = float(np.linalg.det(homography[:2, :2]))
    if not 1 / _MAX_AREA_SCALE <= area <= _MAX_AREA_SCALE:
        return 0  # a fold or a collapse: not a copy of the image
    return int(mask.sum())


def verify_features(query: LocalFeatures, banked: LocalFeatures) -> bool:
    """True if the query shows the banked image (enough geometrically consistent matches)."""
    return count_inliers(query, banked) >= VERIFY_MIN_INLIERS


class QueryFeatures:
    """A query image's features, computed when first needed (a query with no candidate costs
    no ORB); its mirror image's too (ORB is invariant to rotation, not to mirroring), and its
    median-filtered copy's (noise)."""

    def __init__(self, pixels: RgbArray) -> None:
        self._pixels = pixels
        self._gray_copy: npt.NDArray[np.uint8] | None = None
        self._plain: LocalFeatures | None = None
        self._mirrored: LocalFeatures | None = None
        self._denoised: LocalFeatures | None = None
        self._verified: dict[int, bool] = {}

    @property
    def _gray(self) -> npt.NDArray[np.uint8]:
        if self._gray_copy is None:
            self._gray_copy = _analysis_gray(self._pixels)
        return self._gray_copy

    @property
    def plain(self) -> LocalFeatures:
        if self._plain is None:
            self._plain = _features_of(self._gray)
        return self._plain

    @property
    def mirrored(self) -> LocalFeatures:
        if self._mirrored is None:
            self._mirrored = _features_of(np.asarray(cv2.flip(self._gray, 1), dtype=np.uint8))
        return self._mirrored

    @property
    def denoised(self) -> LocalFeatures:
        """Features of the image after a 3x3 median filter: salt-and-pepper noise draws ORB's
        strongest corners onto its dots, and the filter removes the dots."""
        if self._denoised is None:
            filtered = cv2.medianBlur(self._gray, DENOISE_KERNEL_PX)
            self._denoised = _features_of(np.asarray(filtered, dtype=np.uint8))
        return self._denoised

    @property
    def verifiable(self) -> bool:
        """Whether the image has enough keypoints for the geometric check to mean anything."""
        return len(self.plain) >= FEATURE_MIN_KEYPOINTS

    def shows(self, banked: LocalFeatures) -> bool:
        """True if this image, its mirror image or its median-filtered copy shows the banked
        image (cached per object; each later form is computed only if the earlier ones fail)."""
        key = id(banked)
        if key not in self._verified:
            self._verified[key] = (
                verify_features(self.plain, banked)
                or verify_features(self.mirrored, banked)
                or verify_features(self.denoised, banked)
            )
        return self._verified[key]

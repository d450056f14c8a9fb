"""Side by side (`accord eval compare`): Accord's pipeline and other detectors on one set, one run.

Every bankable photo of a folder (PDQ quality >= PDQ_MIN_QUALITY) is banked by every method;
each is then edited by every edit of `transforms.EVERYDAY_TRANSFORMS` and queried. An unrelated
folder is queried as it is, for false matches. Methods:

- `accord`: the pipeline of a bank that holds images (`accord bank add` + `accord match`):
  derived hashes, query variants, the verifying stage of local features.
- `accord-hash-only`: what a hash-only bank (NCMEC, HMA) gets: the banked image's own PDQ hash,
  query-side measures only (dihedral, trim, middle band), no verification.
- `pdq`: plain PDQ at distance 31.
- `perception-pdq`, `perception-sift`: Thorn's `perception` (its PDQ at 31 bits; its
  local-descriptor match: SIFT, its pairing step, its own validation of the 3 best pairs).
- `imagehash-phash`: `imagehash`'s 64-bit pHash at 8 bits (the same share of bits as 31/256).

The other detectors come from the optional `eval` extra, installed with Thorn's `perception` by
`make eval` (perception goes in with --no-deps: see pyproject.toml).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from accord.errors import InvalidInput
from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.evaluation import list_images
from accord.protocols.detection.features import QueryFeatures, extract_features
from accord.protocols.detection.hashers import pdq_from_pixels
from accord.protocols.detection.images import RgbArray, load_image
from accord.protocols.detection.matching import BankIndex, MatchQuery
from accord.protocols.detection.signals import PDQ_MATCH_THRESHOLD_BITS, PDQ_MIN_QUALITY
from accord.protocols.detection.transforms import EVERYDAY_TRANSFORMS, apply_transform
from accord.protocols.detection.variants import MatchMeasures, bank_hashes, query_hashes

#: imagehash's pHash has 64 bits: 8 is the same share as PDQ's 31 of 256.
PHASH_THRESHOLD_BITS = 8
NO_MATCH = 10**6
#: perception-sift validates this many candidates per query (the most shared descriptors).
SIFT_CANDIDATES = 3

Progress = Callable[[str, int, int], None]


class Method(ABC):
    """One detector: bank images, then say which banked images a query matches."""

    name: str

    @abstractmethod
    def add(self, owner: int, pixels: RgbArray) -> None: ...

    def finish(self) -> None:  # noqa: B027 - most methods need no finishing
        """Called once after every image is banked."""

    @abstractmethod
    def query(self, pixels: RgbArray) -> tuple[set[int], float]:
        """The owners matched, and the closest score to any owner (a distance; lower is
        closer), whether it matched or not."""


def _bits(value: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(value, dtype=np.uint8))


@dataclass(slots=True)
class _HashTable:
    """Small exhaustive table of bit vectors with owners (banks here are tens of images)."""

    rows: list[np.ndarray] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)

    def nearest(self, queries: list[np.ndarray], threshold: int) -> tuple[set[int], float]:
        if not queries or not self.rows:
            return set(), NO_MATCH
        d = (np.array(queries)[:, None, :] != np.array(self.rows)[None, :, :]).sum(axis=2)
        per_row = d.min(axis=0)
        owners = np.array(self.owners)
        return set(owners[per_row <= threshold].tolist()), float(per_row.min())


class AccordMethod(Method):
    """Accord's pipeline: `bank_hashes` + local features, `query_hashes` + verification."""

    def __init__(self, *, holds_images: bool = True) -> None:
        self.holds_images = holds_images
        self.name = "accord" if holds_images else "accord-hash-only"
        self.index = BankIndex(self.name, holds_images=holds_images)
        self.table = _HashTable()
        self.entry_owner: dict[int, int] = {}
        self.measures = MatchMeasures() if holds_images else MatchMeasures.plain()

    def add(self, owner: int, pixels: RgbArray) -> None:
        hashes = bank_hashes(pixels, self.measures)
        ids = []
        for h in hashes:
            entry_id = len(self.entry_owner) + 1
            self.entry_owner[entry_id] = owner
            ids.append(entry_id)
            self.index.add_entries(
                [BankEntry(signal_type="pdq", hash=h.result.hash, entry_id=entry_id)]
            )
            self.table.rows.append(_bits(h.result.hash.value))
            self.table.owners.append(owner)
        if self.holds_images and ids:
            self.index.add_features(ids, extract_features(pixels))

    def query(self, pixels: RgbArray) -> tuple[set[int], float]:
        named = query_hashes(pixels, MatchMeasures(crops=False, tiles=self.holds_images))
        features = QueryFeatures(pixels) if self.holds_images else None
        found = self.index.match(MatchQuery(pdq=tuple(named), features=features))
        _, closest = self.table.nearest([_bits(h.result.hash.value) for h in named], 256)
        return {self.entry_owner[m.entry_id] for m in found}, closest


class PdqMethod(Method):
    name = "pdq"

    def __init__(self) -> None:
        self.table = _HashTable()

    def add(self, owner: int, pixels: RgbArray) -> None:
        r = pdq_from_pixels(pixels)
        if r.usable:
            self.table.rows.append(_bits(r.hash.value))
            self.table.owners.append(owner)

    def query(self, pixels: RgbArray) -> tuple[set[int], float]:
        r = pdq_from_pixels(pixels)
        return self.table.nearest(
            [_bits(r.hash.value)] if r.usable else [], PDQ_MATCH_THRESHOLD_BITS
        )


class PerceptionPdqMethod(Method):
    name = "perception-pdq"

    def __init__(self) -> None:
        from perception.hashers import PDQHash

        self.hasher = PDQHash()
        self.table = _HashTable()

    def _hash(self, pixels: RgbArray) -> np.ndarray:
        return np.asarray(self.hasher.compute(pixels, hash_format="vector"), dtype=np.uint8)

    def add(self, owner: int, pixels: RgbArray) -> None:
        self.table.rows.append(self._hash(pixels))
        self.table.owners.append(owner)

    def query(self, pixels: RgbArray) -> tuple[set[int], float]:
        return self.table.nearest([self._hash(pixels)], PDQ_MATCH_THRESHOLD_BITS)


class ImagehashPhashMethod(Method):
    name = "imagehash-phash"

    def __init__(self) -> None:
        self.table = _HashTable()

    @staticmethod
    def _hash(pixels: RgbArray) -> np.ndarray:
        import imagehash
        from PIL import Image

        return np.asarray(imagehash.phash(Image.fromarray(pixels)).hash, dtype=np.uint8).ravel()

    def add(self, owner: int, pixels: RgbArray) -> None:
        self.table.rows.append(self._hash(pixels))
        self.table.owners.append(owner)

    def query(self, pixels: RgbArray) -> tuple[set[int], float]:
        return self.table.nearest([self._hash(pixels)], PHASH_THRESHOLD_BITS)


class PerceptionSiftMethod(Method):
    """Thorn's local-descriptor match: SIFT on the unletterboxed grayscale image (long side
    256), its pairing step, then its `validate_match` (ratio test, keypoint-area
    intersection, homography inliers, bounds) on the best SIFT_CANDIDATES pairs."""

    name = "perception-sift"

    def __init__(self) -> None:
        import perception.local_descriptor_deduplication as ldd

        self.ldd = ldd
        self.hasher = ldd.SIFT()
        self.banked: list[tuple[int, Any]] = []

    def _descriptors(self, pixels: RgbArray) -> Any:
        import cv2
        import perception.hashers.tools as pht

        ldd = self.ldd
        box = pht.unletterbox(np.ascontiguousarray(pixels))
        if box is None:
            return None
        (x1, x2), (y1, y2) = box
        gray = cv2.cvtColor(np.ascontiguousarray(pixels[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
        side = max(gray.shape[:2])
        if side > ldd.DEFAULT_MAX_SIZE:
            s = ldd.DEFAULT_MAX_SIZE / side
            gray = cv2.resize(gray, (int(gray.shape[1] * s), int(gray.shape[0] * s)))
        keypoints, descriptors = self.hasher.compute(gray)
        if descriptors is None or descriptors.shape[0] < ldd.DEFAULT_MIN_FEATURES:
            return None
        return {
            "keypoints": np.array([k.pt for k in keypoints], dtype=np.float32),
            "descriptors": descriptors,
            "descriptor_count": descriptors.shape[0],
            "dimensions": (gray.shape[1], gray.shape[0]),
            "filepath": "",
            "hasher": self.hasher.name,
        }

    def add(self, owner: int, pixels: RgbArray) -> None:
        d = self._descriptors(pixels)
        if d is not None:
            self.banked.append((owner, d))

    def _candidates(self, query: Any) -> list[tuple[int, Any]]:
        """perception's pairing step: banked images sharing at least its minimum overlap of
        descriptors closer than its threshold (it uses faiss; exhaustive here), the
        SIFT_CANDIDATES with most such descriptors."""
        import cv2

        ldd = self.ldd
        matcher = cv2.BFMatcher(cv2.NORM_L2)
        scored = []
        for owner, banked in self.banked:
            nearest = matcher.match(query["descriptors"], banked["descriptors"])
            close = sum(m.distance < self.hasher.threshold for m in nearest)
            least = min(query["descriptor_count"], banked["descriptor_count"])
            if close >= max(1, ldd.DEFAULT_OVERLAP * least):
                scored.append((close, owner, banked))
        scored.sort(key=lambda x: -x[0])
        return [(owner, banked) for _, owner, banked in scored[:SIFT_CANDIDATES]]

    def query(self, pixels: RgbArray) -> tuple[set[int], float]:
        d = self._descriptors(pixels)
        if d is None:
            return set(), NO_MATCH
        matched = set()
        best = 0.0
        for owner, banked in self._candidates(d):
            ok, stats = self.hasher.validate_match(d, banked)
            best = max(best, float(stats.get("inliers") or 0.0))
            if ok:
                matched.add(owner)
        return matched, -best  # higher inliers are closer


class PrivateMatchingMethod(Method):
    """Private matching's per-image test, through its own band sampler (default parameters,
    unchanged): a voucher carries the image's one plain PDQ hash; the table holds the band
    elements of every banked hash (with `derived`, the derived hashes of `bank_hashes`); an
    image counts as matched when one of its elements is in the table. (The server acts only
    past a per-account threshold of such matches: this measures the per-image recall.)"""

    def __init__(self, *, derived: bool = True) -> None:
        from accord.protocols.private_matching.bands import BandSampler
        from accord.protocols.private_matching.params import MatchingParams

        self.name = "private-matching" if derived else "private-matching-plain"
        self.sampler = BandSampler.create(b"\x07" * 32, MatchingParams())
        self.measures = MatchMeasures(dihedral=False) if derived else MatchMeasures.plain()
        self.table: dict[bytes, set[int]] = {}

    def add(self, owner: int, pixels: RgbArray) -> None:
        for h in bank_hashes(pixels, self.measures):
            for element in self.sampler.elements(h.result.hash):
                self.table.setdefault(element, set()).add(owner)

    def query(self, pixels: RgbArray) -> tuple[set[int], float]:
        r = pdq_from_pixels(pixels)
        if not r.usable:
            return set(), NO_MATCH
        matched: set[int] = set()
        for element in self.sampler.elements(r.hash):
            matched |= self.table.get(element, set())
        return matched, NO_MATCH


def all_methods() -> list[Method]:
    """Every method; the other detectors need the `eval` extra."""
    try:
        others: list[Method] = [
            PerceptionPdqMethod(),
            PerceptionSiftMethod(),
            ImagehashPhashMethod(),
        ]
    except ImportError:
        raise InvalidInput(
            "comparing with other detectors needs them installed: make eval",
            code="eval_extra_missing",
        ) from None
    return [
        AccordMethod(),
        AccordMethod(holds_images=False),
        PdqMethod(),
        PrivateMatchingMethod(),
        *others,
    ]


METHODS: dict[str, Callable[[], Method]] = {
    "accord": AccordMethod,
    "accord-hash-only": lambda: AccordMethod(holds_images=False),
    "pdq": PdqMethod,
    "private-matching": PrivateMatchingMethod,
    "private-matching-plain": lambda: PrivateMatchingMethod(derived=False),
    "perception-pdq": PerceptionPdqMethod,
    "perception-sift": PerceptionSiftMethod,
    "imagehash-phash": ImagehashPhashMethod,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CompareConfig:
    images_dir: Path
    fp_dir: Path | None = None
    edits: tuple[str, ...] | None = None
    max_images: int | None = None
    max_fp_images: int | None = None


def run_comparison(
    config: CompareConfig,
    methods: list[Method] | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Recall per edit and method, false matches on unrelated photos, time per query."""
    say = progress or (lambda _what, _done, _total: None)
    started = time.perf_counter()
    methods = methods if methods is not None else all_methods()
    edits = list(config.edits or EVERYDAY_TRANSFORMS)
    for e in edits:
        if e not in EVERYDAY_TRANSFORMS:
            raise InvalidInput("unknown edit", code="unknown_edit")
    paths = list_images(config.images_dir)[: config.max_images or None]
    photos = []
    refused = []
    for p in paths:
        pixels = load_image(p.read_bytes()).pixels
        if pdq_from_pixels(pixels).quality >= PDQ_MIN_QUALITY:
            photos.append((p.name, pixels))
        else:
            refused.append(p.name)
    if len(photos) < 2:
        raise InvalidInput("the comparison needs at least 2 bankable images", code="too_few")
    for owner, (_, pixels) in enumerate(photos):
        for m in methods:
            m.add(owner, pixels)
    for m in methods:
        m.finish()

    hits = {m.name: {e: 0 for e in edits} for m in methods}
    wrong = {m.name: 0 for m in methods}
    seconds = {m.name: 0.0 for m in methods}
    queries = 0
    total = len(edits) * len(photos)
    for k, e in enumerate(edits):
        for owner, (_, pixels) in enumerate(photos):
            say(f"edits: {e}", k * len(photos) + owner, total)
            edited = apply_transform(e, pixels)
            queries += 1
            for m in methods:
                t0 = time.perf_counter()
                matched, _ = m.query(edited)
                seconds[m.name] += time.perf_counter() - t0
                hits[m.name][e] += owner in matched
                wrong[m.name] += len(matched - {owner})
    say("edits", total, total)

    fp_paths = list_images(config.fp_dir)[: config.max_fp_images or None] if config.fp_dir else []
    false = {m.name: 0 for m in methods}
    fp_queries = {m.name: 0 for m in methods}
    closest = {m.name: float(NO_MATCH) for m in methods}
    for n, p in enumerate(fp_paths):
        say("unrelated photos", n, len(fp_paths))
        try:
            pixels = load_image(p.read_bytes()).pixels
        except InvalidInput:
            continue
        for m in methods:
            fp_queries[m.name] += 1
            t0 = time.perf_counter()
            matched, score = m.query(pixels)
            seconds[m.name] += time.perf_counter() - t0
            false[m.name] += bool(matched)
            closest[m.name] = min(closest[m.name], score)
    say("unrelated photos", len(fp_paths), len(fp_paths))

    n = len(photos)
    return {
        "images_dir": config.images_dir.name,
        "fp_dir": config.fp_dir.name if config.fp_dir else None,
        "banked": n,
        "refused_low_quality": refused,
        "fp_images": len(fp_paths),
        "edits": edits,
        "methods": [m.name for m in methods],
        "recall": {m.name: {e: round(hits[m.name][e] / n, 4) for e in edits} for m in methods},
        "misattributed": wrong,
        "false_matches": false,
        "unrelated_queries": fp_queries,
        "closest_unrelated": {k: (None if v >= NO_MATCH else abs(v)) for k, v in closest.items()},
        "ms_per_query": {
            k: round(1000 * v / max(1, queries + fp_queries[k]), 1) for k, v in seconds.items()
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def render_comparison(report: dict[str, Any]) -> str:
    methods = report["methods"]
    lines = [
        f"Banked photos: {report['banked']} (refused, PDQ quality below {PDQ_MIN_QUALITY}: "
        f"{len(report['refused_low_quality'])}); unrelated photos: {report['fp_images']}.",
        "",
        "| edit | " + " | ".join(methods) + " |",
        "|---|" + "---:|" * len(methods),
    ]
    for e in report["edits"]:
        cells = [f"{100 * report['recall'][m][e]:.0f}%" for m in methods]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    means = [np.mean(list(report["recall"][m].values())) for m in methods]
    lines.append("| **mean** | " + " | ".join(f"**{100 * v:.1f}%**" for v in means) + " |")
    lines.append(
        "| false matches / unrelated queries | "
        + " | ".join(
            f"{report['false_matches'][m]} / {report['unrelated_queries'][m]}" for m in methods
        )
        + " |"
    )
    lines.append(
        "| misattributed (edits) | "
        + " | ".join(str(report["misattributed"][m]) for m in methods)
        + " |"
    )

    def fmt(m: str) -> str:
        v = report["closest_unrelated"][m]
        if v is None:
            return "-"
        return f"{v:g} inliers" if m == "perception-sift" else f"{v:g} bits"

    lines.append("| closest unrelated | " + " | ".join(fmt(m) for m in methods) + " |")
    lines.append(
        "| ms per query | " + " | ".join(f"{report['ms_per_query'][m]}" for m in methods) + " |"
    )
    return "\n".join(lines) + "\n"


def write_heatmap(report: dict[str, Any], path: Path) -> Path:
    """Recall per edit (rows) and method (columns), one annotated heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = report["methods"]
    edits = report["edits"]
    grid = np.array([[report["recall"][m][e] for m in methods] for e in edits])
    fig, ax = plt.subplots(figsize=(2 + 1.3 * len(methods), 1.5 + 0.28 * len(edits)))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_yticks(range(len(edits)), edits)
    for i in range(len(edits)):
        for j in range(len(methods)):
            ax.text(j, i, f"{100 * grid[i, j]:.0f}", ha="center", va="center", fontsize=7)
    ax.set_title(f"Recall per edit ({report['banked']} banked photos)")
    fig.colorbar(image, ax=ax, fraction=0.04, label="recall")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Beyond plain PDQ: trimming, dihedral queries and crop hashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from detection_helpers import photo_pixels
from PIL import Image, ImageOps

from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.hashers import pdq_from_pixels
from accord.protocols.detection.matching import BankIndex, MatchQuery
from accord.protocols.detection.transforms import TRANSFORMS, apply_transform
from accord.protocols.detection.variants import (
    MatchMeasures,
    bank_hashes,
    query_hashes,
    trim_box,
    trim_boxes,
)

PIXELS = photo_pixels(11, (400, 300))


def _best(query: np.ndarray, bank: np.ndarray, m: MatchMeasures) -> int:
    return min(
        a.result.hash.distance(b.result.hash)
        for a in query_hashes(query, m)
        for b in bank_hashes(bank, m)
    )


def test_trim_finds_added_border() -> None:
    bordered = np.asarray(ImageOps.expand(Image.fromarray(PIXELS), border=40, fill="white"))
    box = trim_box(bordered)
    assert box is not None
    assert abs(box.left - 40) <= 3 and abs(box.top - 40) <= 3
    assert abs(box.right - 440) <= 3 and abs(box.bottom - 340) <= 3
    assert trim_boxes(PIXELS) == []  # nothing to cut on the plain picture


def test_measures_recover_everyday_edits() -> None:
    plain, full = MatchMeasures.plain(), MatchMeasures()
    for name in (
        "flip-h",
        "rotate-90",
        "border-white",
        "letterbox",
        "caption-top",
        "crop-central-0.8",
    ):
        edited = apply_transform(name, PIXELS)
        assert _best(edited, PIXELS, full) <= 31, name
        assert _best(edited, PIXELS, plain) > 31, name


def test_all_transforms_run() -> None:
    small = photo_pixels(2, (120, 90))
    for name in TRANSFORMS:
        out = apply_transform(name, small)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


def test_low_quality_hashes_are_dropped() -> None:
    flat = np.full((200, 200, 3), 200, dtype=np.uint8)
    assert query_hashes(flat, MatchMeasures()) == []
    assert bank_hashes(flat, MatchMeasures()) == []


def test_bank_index_matches_variants_and_masks_disabled() -> None:
    index = BankIndex("t")
    entries = [
        BankEntry(signal_type="pdq", hash=h.result.hash, variant=h.via, entry_id=i)
        for i, h in enumerate(bank_hashes(PIXELS, MatchMeasures()), start=1)
    ]
    index.add_entries(entries)
    edited = apply_transform("crop-central-0.8", apply_transform("flip-h", PIXELS))
    query = MatchQuery(pdq=tuple(query_hashes(edited, MatchMeasures(crops=False))))
    hits = index.match(query)
    assert hits and hits[0].via == "flipy"  # upstream names a left-right mirror "flipy"
    index.set_enabled([h.entry_id for h in hits], False)
    assert index.match(query) == []
    other = MatchQuery(pdq=tuple(query_hashes(photo_pixels(99), MatchMeasures())))
    assert index.match(other) == []


def test_exact_hash_matching() -> None:
    from accord.protocols.detection.signals import Md5Hash

    index = BankIndex("t")
    index.add_entries([BankEntry(signal_type="md5", hash=Md5Hash.of(b"x"), entry_id=5)])
    (hit,) = index.match(MatchQuery(md5=Md5Hash.of(b"x")))
    assert (hit.entry_id, hit.distance, hit.signal_type) == (5, 0, "md5")
    assert pdq_from_pixels(PIXELS).usable


def test_a_post_in_an_apps_screenshot_is_trimmed_in_two_passes(highres_dir: Path) -> None:
    """A social app's screenshot: a grey status bar over a white header (avatar, name), the
    photo at 90% of the width, buttons and a comment line under it. One pass cuts the status
    bar, the side margins and the buttons; the header, a white band under the grey one, is
    uncovered only then, and the second pass cuts it, so even a hash-only bank finds the
    photo."""
    pixels = np.asarray(Image.open(highres_dir / "caer_puppy.jpg").convert("RGB"))
    shot = apply_transform("screenshot/social-app", pixels)
    own = pdq_from_pixels(pixels).hash
    untrimmed = query_hashes(shot, MatchMeasures.plain())
    assert min(h.result.hash.distance(own) for h in untrimmed) > 31
    with_trims = query_hashes(shot, MatchMeasures(crops=False, geometry=False, tiles=False))
    assert min(h.result.hash.distance(own) for h in with_trims) <= 31
    assert len(trim_boxes(shot)) > len({trim_box(shot, tolerance=t) for t in (6, 10)} - {None})


def test_a_caption_band_is_cut_whole_from_a_query_reduced_for_hashing(highres_dir: Path) -> None:
    """A white caption band added over a photo, queried at 625 px: the query is reduced by a box
    filter before its variants are hashed, which blurs the caption's text into a run of
    non-background lines. A band ends only at a run longer than a line of text, so the cut
    reaches the photo and even a hash-only bank finds it."""
    pixels = np.asarray(Image.open(highres_dir / "skimage_astronaut.jpg").convert("RGB"))
    captioned = apply_transform("caption/band-top", pixels)
    assert max(captioned.shape[:2]) > 512  # reduced before hashing
    own = pdq_from_pixels(pixels).hash
    trimmed = query_hashes(captioned, MatchMeasures(crops=False, geometry=False, tiles=False))
    assert min(h.result.hash.distance(own) for h in trimmed) <= 31

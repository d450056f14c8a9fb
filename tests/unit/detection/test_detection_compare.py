"""`accord eval compare` on a handful of photos (the full run is a command, not a test)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from detection_helpers import photo_pixels

from accord.errors import InvalidInput
from accord.protocols.detection.comparison import (
    AccordMethod,
    CompareConfig,
    PdqMethod,
    render_comparison,
    run_comparison,
    write_heatmap,
)
from accord.protocols.detection.transforms import EVERYDAY_TRANSFORMS, apply_transform

PHOTOS = ("caer_guitar.jpg", "sklearn_china.jpg", "skimage_astronaut.jpg")
UNRELATED = ("skimage_coffee.jpg", "caer_tent.jpg")


def test_every_everyday_edit_runs() -> None:
    small = photo_pixels(3, (160, 120))
    for name in EVERYDAY_TRANSFORMS:
        out = apply_transform(name, small)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3, name


def test_compare_side_by_side(highres_dir: Path, tmp_path: Path) -> None:
    banked, unrelated = tmp_path / "banked", tmp_path / "unrelated"
    banked.mkdir()
    unrelated.mkdir()
    for name in PHOTOS:
        shutil.copy(highres_dir / name, banked / name)
    for name in UNRELATED:
        shutil.copy(highres_dir / name, unrelated / name)
    edits = ("mild/sharpen", "crop/top-left-8", "rotate/5deg", "mirror/jpeg")
    report = run_comparison(
        CompareConfig(images_dir=banked, fp_dir=unrelated, edits=edits),
        [AccordMethod(), AccordMethod(holds_images=False), PdqMethod()],
    )
    recall = report["recall"]
    assert all(recall["accord"][e] == 1.0 for e in edits)
    assert recall["pdq"]["mild/sharpen"] == 1.0
    assert recall["pdq"]["crop/top-left-8"] == 0.0 and recall["pdq"]["rotate/5deg"] == 0.0
    assert recall["accord-hash-only"]["mirror/jpeg"] == 1.0
    assert report["false_matches"] == {"accord": 0, "accord-hash-only": 0, "pdq": 0}
    assert report["misattributed"]["accord"] == 0
    assert report["closest_unrelated"]["pdq"] > 31
    table = render_comparison(report)
    assert "| crop/top-left-8 | 100% | 0% | 0% |" in table
    png = write_heatmap(report, tmp_path / "heatmap.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_refuses_unknown_edit(highres_dir: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        run_comparison(CompareConfig(images_dir=highres_dir, edits=("nope",)), [PdqMethod()])
    assert err.value.code == "unknown_edit"

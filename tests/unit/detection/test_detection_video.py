"""vPDQ (optional extra `accord[video]`): hashing and matching videos."""

from __future__ import annotations

from pathlib import Path

import pytest
from detection_helpers import photo_pixels
from PIL import Image

from accord.errors import InvalidInput
from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.hashers import vpdq_available, vpdq_from_file
from accord.protocols.detection.matching import BankIndex, MatchQuery

pytestmark = pytest.mark.skipif(not vpdq_available(), reason="vpdq not installed (accord[video])")


def _gif(path: Path, seeds: list[int]) -> Path:
    frames = [Image.fromarray(photo_pixels(s, (160, 120))) for s in seeds]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=500, loop=0)
    return path


def test_vpdq_hash_and_match(tmp_path: Path) -> None:
    video = vpdq_from_file(_gif(tmp_path / "a.gif", [1, 1, 2, 2, 3, 3, 4, 4]))
    assert len(video.frames) >= 3 and all(f.quality >= 50 for f in video.frames)
    other = vpdq_from_file(_gif(tmp_path / "b.gif", [7, 7, 8, 8, 9, 9]))
    index = BankIndex("videos")
    index.add_entries([BankEntry(signal_type="vpdq", hash=video, entry_id=1)])
    (hit,) = index.match(MatchQuery(vpdq=video))
    assert (hit.entry_id, hit.signal_type, hit.distance) == (1, "vpdq", 0)
    assert index.match(MatchQuery(vpdq=other)) == []
    index.set_enabled([1], False)
    assert index.match(MatchQuery(vpdq=video)) == []


def test_corrupt_video(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    with pytest.raises(InvalidInput):
        vpdq_from_file(bad)

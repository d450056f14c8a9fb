"""vPDQ (optional extra `accord[video]`): hashing and matching videos."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
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


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg binary not installed")
def test_cli_hash_video(tmp_path: Path) -> None:
    gif = _gif(tmp_path / "src.gif", [1, 2, 3, 4])
    mp4 = tmp_path / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(gif),
            "-pix_fmt",
            "yuv420p",
            "-vf",
            "scale=160:120",
            str(mp4),
        ],
        check=True,
        timeout=60,
    )
    result = CliRunner().invoke(
        cli_main(), ["--home", str(tmp_path / "h"), "hash", "--json", str(mp4)]
    )
    assert result.exit_code == 0, result.output
    rec = json.loads(result.output.splitlines()[-1])
    assert rec["pdq"] is None and len(rec["vpdq"]) >= 1 and len(rec["md5"]) == 32


def cli_main():  # imported lazily so that collection works without the CLI's other parts
    from accord.cli.main import cli

    return cli

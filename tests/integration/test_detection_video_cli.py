"""`accord hash` on a real video file made by the ffmpeg binary (a child process)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from accord.protocols.detection.hashers import vpdq_available

pytestmark = pytest.mark.skipif(not vpdq_available(), reason="vpdq not installed (accord[video])")


def _frame(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A smooth, textured synthetic picture (good PDQ quality)."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(6):
            fx, fy, ph = rng.uniform(0.005, 0.05, 3) * np.array([1, 1, 125])
            img[..., c] += np.sin(x * fx * 6.28 + y * fy * 6.28 + ph)
    img = (img - img.min()) / (np.ptp(img) or 1.0) * 255
    return Image.fromarray(img.astype(np.uint8))


def _gif(path: Path, seeds: list[int]) -> Path:
    frames = [_frame(s) for s in seeds]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=500, loop=0)
    return path


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
    from click.testing import CliRunner

    from accord.cli.main import cli

    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "hash", "--json", str(mp4)])
    assert result.exit_code == 0, result.output
    rec = json.loads(result.output.splitlines()[-1])
    assert rec["pdq"] is None and len(rec["vpdq"]) >= 1 and len(rec["md5"]) == 32

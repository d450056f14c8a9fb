"""The CLI contract: accord hash / bank / match (local home mode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from accord.cli.main import cli

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


@pytest.fixture
def run(tmp_path: Path):
    home = tmp_path / "home"

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--home", str(home), *args])
        return result.exit_code, result.output

    return invoke


def _jsonl(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_hash_contract(run, highres_dir: Path, tmp_path: Path) -> None:
    photo = highres_dir / "caer_guitar.jpg"
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    code, out = run("hash", "--json", str(photo), str(other))
    assert code == 0
    a, b = _jsonl(out)
    assert set(a) == {"path", "pdq", "quality", "md5", "sha256"}
    assert len(a["pdq"]) == 64 and a["quality"] >= 50
    assert b["pdq"] is None and b["md5"] == "5d41402abc4b2a76b9719d911017c592"


def test_hash_bad_file_is_a_clear_error(run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    code, out = run("hash", "--json", str(bad))
    assert code == 1
    (rec,) = _jsonl(out)
    assert rec["error"].startswith("invalid_input:") and "Traceback" not in out


def test_bank_flow(run, highres_dir: Path, tmp_path: Path) -> None:
    photos = sorted(highres_dir.glob("*.jpg"))[:4]
    assert run("bank", "create", "demo", "--threshold", "31")[0] == 0
    code, out = run("bank", "add", "demo", "--label", "A1", *map(str, photos[:2]))
    assert code == 0 and "added" in out
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f"type,hash,label\npdq,{PDQ},B2\n")
    code, out = run("bank", "import", "demo", str(csv_file))
    assert code == 0 and "imported 1 new" in out
    code, out = run("bank", "list", "--json")
    (info,) = json.loads(out)
    assert info["name"] == "demo" and len(info["version"]) == 64
    assert info["by_type"]["md5"] == 2

    # An edited copy of a banked photo: mirrored, with a white border.
    edited = tmp_path / "edited.jpg"
    im = Image.open(photos[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    ImageOps.expand(im, border=30, fill="white").save(edited, quality=85)
    code, out = run("match", "--json", str(edited), str(photos[0]), str(photos[3]))
    assert code == 0
    edited_rec, exact_rec, other_rec = _jsonl(out)
    assert exact_rec["matches"] and {"bank", "hash", "distance", "label"} <= set(
        exact_rec["matches"][0]
    )
    assert {m["signal_type"] for m in exact_rec["matches"]} == {"pdq", "md5", "sha256"}
    assert all(m["label"] == "A1" for m in exact_rec["matches"])
    assert edited_rec["matches"] and edited_rec["matches"][0]["via"] != "original"
    assert other_rec["matches"] == []
    code, out = run("match", "--json", "--plain", str(edited))
    assert _jsonl(out)[0]["matches"] == []

    code, out = run("bank", "export", "demo")
    assert code == 0 and out.splitlines()[0] == "type,hash,label" and PDQ in out
    code, out = run("bank", "export", "demo", "--format", "hma")
    assert out.splitlines()[0] == "signal_type,signal_str,collab,category,tags"


def test_bank_errors(run, tmp_path: Path) -> None:
    assert run("bank", "create", "b")[0] == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("pdq,123\n")
    result = CliRunner().invoke(
        cli, ["--home", str(tmp_path / "home"), "bank", "import", "b", str(bad)]
    )
    assert result.exit_code != 0


def test_folder_hashing(run, highres_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted(highres_dir.glob("*.jpg"))[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    code, out = run("hash", "--json", str(folder))
    assert code == 0 and len(_jsonl(out)) == 3


def test_video_sha256_from_an_export_is_matched_and_exported(run, tmp_path: Path) -> None:
    """A python-threatexchange export's video_sha256 row is kept: `accord match` finds the
    video by its bytes, and the export names the row as python-threatexchange does."""
    import hashlib
    import os

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(os.urandom(4096))
    digest = hashlib.sha256(clip.read_bytes()).hexdigest()
    export = tmp_path / "export.csv"
    export.write_text(
        f"signal_type,signal_str,collab,category,tags\nvideo_sha256,{digest},c1,POSITIVE_CLASS,v\n"
    )
    assert run("bank", "create", "videos")[0] == 0
    code, out = run("bank", "import", "videos", str(export), "--format", "hma")
    assert code == 0 and "imported 1 new of 1" in out
    code, out = run("match", str(clip))
    assert code == 0 and "MATCH bank=videos sha256 distance=0 label=v" in out
    code, out = run("bank", "export", "videos", "--format", "hma")
    assert f"video_sha256,{digest},accord,POSITIVE_CLASS,v" in out

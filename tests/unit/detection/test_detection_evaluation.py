"""The evaluation harness, on a few photos and edits (the full run is in docs/detection.md)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from accord.cli.main import cli
from accord.protocols.detection.evaluation import EvalConfig, render_markdown, run_evaluation


def test_small_evaluation(highres_dir: Path, tmp_path: Path) -> None:
    report = run_evaluation(
        EvalConfig(
            images_dir=highres_dir,
            max_images=8,
            transforms=("identity", "flip-h", "border-white", "crop-central-0.8"),
        )
    )
    assert report["n_banked"] == 4
    rec = report["recall"]
    assert rec["plain"]["identity"][31] == 1.0
    assert rec["all"]["flip-h"][31] >= rec["plain"]["flip-h"][31]
    assert rec["dihedral"]["flip-h"][31] == 1.0
    assert rec["crops"]["crop-central-0.8"][31] == 1.0
    assert len(rec["plain"]["identity"]) == 65
    assert report["false_match_unbanked_all"]["all"][31] == 0.0
    assert "| flip-h |" in render_markdown(report)


def test_eval_cli_writes_report_and_plots(highres_dir: Path, tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    for p in sorted(highres_dir.glob("*.jpg"))[:6]:
        (images / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "detection",
            "--images",
            str(images),
            "--out",
            str(out),
            "--fp-images",
            str(images),
            "--fp-transforms",
            "identity",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "detection-eval.json").read_text())
    assert report["n_fp_images"] == 6
    assert (out / "detection-recall.png").stat().st_size > 10_000
    assert (out / "detection-false-matches.png").stat().st_size > 5_000

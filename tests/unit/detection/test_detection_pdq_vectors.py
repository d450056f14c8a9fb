"""Acceptance: `accord hash` agrees with the upstream PDQ reference hashes (tests/vectors/pdq)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from detection_helpers import VECTORS
from PIL import Image

from accord.cli.main import cli
from accord.protocols.detection.hashers import pdq_dihedral_from_pixels, pdq_from_pixels
from accord.protocols.detection.images import load_image
from accord.protocols.detection.signals import PdqHash
from accord.protocols.detection.variants import trim_box

EXPECTED = json.loads((VECTORS / "pdq_expected.json").read_text())
SETS = {s["id"]: s for s in EXPECTED["sets"]}
CPP_FAMILY = ("cpp_bin_readme", "cpp_sql_readme", "java_readme", "java_unittest", "wasm_csv")
PURE_PYTHON = ("python_pure_unittest", "python_pure_readme")


def _rows(set_ids: tuple[str, ...]) -> list[tuple[str, dict]]:
    rows = []
    for sid in set_ids:
        for e in SETS[sid]["entries"]:
            if (VECTORS / e["image"]).is_file():
                rows.append((sid, e))
    return rows


def _cli_hashes(paths: list[Path]) -> dict[str, dict]:
    result = CliRunner().invoke(cli, ["hash", "--json", *map(str, paths)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return {r["path"]: r for r in records}


def test_vectors_present() -> None:
    assert len(_rows(CPP_FAMILY)) >= 40
    assert len(_rows(PURE_PYTHON)) >= 25


def test_cli_hash_conformance_cpp_reference() -> None:
    """Upstream rule: quality >= 80 implies distance <= 10 to the C++ reference."""
    rows = [(s, e) for s, e in _rows(CPP_FAMILY) if "exif-rotn" not in e["image"]]
    got = _cli_hashes(sorted({VECTORS / e["image"] for _, e in rows}))
    checked = 0
    for sid, e in rows:
        rec = got[str(VECTORS / e["image"])]
        d = PdqHash.from_hex(rec["pdq"]).distance(PdqHash.from_hex(e["pdq"]))
        if rec["quality"] >= 80:
            assert d <= 10, (sid, e["image"], d)
            checked += 1
    assert checked >= 40


def test_pure_python_reference_within_its_tolerance() -> None:
    rows = _rows(PURE_PYTHON)
    got = _cli_hashes(sorted({VECTORS / e["image"] for _, e in rows}))
    for sid, e in rows:
        rec = got[str(VECTORS / e["image"])]
        assert PdqHash.from_hex(rec["pdq"]).distance(PdqHash.from_hex(e["pdq"])) <= 16, sid


def test_python_threatexchange_exact() -> None:
    rows = _rows(("python_threatexchange_pdq_hasher",))
    got = _cli_hashes(sorted({VECTORS / e["image"] for _, e in rows}))
    for _, e in rows:
        rec = got[str(VECTORS / e["image"])]
        assert rec["pdq"] == e["pdq"]
        if "quality" in e:
            assert rec["quality"] == e["quality"]
    for e in SETS["python_threatexchange_cli"]["entries"]:
        if "preprocess" in e or not (VECTORS / e["image"]).is_file():
            continue
        pixels = load_image((VECTORS / e["image"]).read_bytes()).pixels
        assert pdq_from_pixels(pixels).hash.hex() == e["pdq"]


def test_dihedral_hashes_match_rotated_files() -> None:
    """compute_dihedral's order matches the upstream rotated/flipped copies of the bridge photo."""
    folder = VECTORS / "pdq/data/reg-test-input/dih"
    files = sorted(folder.glob("bridge-*.jpg"))
    assert len(files) == 8
    original = load_image(files[0].read_bytes()).pixels
    variants = [r.hash for r in pdq_dihedral_from_pixels(original)]
    for k, f in enumerate(files):
        h = pdq_from_pixels(load_image(f.read_bytes()).pixels).hash
        distances = [h.distance(v) for v in variants]
        assert distances[k] <= 10, f.name
        assert min(d for j, d in enumerate(distances) if j != k) > 60


def test_draft_decoding_stays_within_conformance() -> None:
    """Reduced-size JPEG decoding moves hashes by a few bits at most."""
    for sid, e in _rows(("cpp_bin_readme",)):
        data = (VECTORS / e["image"]).read_bytes()
        full = pdq_from_pixels(load_image(data, draft=False).pixels).hash
        fast = pdq_from_pixels(load_image(data, draft=True).pixels).hash
        assert full.distance(fast) <= 8, sid


def test_letterboxed_trimmed_matches_original() -> None:
    base = "python-threatexchange/threatexchange/tests/hashing/resources/"
    want = PdqHash.from_hex(SETS["python_threatexchange_cli"]["entries"][0]["pdq"])
    pixels = load_image((VECTORS / base / "letterboxed_sample-b.jpg").read_bytes()).pixels
    plain = pdq_from_pixels(pixels).hash
    box = trim_box(pixels)
    assert box is not None
    trimmed = pdq_from_pixels(box.apply(pixels)).hash
    assert plain.distance(want) > 31
    assert trimmed.distance(want) <= 8


def test_palette_gif_divergence_is_understood() -> None:
    im = Image.new("RGB", (100, 100))
    px = im.load()
    for i in range(100):
        for j in range(100):
            px[i, j] = ((i * 5) % 256, (j * 5) % 256, ((i + j) * 5) % 256)
    buf = io.BytesIO()
    im.save(buf, "GIF")
    gif = buf.getvalue()
    entry = next(
        e
        for e in SETS["python_threatexchange_cli"]["entries"]
        if e["image"].startswith("GENERATED")
    )
    ours = pdq_from_pixels(load_image(gif).pixels).hash
    as_png = io.BytesIO()
    Image.open(io.BytesIO(gif)).convert("RGB").save(as_png, "PNG")
    assert ours == pdq_from_pixels(load_image(as_png.getvalue()).pixels).hash
    indices = np.asarray(Image.open(io.BytesIO(gif)))
    upstream_way = np.ascontiguousarray(np.stack([indices] * 3, axis=2).astype(np.uint8))
    assert pdq_from_pixels(upstream_way).hash.hex() == entry["pdq"]


@pytest.mark.parametrize("pair", SETS["distance_vectors"]["pairs"])
def test_distance_vectors(pair: dict) -> None:
    a, b = PdqHash.from_hex(pair["a"]), PdqHash.from_hex(pair["b"])
    assert a.distance(b) == pair["hamming"]

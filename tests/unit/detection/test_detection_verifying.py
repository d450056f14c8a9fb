"""The verifying stage: local features of banked images, their stored form, and the refusals."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput
from accord.protocols.detection.features import (
    FEATURE_MAX_KEYPOINTS,
    FEATURES_MAX_BYTES,
    QueryFeatures,
    extract_features,
    parse_features,
    serialize_features,
    verify_features,
)
from accord.protocols.detection.images import load_image
from accord.protocols.detection.transforms import apply_transform

BANKED = "caer_guitar.jpg"
UNRELATED = "skimage_coffee.jpg"


def _pixels(folder: Path, name: str) -> np.ndarray:
    return load_image((folder / name).read_bytes()).pixels


@pytest.fixture(scope="module")
def banked_features(highres_dir: Path):
    return extract_features(_pixels(highres_dir, BANKED))


def test_stored_form_round_trips_and_is_bounded(highres_dir: Path, banked_features) -> None:
    data = serialize_features(banked_features)
    assert len(data) <= FEATURES_MAX_BYTES
    assert 0 < len(banked_features) <= FEATURE_MAX_KEYPOINTS
    parsed = parse_features(data)
    assert np.array_equal(parsed.points, banked_features.points)
    assert np.array_equal(parsed.descriptors, banked_features.descriptors)
    assert serialize_features(parsed) == data
    assert repr(parsed) == f"LocalFeatures({parsed.width}x{parsed.height}, {len(parsed)} keypoints)"


def test_stored_form_refuses_oversize_and_malformed(banked_features) -> None:
    data = serialize_features(banked_features)
    with pytest.raises(InvalidInput) as too_large:
        parse_features(data + b"\0" * FEATURES_MAX_BYTES)
    assert too_large.value.code == "features_too_large"
    fewer = data[:9] + (len(banked_features) - 1).to_bytes(2, "little") + data[11:]
    no_width = data[:5] + b"\0\0" + data[7:]
    for bad in (b"", b"ACFT1", data[:-1], b"XXXXX" + data[5:], fewer, no_width):
        with pytest.raises(InvalidInput) as err:
            parse_features(bad)
        assert err.value.code == "features_malformed"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=FEATURES_MAX_BYTES + 64))
def test_fuzz_parse_features_random_bytes(data: bytes) -> None:
    try:
        parsed = parse_features(data)
    except InvalidInput:
        return
    assert len(parsed) <= FEATURE_MAX_KEYPOINTS


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_fuzz_parse_features_mutated(banked_features, data: st.DataObject) -> None:
    raw = bytearray(serialize_features(banked_features))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        parsed = parse_features(bytes(raw[:cut]))
    except InvalidInput:
        return
    # Whatever parses can be verified against without an error.
    QueryFeatures(np.zeros((64, 64, 3), dtype=np.uint8)).shows(parsed)


@pytest.mark.parametrize(
    "edit",
    ["crop/top-left-8", "crop/left-15", "rotate/5deg", "caption/meme-25%", "mirror/jpeg"],
)
def test_verifying_accepts_the_edited_original(highres_dir: Path, banked_features, edit) -> None:
    edited = apply_transform(edit, _pixels(highres_dir, BANKED))
    assert QueryFeatures(edited).shows(banked_features)


def test_verifying_refuses_an_unrelated_image(highres_dir: Path, banked_features) -> None:
    unrelated = _pixels(highres_dir, UNRELATED)
    assert not verify_features(extract_features(unrelated), banked_features)
    assert not QueryFeatures(unrelated).shows(banked_features)


# -- the operator's database, played for real ------------------------------------------------


@pytest.fixture
def run(cli):
    operator = cli("operator")

    def invoke(*args: str) -> tuple[int, str]:
        result = operator.run(*args, check=False)
        return result.returncode, result.stdout + result.stderr

    invoke.db = operator.home / "banks.db"  # type: ignore[attr-defined]
    return invoke


def _banked(run, highres_dir: Path) -> None:
    assert run("bank", "create", "removals")[0] == 0
    code, out = run("bank", "add", "removals", str(highres_dir / BANKED), "--label", "A1")
    assert code == 0, out


def test_regression_colliding_hash_of_unrelated_image_is_refused(
    run, highres_dir: Path, tmp_path: Path
) -> None:
    """A banked entry's PDQ hash is rewritten in the database to the hash of an unrelated image
    (as a crafted collision, or a tampered list, would make it): the hash stage finds it at
    distance 0, and the verifying stage refuses it because the image is not the banked one."""
    _banked(run, highres_dir)
    code, out = run("hash", "--json", str(highres_dir / UNRELATED))
    colliding = json.loads(out)["pdq"]
    with sqlite3.connect(run.db) as db:
        changed = db.execute(
            "UPDATE bank_entries SET hash = ? WHERE signal_type = 'pdq' AND variant = 'original'",
            (colliding,),
        ).rowcount
    assert changed == 1
    query = str(highres_dir / UNRELATED)
    code, out = run("match", "--json", "--no-verify", query)
    assert code == 0 and json.loads(out)["matches"], "the hash stage alone is fooled"
    code, out = run("match", "--json", query)
    assert code == 0 and json.loads(out)["matches"] == []
    # The edited original still matches, confirmed by its features.
    edited = tmp_path / "edited.png"
    from PIL import Image

    pixels = _pixels(highres_dir, BANKED)
    Image.fromarray(apply_transform("crop/bottom-left-15", pixels)).save(edited)
    code, out = run("match", "--json", str(edited))
    (match,) = json.loads(out)["matches"]
    assert match["via"].endswith("+verified") and match["label"] == "A1"


def test_regression_tampered_stored_features_are_refused(run, highres_dir: Path) -> None:
    """The stored features of a banked image are overwritten in the database with an oversized
    blob: matching stops with one clear line and a stable code, never a traceback."""
    _banked(run, highres_dir)
    with sqlite3.connect(run.db) as db:
        changed = db.execute(
            "UPDATE bank_features SET data = ?", (b"ACFT1" + b"\xff" * FEATURES_MAX_BYTES,)
        ).rowcount
    assert changed == 1
    code, out = run("match", str(highres_dir / BANKED))
    assert code == 2, out
    assert "features_too_large" in out and "Traceback" not in out

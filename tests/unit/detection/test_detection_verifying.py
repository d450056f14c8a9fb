"""The verifying stage: local features of banked images, their stored form, and the refusals."""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from accord.errors import InvalidInput
from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.features import (
    FEATURE_MAX_KEYPOINTS,
    FEATURES_MAX_BYTES,
    QueryFeatures,
    extract_features,
    parse_features,
    serialize_features,
    verify_features,
)
from accord.protocols.detection.hashers import pdq_from_pixels
from accord.protocols.detection.images import load_image
from accord.protocols.detection.matching import BankIndex, MatchQuery
from accord.protocols.detection.transforms import apply_transform
from accord.protocols.detection.variants import MatchMeasures, bank_hashes, query_hashes

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


class Operator:
    """The CLI with its banks in SQLite (the home's banks.db) or PostgreSQL (`--db`), and a way
    to edit that database behind its back."""

    def __init__(self, cli, pg_url: str | None) -> None:
        self.cli = cli
        self.pg_url = pg_url
        self.bank = f"removals_{secrets.token_hex(4)}"

    def run(self, *args: str) -> tuple[int, str]:
        extra: tuple[str, ...] = ()
        if self.pg_url and args[0] in ("bank", "match"):
            extra = ("--db", self.pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
        result = self.cli.run(*args, *extra, check=False)
        return result.returncode, result.stdout + result.stderr

    def execute(self, sql: str, params: tuple) -> int:
        """Run one statement on the bank database, scoped to this bank; returns rows changed."""
        if self.pg_url is None:
            with sqlite3.connect(self.cli.home / "banks.db") as db:
                return db.execute(sql.replace("%s", "?"), params).rowcount
        import psycopg

        with psycopg.connect(self.pg_url, autocommit=True) as db:
            return db.execute(sql, params).rowcount


@pytest.fixture(params=["sqlite", "postgresql"])
def operator(request, cli) -> Operator:
    pg_url = request.getfixturevalue("pg_database") if request.param == "postgresql" else None
    return Operator(cli("operator"), pg_url)


_THIS_BANK = "bank_id = (SELECT id FROM bank_banks WHERE name = %s)"


def _banked(operator: Operator, highres_dir: Path) -> None:
    assert operator.run("bank", "create", operator.bank)[0] == 0
    code, out = operator.run(
        "bank", "add", operator.bank, str(highres_dir / BANKED), "--label", "A1"
    )
    assert code == 0, out


def test_regression_colliding_hash_of_unrelated_image_is_refused(
    operator: Operator, highres_dir: Path, tmp_path: Path
) -> None:
    """A banked entry's PDQ hash is rewritten in the database to the hash of an unrelated image
    (as a crafted collision, or a tampered list, would make it): the hash stage finds it at
    distance 0, and the verifying stage refuses it because the image is not the banked one."""
    _banked(operator, highres_dir)
    code, out = operator.run("hash", "--json", str(highres_dir / UNRELATED))
    colliding = json.loads(out)["pdq"]
    changed = operator.execute(
        "UPDATE bank_entries SET hash = %s WHERE signal_type = 'pdq' AND variant = 'original' "
        "AND " + _THIS_BANK,
        (colliding, operator.bank),
    )
    assert changed == 1
    query = str(highres_dir / UNRELATED)
    code, out = operator.run("match", "--json", "--no-verify", "--bank", operator.bank, query)
    assert code == 0 and json.loads(out)["matches"], "the hash stage alone is fooled"
    code, out = operator.run("match", "--json", "--bank", operator.bank, query)
    assert code == 0 and json.loads(out)["matches"] == []
    # The edited original still matches, confirmed by its features.
    edited = tmp_path / "edited.png"
    pixels = _pixels(highres_dir, BANKED)
    Image.fromarray(apply_transform("crop/bottom-left-15", pixels)).save(edited)
    code, out = operator.run("match", "--json", "--bank", operator.bank, str(edited))
    (match,) = json.loads(out)["matches"]
    assert match["via"].endswith("+verified") and match["label"] == "A1"


def test_regression_tampered_stored_features_are_refused(
    operator: Operator, highres_dir: Path
) -> None:
    """The stored features of a banked image are overwritten in the database with an oversized
    blob: matching stops with one clear line and a stable code, never a traceback."""
    _banked(operator, highres_dir)
    changed = operator.execute(
        "UPDATE bank_features SET data = %s WHERE " + _THIS_BANK,
        (b"ACFT1" + b"\xff" * FEATURES_MAX_BYTES, operator.bank),
    )
    assert changed == 1
    code, out = operator.run("match", "--bank", operator.bank, str(highres_dir / BANKED))
    assert code == 2, out
    assert "features_too_large" in out and "Traceback" not in out


# -- everyday edits that once slipped through ------------------------------------------------


def _image_bank(pixels: np.ndarray) -> BankIndex:
    """A bank holding one image as `accord bank add` holds it: derived hashes and features."""
    index = BankIndex("removals", holds_images=True)
    hashes = bank_hashes(pixels, MatchMeasures())
    index.add_entries(
        BankEntry(signal_type="pdq", hash=h.result.hash, variant=h.via, entry_id=i)
        for i, h in enumerate(hashes, start=1)
    )
    index.add_features(range(1, len(hashes) + 1), extract_features(pixels))
    return index


def _query(pixels: np.ndarray) -> MatchQuery:
    return MatchQuery(
        pdq=tuple(query_hashes(pixels, MatchMeasures(crops=False))),
        features=QueryFeatures(pixels),
    )


@pytest.mark.parametrize(
    ("photo", "edit"),
    [
        # 1% salt-and-pepper noise drew ORB's strongest corners onto the dots: 12 and 23
        # inliers, refused; the median-filtered try finds 52 and 177.
        ("skimage_retina.jpg", "mild/salt-noise"),
        ("skimage_rocket.jpg", "mild/salt-noise"),
        # Darkening a dark photo put its hash below the quality gate (24): never a candidate.
        ("caer_black_cat.jpg", "mild/dark-gamma"),
        # pdqhash's derived flip of a fine texture is 86 bits off; the true mirror's is 0.
        ("skimage_brick.jpg", "mirror/jpeg"),
        # No banked corner crop between 8% and 15%: 50-56 bits from every banked hash.
        ("caer_fighter_fish.jpg", "crop/top-right-10"),
        ("skimage_ihc.jpg", "crop/top-right-10"),
    ],
)
def test_regression_everyday_edit_of_banked_image_is_matched(
    highres_dir: Path, photo: str, edit: str
) -> None:
    pixels = _pixels(highres_dir, photo)
    hits = _image_bank(pixels).match(_query(apply_transform(edit, pixels)))
    assert hits and all(h.via.endswith("+verified") for h in hits)


def test_lifted_hash_of_a_dark_query_needs_the_verifying_stage(highres_dir: Path) -> None:
    """The shadow-lifted hash of a query below the quality gate finds only entries the
    verifying stage checks: a hash-only bank (or a query without features) never matches it."""
    pixels = _pixels(highres_dir, "caer_black_cat.jpg")
    darkened = apply_transform("mild/dark-gamma", pixels)
    named = query_hashes(darkened, MatchMeasures(crops=False))
    assert [h.via for h in named if h.verified_only] == ["lifted"]
    assert not any(h.result.usable for h in named if h.via == "original")
    hash_only = BankIndex("hma")
    hash_only.add_entries(
        BankEntry(signal_type="pdq", hash=h.result.hash, variant=h.via, entry_id=i)
        for i, h in enumerate(bank_hashes(pixels, MatchMeasures()), start=1)
    )
    assert hash_only.match(_query(darkened)) == []
    assert _image_bank(pixels).match(MatchQuery(pdq=tuple(named))) == []


def test_mirror_query_hash_is_the_mirror_images_own(highres_dir: Path) -> None:
    pixels = _pixels(highres_dir, "skimage_brick.jpg")
    banked = pdq_from_pixels(pixels).hash
    mirrored = np.ascontiguousarray(pixels[:, ::-1])
    (mirror,) = [h for h in query_hashes(mirrored, MatchMeasures()) if h.via == "flipy"]
    assert mirror.result.hash.distance(banked) <= 4


@pytest.mark.parametrize("edit", ["collage/1x2", "collage/2x2"])
def test_a_collage_is_matched_through_its_tiles_by_an_image_bank_only(
    highres_dir: Path, edit: str
) -> None:
    """A photo as one tile of a collage is 100 bits or more from every banked hash; the query's
    halves and quarters bring it within reach, and only the verifying stage may accept them: a
    hash-only bank, or a query whose tiles are off, finds nothing."""
    pixels = _pixels(highres_dir, "skimage_astronaut.jpg")
    collage = apply_transform(edit, pixels)
    hits = _image_bank(pixels).match(_query(collage))
    assert hits and all(h.via.startswith("tile-") and h.via.endswith("+verified") for h in hits)
    untiled = MatchQuery(
        pdq=tuple(query_hashes(collage, MatchMeasures(crops=False, tiles=False))),
        features=QueryFeatures(collage),
    )
    assert _image_bank(pixels).match(untiled) == []
    hash_only = BankIndex("hma")
    hash_only.add_entries(
        BankEntry(signal_type="pdq", hash=h.result.hash, variant=h.via, entry_id=i)
        for i, h in enumerate(bank_hashes(pixels, MatchMeasures()), start=1)
    )
    assert hash_only.match(_query(collage)) == []

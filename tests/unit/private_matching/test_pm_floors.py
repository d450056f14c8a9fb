"""The matching floors and their derivation (docs/protocol/private-matching.md, "Floors"):
the model reproduces the measured band agreement, the default floors meet the aim and every
one of them is needed for it, the issue's table is far below them, and a table below any floor
is refused with one stable code naming each floor it breaks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from accord.errors import VerificationError
from accord.protocols.manifest import (
    LawfulAccessBounds,
    Manifest,
    MatchingFloors,
    parse_manifest_text,
)
from accord.protocols.private_matching.floors import (
    BENIGN_CROSSING_AIM,
    DEFAULT_MATCHING_FLOORS,
    benign_crossing_bound,
    chance_band_agreement,
    check_params,
    check_table_size,
    floors_bound,
)
from accord.protocols.private_matching.params import MatchingParams
from accord.protocols.translog.note import generate_cosigner, generate_signer

FLOORS = DEFAULT_MATCHING_FLOORS


@pytest.mark.parametrize(
    ("band_bits", "measured"),
    [(8, 3.93e-3), (12, 2.52e-4), (16, 1.61e-5)],  # bench/vouchers.py params, 1.1 M pairs
)
def test_the_band_model_matches_the_measured_agreement(band_bits: int, measured: float) -> None:
    assert chance_band_agreement(band_bits) == pytest.approx(measured, rel=0.05)


def test_the_default_floors_meet_the_aim_and_each_is_needed() -> None:
    assert floors_bound(FLOORS) <= BENIGN_CROSSING_AIM
    relaxed = [
        replace(FLOORS, min_threshold=FLOORS.min_threshold - 1),
        replace(FLOORS, min_band_bits=FLOORS.min_band_bits - 1),
        replace(FLOORS, max_epoch_images=FLOORS.max_epoch_images * 2),
        replace(FLOORS, max_table_slots=FLOORS.max_table_slots * 2),
    ]
    for floors in relaxed:
        assert floors_bound(floors) > BENIGN_CROSSING_AIM, floors


def test_the_issue_table_opens_benign_images_at_once() -> None:
    # 8-bit bands, threshold 2, 3,000 random hashes in 32 bands: every image opens a voucher.
    bound = benign_crossing_bound(band_bits=8, threshold=2, epoch_images=2, table_slots=3000 * 32)
    assert bound == 1.0


def test_the_default_parameters_meet_the_default_floors() -> None:
    check_params(MatchingParams(), FLOORS.max_table_slots, FLOORS)


def test_a_table_below_any_floor_is_refused_with_one_code() -> None:
    weak = MatchingParams(band_bits=8, threshold=2, synthetic_rate_ppm=0)
    with pytest.raises(VerificationError) as refused:
        check_params(weak, 1024, FLOORS)
    assert refused.value.code == "matching_params_below_floor"
    msg = refused.value.message
    assert "threshold 2 (floor 12)" in msg and "band bits 8 (floor 40)" in msg
    assert "synthetic rate (ppm) 0 (floor 10,000)" in msg and "band count" not in msg
    for params, slots, words in [
        (MatchingParams(threshold=11), 1024, "threshold 11"),
        (MatchingParams(synthetic_rate_ppm=9_999), 1024, "synthetic rate (ppm) 9,999"),
        (MatchingParams(band_bits=39), 1024, "band bits 39"),
        (MatchingParams(band_count=65), 1024, "band count 65"),
        (MatchingParams(epoch_images=10_001), 1024, "epoch images 10,001"),
        (MatchingParams(), FLOORS.max_table_slots + 1, "table slots 67,108,865"),
    ]:
        with pytest.raises(VerificationError) as one:
            check_params(params, slots, FLOORS)
        assert one.value.code == "matching_params_below_floor" and words in one.value.message
    with pytest.raises(VerificationError) as big:
        check_table_size(FLOORS.max_table_slots + 1, FLOORS)
    assert big.value.code == "matching_params_below_floor"
    check_table_size(FLOORS.max_table_slots, FLOORS)


def test_the_manifest_carries_every_floor() -> None:
    _, log_vkey = generate_signer("log.example")
    _, witness = generate_cosigner("witness.example")
    _, signer = generate_signer("signer.example")
    manifest = Manifest(
        deployment="example",
        serial=1,
        log_origin="log.example",
        log_vkey=log_vkey,
        witnesses=(witness,),
        witness_quorum=1,
        max_checkpoint_age_s=3600,
        lawful_access=LawfulAccessBounds(
            approver_genesis_set="00" * 32, max_disclosure_delay_s=1, max_start_skew_s=1
        ),
        matching_floors=FLOORS,
        signers=(signer,),
    )
    parsed = parse_manifest_text(manifest.to_text())
    assert parsed.matching_floors == FLOORS
    assert set(FLOORS.fields()) == {f for f in MatchingFloors.__dataclass_fields__}

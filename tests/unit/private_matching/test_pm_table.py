from __future__ import annotations

import numpy as np
import pytest
from pm_helpers import SMALL, World, near_hash, random_hash

from accord.errors import InvalidInput, TooLarge, UnsupportedVersion, VerificationError
from accord.primitives.ristretto import multiply
from accord.protocols.private_matching.bands import BandSampler, band_positions
from accord.protocols.private_matching.params import (
    MatchingParams,
    band_collision_probability,
    synthetic_open_count_weights,
)
from accord.protocols.private_matching.table import (
    TABLE_HEADER_BYTES,
    BlindedTable,
    TableDigest,
    band_point,
    place_elements,
    unique_band_elements,
)


def test_params_round_trip_and_limits() -> None:
    p = MatchingParams()
    assert MatchingParams.decode(p.encode()) == p
    with pytest.raises(InvalidInput):
        MatchingParams.decode(b"\x00" * 3)
    for bad in (
        {"band_count": 0},
        {"band_bits": 7},
        {"threshold": 1},
        {"synthetic_rate_ppm": 300_000},
        {"detection_dim": 1},
        {"epoch_images": 0},
    ):
        with pytest.raises(InvalidInput):
            MatchingParams(**bad)  # type: ignore[arg-type]
    weights = synthetic_open_count_weights(p)
    assert len(weights) == p.band_count and abs(sum(weights) - 1) < 1e-9
    assert band_collision_probability(0, 40) == 1.0
    assert band_collision_probability(217, 40) == 0.0


def test_band_positions_are_deterministic_distinct_and_seed_dependent() -> None:
    seed = bytes(range(32))
    a = band_positions(seed, SMALL)
    assert a == band_positions(seed, SMALL)
    assert all(len(set(b)) == SMALL.band_bits and list(b) == sorted(b) for b in a)
    assert a != band_positions(bytes(32), SMALL)
    with pytest.raises(InvalidInput):
        band_positions(b"short", SMALL)


def test_band_elements_agree_on_unchanged_positions() -> None:
    rng = np.random.default_rng(3)
    sampler = BandSampler.create(bytes(32), SMALL)
    h = random_hash(rng)
    assert sampler.elements(h) == sampler.elements(h)
    near = near_hash(h, 2, rng)
    same = sum(a == b for a, b in zip(sampler.elements(h), sampler.elements(near), strict=True))
    assert same >= 1  # 2 flipped bits spoil at most 2 of 4 bands
    batch = sampler.elements_batch(np.frombuffer(h.value, dtype=np.uint8).reshape(1, 32))
    assert [b[0].tobytes() for b in batch] == sampler.elements(h)


def test_table_holds_blinded_band_elements_and_round_trips() -> None:
    w = World(SMALL, n_bank=5)
    sampler = w.table.sampler()
    for h in w.bank:
        for e in sampler.elements(h):
            s0, s1 = w.table.slots_for(e)
            expected = multiply(w.secret.alpha, band_point(w.table.band_seed, e))
            assert expected in (w.table.slot(s0), w.table.slot(s1))
    data = w.table.encode()
    assert len(data) == TABLE_HEADER_BYTES + 32 * w.table.n_slots
    assert BlindedTable.parse(data, expected_digest=w.digest) == w.table
    assert w.table.n_slots >= len(unique_band_elements(w.bank, sampler)) / 0.45


def test_table_with_another_digest_is_refused() -> None:
    w = World(SMALL, n_bank=3)
    data = bytearray(w.table.encode())
    data[-1] ^= 1
    with pytest.raises(VerificationError):
        BlindedTable.parse(bytes(data), expected_digest=w.digest)
    with pytest.raises(VerificationError):
        BlindedTable.parse(w.table.encode(), expected_digest=TableDigest(bytes(32)))


@pytest.mark.parametrize(
    ("mutation", "error"),
    [
        (lambda d: d[:10], InvalidInput),
        (lambda d: d[:-1], InvalidInput),
        (lambda d: d + b"\x00" * 32, InvalidInput),
        (lambda d: b"X" + d[1:], InvalidInput),
        (lambda d: d[:15] + b"\x02" + d[16:], UnsupportedVersion),
        (
            lambda d: d[: TABLE_HEADER_BYTES - 4] + b"\xff\xff\xff\xff" + d[TABLE_HEADER_BYTES:],
            TooLarge,
        ),
        (lambda d: d[:80] + bytes(32) + d[112:], InvalidInput),  # identity as the public key
    ],
)
def test_malformed_tables_are_refused(mutation, error) -> None:  # type: ignore[no-untyped-def]
    w = World(SMALL, n_bank=2)
    bad = mutation(w.table.encode())
    import hashlib

    with pytest.raises(error):
        BlindedTable.parse(bad, expected_digest=TableDigest(hashlib.sha256(bad).digest()))


def test_cuckoo_placement_puts_every_element_in_one_of_its_slots() -> None:
    elements = [i.to_bytes(4, "big") for i in range(400)]
    salt = bytes(16)
    slots = place_elements(elements, 900, salt)
    assert slots is not None
    placed = [i for i in slots if i >= 0]
    assert sorted(placed) == list(range(400))

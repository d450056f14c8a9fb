from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pm_helpers import SMALL, World, near_hash, random_hash

from accord.errors import AccordError, InvalidInput, TooLarge, UnsupportedVersion, VerificationError
from accord.primitives.ristretto import multiply
from accord.protocols.private_matching.bands import BandSampler, band_positions
from accord.protocols.private_matching.params import (
    MatchingParams,
    band_collision_probability,
    synthetic_open_count_weights,
)
from accord.protocols.private_matching.table import (
    CUCKOO_LOAD_FACTOR,
    CUCKOO_WAYS,
    TABLE_HEADER_BYTES,
    BlindedTable,
    SlotFile,
    TableDigest,
    TableSecret,
    band_point,
    cuckoo_positions,
    cuckoo_slots,
    place_elements,
    slot_count_for,
    unique_band_elements,
    write_table,
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
            expected = multiply(w.secret.alpha, band_point(w.table.band_seed, e))
            assert expected in [w.table.slot(s) for s in w.table.slots_for(e)]
    data = w.table.encode()
    assert len(data) == TABLE_HEADER_BYTES + 32 * w.table.n_slots
    assert BlindedTable.parse(data, expected_digest=w.digest) == w.table
    assert w.table.n_slots >= len(unique_band_elements(w.bank, sampler)) / CUCKOO_LOAD_FACTOR


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
        (lambda d: d[:15] + b"\x01" + d[16:], UnsupportedVersion),  # two-way tables
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


def test_cuckoo_placement_fills_88_percent_with_every_element_in_one_of_its_slots() -> None:
    elements = np.arange(20_000, dtype=">u4").view(np.uint8).reshape(-1, 4)
    salt = bytes(16)
    n_slots = slot_count_for(len(elements))
    positions = cuckoo_positions(salt, elements, n_slots)
    assert positions.shape == (len(elements), CUCKOO_WAYS)
    assert tuple(positions[7]) == cuckoo_slots(salt, elements[7].tobytes(), n_slots)
    slots = place_elements(positions, n_slots, seed=1)
    assert slots is not None
    placed = slots[slots >= 0]
    assert sorted(placed.tolist()) == list(range(len(elements)))
    held = np.flatnonzero(slots >= 0)
    assert all(slot in positions[slots[slot]] for slot in held)
    assert len(elements) / n_slots > 0.87


def test_unique_band_elements_are_sorted_distinct_rows() -> None:
    rng = np.random.default_rng(5)
    bank = [random_hash(rng) for _ in range(30)]
    sampler = BandSampler.create(bytes(32), SMALL)
    rows = unique_band_elements(bank + bank, sampler)
    expected = sorted({e for h in bank for e in sampler.elements(h)})
    assert [r.tobytes() for r in rows] == expected
    wide = MatchingParams(band_count=4, band_bits=80, threshold=2, detection_dim=8)
    wide_sampler = BandSampler.create(bytes(32), wide)
    wide_rows = unique_band_elements(bank, wide_sampler)
    assert [r.tobytes() for r in wide_rows] == sorted(
        {e for h in bank for e in wide_sampler.elements(h)}
    )


def test_table_file_built_by_two_processes_is_read_slot_by_slot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(9)
    bank = [random_hash(rng) for _ in range(40)]
    secret = TableSecret.generate()
    seen: list[tuple[int, int]] = []
    path = tmp_path / "t.table"
    built = write_table(
        bank,
        path,
        params=SMALL,
        secret=secret,
        workers=2,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (built.n_slots, built.n_slots)
    assert built.size == path.stat().st_size
    table = BlindedTable.open_file(path, expected_digest=built.digest)
    assert isinstance(table.slot_bytes, SlotFile) and len(table.slot_bytes) == 32 * table.n_slots
    assert table.digest() == built.digest
    sampler = table.sampler()
    for h in bank[:5]:
        for e in sampler.elements(h):
            expected = multiply(secret.alpha, band_point(table.band_seed, e))
            assert expected in [table.slot(s) for s in table.slots_for(e)]
    with pytest.raises(VerificationError):
        BlindedTable.open_file(path, expected_digest=TableDigest(bytes(32)))


_FUZZ_TABLE = World(SMALL, n_bank=2, seed=11).table.encode()


@settings(max_examples=150, deadline=None)
@given(
    cut=st.integers(0, len(_FUZZ_TABLE) + 40),
    flips=st.lists(st.tuples(st.integers(0, TABLE_HEADER_BYTES + 64), st.integers(1, 255))),
    tail=st.binary(max_size=40),
)
def test_table_parsers_fuzz_only_accord_errors(
    cut: int, flips: list[tuple[int, int]], tail: bytes
) -> None:
    """Any cut, byte change or extension of a table file: the bytes parser and the file parser
    agree, and refuse with Accord's own errors only (the digest given is the changed file's)."""
    import hashlib
    import tempfile
    from pathlib import Path

    data = bytearray(_FUZZ_TABLE[:cut] + tail)
    for pos, mask in flips:
        if pos < len(data):
            data[pos] ^= mask
    digest = TableDigest(hashlib.sha256(bytes(data)).digest())
    outcomes = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.table"
        path.write_bytes(bytes(data))
        for parse in (
            lambda: BlindedTable.parse(bytes(data), expected_digest=digest),
            lambda: BlindedTable.open_file(path, expected_digest=digest),
        ):
            try:
                table = parse()
            except AccordError as exc:
                outcomes.append(type(exc))
            else:
                outcomes.append(table.n_slots)
    assert outcomes[0] == outcomes[1]

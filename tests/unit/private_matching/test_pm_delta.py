"""Table deltas (docs/protocol/private-matching.md, "Table deltas"): a version built from the
previous one, the delta that makes it from the previous file, and every way a delta is refused."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import NotFound, VerificationError
from accord.primitives.ristretto import multiply
from accord.protocols.private_matching.delta import (
    DELTA_ENTRY_BYTES,
    DELTA_HEADER_BYTES,
    DELTA_MISMATCH,
    DeltaDigest,
    TableUpdate,
    apply_delta,
    read_delta_header,
    update_table,
)
from accord.protocols.private_matching.params import MatchingParams
from accord.protocols.private_matching.placement import read_placement
from accord.protocols.private_matching.table import (
    BlindedTable,
    TableBuild,
    TableSecret,
    band_point,
    write_table,
)

PARAMS = MatchingParams()
N_BANK = 400


def _bank(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


class Versions:
    """A table of N_BANK random hashes and the next version built from it with 1% of the bank
    changed (half removed, half added)."""

    def __init__(self, folder: Path, seed: int = 5) -> None:
        rng = np.random.default_rng(seed)
        self.folder = folder
        self.secret = TableSecret.generate()
        self.old_bank = _bank(rng, N_BANK)
        self.new_bank = np.concatenate([self.old_bank[2:], _bank(rng, 2)])
        self.base: TableBuild = write_table(
            self.old_bank,
            folder / "a.table",
            params=PARAMS,
            secret=self.secret,
            placement_path=folder / "a.placement",
        )
        update = self.update(self.new_bank)
        assert update is not None
        self.next: TableUpdate = update

    def update(
        self,
        bank: np.ndarray,
        *,
        params: MatchingParams = PARAMS,
        secret: TableSecret | None = None,
    ) -> TableUpdate | None:
        return update_table(
            bank,
            base_path=self.folder / "a.table",
            base_digest=self.base.digest,
            base_placement=self.folder / "a.placement",
            out_path=self.folder / "b.table",
            delta_path=self.folder / "b.delta",
            placement_path=self.folder / "b.placement",
            params=params,
            secret=secret or self.secret,
        )

    def apply(self, delta: Path, *, expected: DeltaDigest | None = None) -> Path:
        out = self.folder / "c.table"
        apply_delta(
            self.folder / "a.table",
            delta,
            out,
            base=self.base.digest,
            new=self.next.table.digest,
            expected_delta=expected or self.next.delta_digest,
        )
        return out


_SHARED = Versions(Path(tempfile.mkdtemp()), seed=6)


@pytest.fixture
def versions() -> Versions:
    return _SHARED


def _blinded(table: BlindedTable, secret: TableSecret, element: bytes) -> bool:
    point = multiply(secret.alpha, band_point(table.band_seed, element))
    return point in [table.slot(s) for s in table.slots_for(element)]


def test_delta_makes_exactly_the_table_built_from_the_previous_one(versions: Versions) -> None:
    made = versions.apply(versions.folder / "b.delta")
    assert made.read_bytes() == (versions.folder / "b.table").read_bytes()
    table = BlindedTable.open_file(made, expected_digest=versions.next.table.digest)
    base = BlindedTable.open_file(versions.folder / "a.table", expected_digest=versions.base.digest)
    # same alpha, seed, salt and slot count; every element of the new bank is in one of its
    # slots, blinded with the same alpha; the removed hashes' elements are in none
    assert (table.public, table.band_seed, table.cuckoo_salt, table.n_slots) == (
        base.public, base.band_seed, base.cuckoo_salt, base.n_slots,
    )  # fmt: skip
    sampler = table.sampler()
    for h in np.concatenate([versions.new_bank[:3], versions.new_bank[-2:]]):
        for e in sampler.elements_batch(h.reshape(1, 32)):
            assert _blinded(table, versions.secret, bytes(e[0]))
    for h in versions.old_bank[:2]:
        for e in sampler.elements_batch(h.reshape(1, 32)):
            assert not _blinded(table, versions.secret, bytes(e[0]))
    # a 1% change ships as a few percent of the table
    assert versions.next.delta_size < 0.05 * versions.next.table.size
    changed = (versions.next.delta_size - DELTA_HEADER_BYTES) // DELTA_ENTRY_BYTES
    assert changed == versions.next.changed_slots >= 4 * PARAMS.band_count
    head = read_delta_header((versions.folder / "b.delta").read_bytes()[:DELTA_HEADER_BYTES])
    assert (head.base, head.new) == (versions.base.digest, versions.next.table.digest)


def test_placements_are_private_and_belong_to_their_table(versions: Versions) -> None:
    path = versions.folder / "b.placement"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    placement = read_placement(
        path, table_digest=versions.next.table.digest.value, n_slots=versions.next.table.n_slots
    )
    assert int(placement.filled.sum()) == versions.next.table.n_elements
    with pytest.raises(NotFound):
        read_placement(
            path, table_digest=versions.base.digest.value, n_slots=versions.next.table.n_slots
        )


def test_full_build_when_the_change_does_not_allow_a_delta(versions: Versions) -> None:
    rng = np.random.default_rng(77)
    grown = np.concatenate([versions.old_bank, _bank(rng, N_BANK // 20)])  # load above 0.90
    assert versions.update(grown) is None
    assert versions.update(_bank(rng, N_BANK)) is None  # every element replaced
    assert versions.update(versions.old_bank) is None  # nothing changed
    assert versions.update(versions.new_bank, params=MatchingParams(band_count=16)) is None
    assert versions.update(versions.new_bank, secret=TableSecret.generate()) is None


def _refused(versions: Versions, data: bytes, *, logged: bool) -> None:
    """A delta with these bytes is refused: with the logged digest (the delta was changed), or
    with its own digest logged (a server that logged a wrong delta): then either the delta or
    the table it makes is refused."""
    path = versions.folder / f"bad-{os.urandom(4).hex()}.delta"
    path.write_bytes(data)
    expected = None if logged else DeltaDigest(hashlib.sha256(data).digest())
    try:
        with pytest.raises(VerificationError) as refused:
            made = versions.apply(path, expected=expected)
            BlindedTable.open_file(made, expected_digest=versions.next.table.digest)
    finally:
        path.unlink()
    if logged or refused.value.code == DELTA_MISMATCH:
        assert refused.value.code == DELTA_MISMATCH


@settings(max_examples=60, deadline=None)
@given(
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), min_size=1, max_size=3),
    logged=st.booleans(),
)
def test_any_change_to_a_delta_is_refused(
    cut: int, flips: list[tuple[int, int]], logged: bool
) -> None:
    versions = _SHARED
    good = (versions.folder / "b.delta").read_bytes()
    data = bytearray(good[: len(good) - cut])
    for pos, mask in flips:
        if pos < len(data):
            data[pos] ^= mask
    if bytes(data) == good:
        return
    _refused(versions, bytes(data), logged=logged)


def test_out_of_order_or_oversized_deltas_are_refused(versions: Versions) -> None:
    good = (versions.folder / "b.delta").read_bytes()
    head, body = good[:DELTA_HEADER_BYTES], good[DELTA_HEADER_BYTES:]
    rows = [body[i : i + DELTA_ENTRY_BYTES] for i in range(0, len(body), DELTA_ENTRY_BYTES)]
    swapped = head + b"".join([rows[1], rows[0], *rows[2:]])
    twice = head[:-4] + (len(rows) + 1).to_bytes(4, "big") + b"".join([rows[0], *rows])
    outside = head[:-4] + (1).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big") + bytes(32)
    huge = head[:-4] + (2**31).to_bytes(4, "big") + body
    for data in (swapped, twice, outside, huge, b"", good + bytes(DELTA_ENTRY_BYTES)):
        _refused(versions, data, logged=False)

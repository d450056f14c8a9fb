"""Hash indexes: the scalable index agrees with the reference; growth, disabling, persistence."""

from __future__ import annotations

import contextlib
import io
import json
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput
from accord.protocols.detection import index as ix
from accord.protocols.detection.index import (
    ExactHashIndex,
    LinearPdqIndex,
    MihPdqIndex,
    read_index,
)
from accord.protocols.detection.signals import Md5Hash, PdqHash, Sha256Hash


def _data(n: int, n_q: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    targets = rng.integers(0, n, size=n_q)
    bits = np.unpackbits(codes[targets], axis=1)
    for i in range(n_q):
        bits[i, rng.choice(256, size=i % 40, replace=False)] ^= 1
    return codes, np.packbits(bits, axis=1), targets


def _pairs(found: ix.BatchMatches) -> set[tuple[int, int, int]]:
    return set(zip(found.query.tolist(), found.entry_id.tolist(), found.distance.tolist()))


@pytest.mark.parametrize("n", [50, 3000, 60_000])
@pytest.mark.parametrize("threshold", [0, 10, 31])
def test_mih_equals_linear(n: int, threshold: int) -> None:
    codes, queries, _ = _data(n, 120, seed=n)
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    mih, lin = MihPdqIndex(), LinearPdqIndex()
    mih.add_codes(codes, ids)
    lin.add_codes(codes, ids)
    assert _pairs(mih.query_codes(queries, threshold)) == _pairs(
        lin.query_codes(queries, threshold)
    )


def test_planted_recall_is_complete() -> None:
    codes, queries, targets = _data(40_000, 320, seed=5)
    mih = MihPdqIndex()
    mih.add_codes(codes, np.arange(len(codes)))
    found = _pairs(mih.query_codes(queries, 31))
    hits = {(q, e) for q, e, _ in found}
    for q, t in enumerate(targets.tolist()):
        if q % 40 <= 31:
            assert (q, t) in hits


def _near(rng: np.random.Generator, codes: np.ndarray, distances: list[int]) -> np.ndarray:
    """One copy of each row of `codes` with exactly `distances[i]` bits flipped."""
    bits = np.unpackbits(codes, axis=1)
    for i, d in enumerate(distances):
        bits[i, rng.choice(256, size=d, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def test_mih_equals_linear_on_clusters_of_near_duplicates() -> None:
    # Clusters of near-duplicates (as re-encoded copies of one image are): many matches per
    # query, found through several substrings each, some queries with more matches than a
    # first pass keeps, and distances on both sides of the threshold.
    rng = np.random.default_rng(11)
    centres = rng.integers(0, 256, size=(20, 32), dtype=np.uint8)
    members = np.repeat(centres, 60, axis=0)
    members = _near(rng, members, rng.integers(0, 20, size=len(members)).tolist())
    background = rng.integers(0, 256, size=(40_000, 32), dtype=np.uint8)
    codes = np.concatenate([members, background])
    probes = np.repeat(centres, 8, axis=0)
    queries = np.concatenate([probes, _near(rng, probes, [0, 5, 12, 20, 30, 31, 32, 40] * 20)])
    ids = rng.permutation(len(codes)).astype(np.int64)
    mih, lin = MihPdqIndex(), LinearPdqIndex()
    mih.add_codes(codes, ids)
    lin.add_codes(codes, ids)
    assert mih._segments[0].layout is not None  # the tables are searched, not a scan
    within_31 = _pairs(lin.query_codes(queries, 31))
    for threshold in (31, 16, 2):
        expected = {p for p in within_31 if p[2] <= threshold}
        assert _pairs(mih.query_codes(queries, threshold)) == expected
    found = mih.query_codes(queries, 31)
    assert len(found.query) == len(_pairs(found))  # each match reported once
    assert np.bincount(found.query).max() > 16


def test_mih_equals_linear_below_its_build_distance() -> None:
    # Built for 23 bits: 12 substrings probed within 1 bit, keys shorter than the substrings;
    # a lower threshold probes within 0 bits, a higher one scans.
    rng = np.random.default_rng(12)
    codes = rng.integers(0, 256, size=(50_000, 32), dtype=np.uint8)
    targets = rng.integers(0, len(codes), size=150)
    queries = _near(rng, codes[targets], [i % 30 for i in range(150)])
    mih, lin = MihPdqIndex(max_distance=23), LinearPdqIndex()
    mih.add_codes(codes, np.arange(len(codes)))
    lin.add_codes(codes, np.arange(len(codes)))
    assert mih._segments[0].layout is not None
    within_30 = _pairs(lin.query_codes(queries, 30))
    for threshold in (30, 23, 11, 0):  # 30: above what it was built for, a compiled scan
        expected = {p for p in within_30 if p[2] <= threshold}
        assert _pairs(mih.query_codes(queries, threshold)) == expected


@pytest.mark.parametrize("max_distance", [8, 23, 31, 48])
def test_probe_radii_keep_the_pigeonhole(max_distance: int) -> None:
    layout = ix._choose_layout(10_000_000, max_distance)
    assert layout is not None
    for threshold in range(max_distance + 1):
        radii = ix._probe_radii(layout, threshold, 10_000_000)
        assert int((radii + 1).sum()) > threshold
        assert radii.max() <= layout.radius and radii.min() >= -1


def test_concurrent_queries_agree() -> None:
    # A server searches one index from several request threads at once.
    codes, queries, _ = _data(60_000, 200, seed=13)
    mih = MihPdqIndex()
    mih.add_codes(codes, np.arange(len(codes)))
    expected = _pairs(mih.query_codes(queries, 31))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _pairs(mih.query_codes(queries, 31)), range(8)))
    assert all(r == expected for r in results)


def test_threshold_above_build_radius_falls_back_to_scan() -> None:
    codes, queries, _ = _data(6000, 50, seed=2)
    mih = MihPdqIndex(max_distance=20)
    mih.add_codes(codes, np.arange(6000))
    lin = LinearPdqIndex()
    lin.add_codes(codes, np.arange(6000))
    assert _pairs(mih.query_codes(queries, 35)) == _pairs(lin.query_codes(queries, 35))


def test_incremental_growth_merges_segments() -> None:
    codes, queries, _ = _data(30_000, 80, seed=3)
    mih, lin = MihPdqIndex(), LinearPdqIndex()
    for start in range(0, 30_000, 1000):
        mih.add_codes(codes[start : start + 1000], np.arange(start, start + 1000))
        lin.add_codes(codes[start : start + 1000], np.arange(start, start + 1000))
    assert len(mih) == 30_000
    assert len(mih.segment_sizes) <= 6  # log-structured merging keeps few segments
    assert _pairs(mih.query_codes(queries, 31)) == _pairs(lin.query_codes(queries, 31))


def test_disable_and_enable_without_rebuild() -> None:
    codes, queries, targets = _data(5000, 10, seed=4)
    mih = MihPdqIndex()
    mih.add_codes(codes, np.arange(5000))
    segments = list(mih._segments)
    first = int(targets[0])
    assert first in mih.query_codes(queries[:1], 31).entry_id.tolist()
    mih.set_enabled([first], False)
    assert first not in mih.query_codes(queries[:1], 31).entry_id.tolist()
    mih.set_enabled([first], True)
    assert first in mih.query_codes(queries[:1], 31).entry_id.tolist()
    assert mih._segments == segments


def test_typed_query_api_sorted_by_distance() -> None:
    base = PdqHash(bytes(32))
    near = PdqHash(b"\x01" + bytes(31))
    far = PdqHash(b"\xff" * 8 + bytes(24))
    index = MihPdqIndex()
    index.add([far, near, base], [1, 2, 3])
    assert [(m.entry_id, m.distance) for m in index.query([base], 31)[0]] == [(3, 0), (2, 1)]
    with pytest.raises(InvalidInput):
        index.query([base], 300)
    with pytest.raises(InvalidInput):
        index.add([base], [1, 2])


@pytest.mark.parametrize("cls", [MihPdqIndex, LinearPdqIndex])
def test_serialization_round_trip(cls: type) -> None:
    codes, queries, _ = _data(5000, 40, seed=6)
    index = cls()
    index.add_codes(codes, np.arange(5000) + 100)
    index.set_enabled([101, 102], False)
    blob = index.to_bytes()
    assert b"pickle" not in blob
    loaded = read_index(io.BytesIO(blob))
    assert type(loaded) is cls
    assert loaded.disabled_ids() == {101, 102}
    assert _pairs(loaded.query_codes(queries, 31)) == _pairs(index.query_codes(queries, 31))


def test_exact_index() -> None:
    a, b = Md5Hash.of(b"a"), Md5Hash.of(b"b")
    index = ExactHashIndex("md5")
    index.add([a, b, a], [1, 2, 3])
    assert [m.entry_id for m in index.query([a])[0]] == [1, 3]
    big = [Md5Hash.of(str(i).encode()) for i in range(10_000)]
    index.add(big, list(range(100, 10_100)))
    assert [m.entry_id for m in index.query([big[1234]])[0]] == [1334]
    index.set_enabled([1334], False)
    assert index.query([big[1234]])[0] == []
    loaded = read_index(io.BytesIO(index.to_bytes()))
    assert isinstance(loaded, ExactHashIndex)
    assert [m.entry_id for m in loaded.query([a])[0]] == [1, 3]
    assert loaded.query([big[1234]])[0] == []
    with pytest.raises(InvalidInput):
        index.add([Sha256Hash.of(b"x")], [9])  # type: ignore[list-item]


def _header_blob(header: dict, payload: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return ix._MAGIC + struct.pack("<I", len(raw)) + raw + payload


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"PK\x03\x04 not an index",
        b"\x80\x04\x95 pickle",
        ix._MAGIC + b"\xff\xff\xff\xff",
        _header_blob(
            {
                "version": 1,
                "kind": "pdq-mih",
                "params": {},
                "arrays": [{"name": "codes", "dtype": "|O", "shape": [1, 32]}],
            }
        ),
        _header_blob(
            {
                "version": 1,
                "kind": "pdq-mih",
                "params": {},
                "arrays": [{"name": "codes", "dtype": "|u1", "shape": [10, 32]}],
            },
            b"\x00" * 20,
        ),
        _header_blob({"version": 1, "kind": "exec", "params": {}, "arrays": []}),
        _header_blob({"version": 2, "kind": "pdq-mih", "params": {}, "arrays": []}),
    ],
)
def test_malformed_index_files_rejected(blob: bytes) -> None:
    with pytest.raises(InvalidInput):
        read_index(io.BytesIO(blob))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(0, 400))
def test_fuzz_index_reader(noise: bytes, cut: int) -> None:
    index = MihPdqIndex()
    index.add_codes(np.zeros((3, 32), dtype=np.uint8), np.arange(3))
    good = index.to_bytes()
    for blob in (noise, good[:cut] + noise, ix._MAGIC + noise):
        with contextlib.suppress(InvalidInput):
            read_index(io.BytesIO(blob))

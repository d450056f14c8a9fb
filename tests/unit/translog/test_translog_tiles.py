"""tlog-tiles paths, widths and bundles (c2sp.org/tlog-tiles): the spec's own examples, every
rejection, and Hypothesis over the parser (round trips; no input but an exception of ours)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import AccordError, InvalidInput, NotFound
from accord.protocols.translog.tiles import (
    MAX_TILE_LEVEL,
    TILE_WIDTH,
    TilePath,
    available_width,
    check_tile_available,
    encode_entry_bundle,
    encode_tile_index,
    parse_tile_path,
)


def test_the_spec_example_index_encoding() -> None:
    assert encode_tile_index(1234067) == "x001/x234/067"
    assert encode_tile_index(0) == "000"
    assert encode_tile_index(1000) == "x001/000"
    assert parse_tile_path("0/x001/x234/067") == TilePath(0, 1234067)
    assert parse_tile_path("entries/x001/000.p/7") == TilePath(None, 1000, 7)
    assert TilePath(2, 5, 9).to_path() == "tile/2/005.p/9"


def test_the_spec_example_tree_of_70000() -> None:
    """273 full level-0 tiles and one of width 112; one full level-1 tile and one of 17; one
    level-2 tile of width 1."""
    size = 70_000
    assert available_width(TilePath(0, 272), size) == TILE_WIDTH
    assert available_width(TilePath(0, 273), size) == 112
    assert available_width(TilePath(0, 274), size) == 0
    assert available_width(TilePath(1, 0), size) == TILE_WIDTH
    assert available_width(TilePath(1, 1), size) == 17
    assert available_width(TilePath(2, 0), size) == 1
    assert available_width(TilePath(3, 0), size) == 0
    check_tile_available(TilePath(1, 1, 17), size)
    with pytest.raises(NotFound):
        check_tile_available(TilePath(1, 1, 18), size)
    with pytest.raises(NotFound):
        check_tile_available(TilePath(1, 1), size)


def test_a_tree_of_256_has_a_full_tile_and_a_level_1_tile_of_width_1() -> None:
    assert available_width(TilePath(0, 0), 256) == TILE_WIDTH
    assert available_width(TilePath(1, 0), 256) == 1


@pytest.mark.parametrize(
    "path",
    [
        "",
        "0",
        "0/",
        "/0/000",
        "0/000/",
        "00/000",
        "01/000",
        "64/000",
        "-1/000",
        "0/00",
        "0/0000",
        "0/x000",
        "0/x001",
        "0/000/001",
        "0/x000/001",  # not the fewest groups
        "0/y001/000",
        "0/x001/x000",
        "0/000.p/0",
        "0/000.p/256",
        "0/000.p/01",
        "0/000.p/",
        "0/000.p",
        "0/000.q/5",
        "0/000.p/5/6",
        "entry/000",
        "Entries/000",
        "entries/000.p/1000",
        "0/x001/x002/x003/x004/x005/x006/x007/008",  # more groups than any uint64 needs
        "0/\u0661\u0662\u0663",
        "0/+12",
        "0/ 12",
    ],
)
def test_malformed_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_tile_path(path)
    assert refused.value.code == "malformed_tile_path"


def test_entry_bundles_are_uint16_length_prefixed() -> None:
    assert encode_entry_bundle([b"ab", b""]) == b"\x00\x02ab\x00\x00"
    assert encode_entry_bundle([b"x" * 0xFFFF])[:2] == b"\xff\xff"
    with pytest.raises(InvalidInput):
        encode_entry_bundle([b"x" * 0x10000])


@given(
    level=st.none() | st.integers(0, MAX_TILE_LEVEL),
    index=st.integers(0, 2**64),
    width=st.integers(1, TILE_WIDTH),
)
def test_paths_round_trip(level: int | None, index: int, width: int) -> None:
    tile = TilePath(level, index, width)
    assert parse_tile_path(tile.to_path().removeprefix("tile/")) == tile


_PATH_ALPHABET = st.sampled_from("0123456789x/.pentries" + "\u0661 -+")


@given(st.text(_PATH_ALPHABET, max_size=40) | st.text(max_size=80))
def test_the_parser_accepts_only_canonical_paths(path: str) -> None:
    try:
        tile = parse_tile_path(path)
    except AccordError as refused:
        assert isinstance(refused, InvalidInput)
    else:
        assert tile.to_path() == "tile/" + path

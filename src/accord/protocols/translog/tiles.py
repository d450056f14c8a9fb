"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles): tile paths, tile widths and entry bundles.

The log's Merkle tree (RFC 6962 hashing, `merkle`) is served as tiles: the tile at level ``L``,
index ``N`` holds up to 256 consecutive hashes of Merkle level ``8 * L``, namely
``MTH(D[(N * 256 + i) * 256**L : (N * 256 + i + 1) * 256**L])`` for ``i`` in ``0..W-1``. A full
tile has ``W = 256``; the rightmost tile of a level may be partial (``1 <= W <= 255``), its path
suffixed ``.p/<W>``. Entry bundles (``tile/entries/<N>``) hold the level-0 tile's entries, each
a big-endian uint16 length and the entry's bytes.

Paths are parsed strictly: one encoding per tile (no leading zeroes, ``x``-prefixed 3-digit
groups for all but the last group of ``N``, the fewest groups that hold ``N``), so a cache keyed
on the path holds each tile once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from accord.errors import InvalidInput, NotFound
from accord.protocols.translog.merkle import NodeId

TILE_WIDTH = 256
"""Hashes in a full tile (and entries in a full bundle)."""

TILE_HEIGHT_LEVELS = 8
"""Merkle levels spanned by one tile level: 256 = 2**8."""

MAX_TILE_LEVEL = 63
"""Highest tile level a path may name (the spec's bound)."""

MAX_INDEX_GROUPS = 7
"""3-digit groups in a tile index: 10**21 > 2**64, so seven hold any uint64 index."""

MAX_TILE_PATH_CHARS = 64
"""Longest path (after ``tile/``) that can be valid: entries + seven groups + ``.p/255``."""

MAX_BUNDLE_ENTRY_BYTES = 0xFFFF
"""An entry bundle's length prefix is a uint16."""

ENTRIES_LEVEL = "entries"

_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_GROUP = re.compile(r"[0-9]{3}")


@dataclass(frozen=True, slots=True)
class TilePath:
    """One tile (`level` 0..63) or entry bundle (`level` None): index and width (256: full)."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if self.level is not None and not 0 <= self.level <= MAX_TILE_LEVEL:
            raise InvalidInput("tile level out of range")
        if not 0 <= self.index < 1000**MAX_INDEX_GROUPS:
            raise InvalidInput("tile index out of range")
        if not 1 <= self.width <= TILE_WIDTH:
            raise InvalidInput("tile width out of range")

    @property
    def is_entries(self) -> bool:
        return self.level is None

    @property
    def is_full(self) -> bool:
        return self.width == TILE_WIDTH

    @property
    def merkle_level(self) -> int:
        """The Merkle level of the hashes in this tile (0 for an entry bundle's leaves)."""
        return TILE_HEIGHT_LEVELS * (self.level or 0)

    @property
    def first(self) -> int:
        """Index, at `merkle_level`, of the tile's first hash (or the bundle's first entry)."""
        return self.index * TILE_WIDTH

    def nodes(self) -> list[NodeId]:
        """The Merkle nodes whose hashes the tile holds, in order."""
        return [NodeId(self.merkle_level, self.first + i) for i in range(self.width)]

    def to_path(self) -> str:
        """The path below the log's prefix, e.g. ``tile/1/x001/234.p/7``."""
        level = ENTRIES_LEVEL if self.level is None else str(self.level)
        suffix = "" if self.is_full else f".p/{self.width}"
        return f"tile/{level}/{encode_tile_index(self.index)}{suffix}"


def encode_tile_index(index: int) -> str:
    """``N`` as zero-padded 3-digit groups, all but the last prefixed ``x``: 1234067 ->
    ``x001/x234/067``."""
    if index < 0:
        raise InvalidInput("tile index out of range")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


TILE_PATH_CODE = "malformed_tile_path"


def _malformed(message: str) -> InvalidInput:
    return InvalidInput(message, code=TILE_PATH_CODE)


def parse_tile_path(path: str) -> TilePath:
    """Parse the part of a tile URL after ``tile/``: ``<L>/<N>[.p/<W>]`` or
    ``entries/<N>[.p/<W>]``. Anything but the one canonical encoding is `InvalidInput`."""
    if not isinstance(path, str) or len(path) > MAX_TILE_PATH_CHARS or not path.isascii():
        raise _malformed("not a tile path")
    parts = path.split("/")
    width = TILE_WIDTH
    if len(parts) >= 2 and parts[-2].endswith(".p"):
        if not _WIDTH.fullmatch(parts[-1]) or int(parts[-1]) >= TILE_WIDTH:
            raise _malformed("malformed partial tile width")
        width = int(parts[-1])
        parts = [*parts[:-2], parts[-2][: -len(".p")]]
    if not 2 <= len(parts) <= 1 + MAX_INDEX_GROUPS:
        raise _malformed("not a tile path")
    level_text, *groups = parts
    if level_text == ENTRIES_LEVEL:
        level = None
    elif _LEVEL.fullmatch(level_text) and int(level_text) <= MAX_TILE_LEVEL:
        level = int(level_text)
    else:
        raise _malformed("malformed tile level")
    index = 0
    for number, group in enumerate(groups):
        last = number == len(groups) - 1
        digits = group if last else group[1:] if group.startswith("x") else ""
        if not _GROUP.fullmatch(digits):
            raise _malformed("malformed tile index")
        index = index * 1000 + int(digits)
    if encode_tile_index(index) != "/".join(groups):
        raise _malformed("tile index is not in canonical form")
    try:
        return TilePath(level, index, width)
    except InvalidInput as exc:
        raise _malformed(exc.message) from None


def available_width(tile: TilePath, size: int) -> int:
    """How many hashes (entries) of `tile`'s position exist in a tree of `size` leaves: 0..256.

    At Merkle level ``8 * L`` a tree of ``size`` leaves has ``size // 256**L`` complete nodes
    (the spec's ``floor(s / 256**l) mod 256`` for the rightmost, partial tile)."""
    complete = size >> tile.merkle_level
    return max(0, min(TILE_WIDTH, complete - tile.first))


def check_tile_available(tile: TilePath, size: int) -> None:
    """`NotFound` unless the tree of `size` leaves holds every hash `tile` asks for."""
    if available_width(tile, size) < tile.width:
        raise NotFound("no such tile in the log", code="no_such_tile")


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Each entry as a big-endian uint16 length and its bytes."""
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_BUNDLE_ENTRY_BYTES:
            raise InvalidInput("a log entry is too long for an entry bundle")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)

"""Which band element sits in which slot of a table: the server's private record of a build,
kept next to the table so that the next version can be built from it (`delta.update_table`).

The band elements are bits of banked PDQ hashes, so this file is as private as the bank: the
server writes it with mode 0600 outside the served folder and never sends it anywhere. Format
(version 1), integers big-endian::

    magic        16 bytes  b"ACCORD-PM-PLACE" 0x01
    table digest 32 bytes  the table this placement belongs to
    n_slots       4 bytes
    width         2 bytes  bytes per band element
    n_filled      4 bytes  slots holding an element
    mask         ceil(n_slots / 8) bytes, bit i (MSB first) set if slot i holds an element
    elements     n_filled * width bytes, in slot order
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from accord.errors import InvalidInput, NotFound

PLACEMENT_MAGIC = b"ACCORD-PM-PLACE\x01"
_HEAD = struct.Struct(">16s32sIHI")
#: Widest band element a placement may hold (2-byte band index + 128 sampled bits).
MAX_ELEMENT_BYTES = 18


@dataclass(frozen=True, slots=True, eq=False)
class Placement:
    """For each slot whether it holds an element, and the elements in slot order."""

    table_digest: bytes
    n_slots: int
    filled: npt.NDArray[np.bool_]
    elements: npt.NDArray[np.uint8]

    def filled_slots(self) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.filled).astype(np.int64)


def placement_of(
    table_digest: bytes, slots: npt.NDArray[np.int64], elements: npt.NDArray[np.uint8]
) -> Placement:
    """The placement of a build: `slots` holds for each slot the index of its element in
    `elements` (-1 if empty), as `place_elements` returns it."""
    filled = slots >= 0
    return Placement(
        table_digest=table_digest,
        n_slots=int(slots.size),
        filled=filled,
        elements=np.ascontiguousarray(elements[slots[filled]]),
    )


def write_placement(path: Path, placement: Placement) -> None:
    """Write a placement file, readable by this user only (mode 0600, created fresh)."""
    width = placement.elements.shape[1]
    head = _HEAD.pack(
        PLACEMENT_MAGIC,
        placement.table_digest,
        placement.n_slots,
        width,
        len(placement.elements),
    )
    tmp = path.with_name(path.name + f".{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            f.write(np.packbits(placement.filled).tobytes())
            f.write(placement.elements.tobytes())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def read_placement(path: Path, *, table_digest: bytes, n_slots: int) -> Placement:
    """The placement of the table with this digest and slot count; NotFound if there is none
    (a table built before placements were kept) or it belongs to another table."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise NotFound("no placement for this table") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_HEAD.size)
        if len(head) != _HEAD.size:
            raise InvalidInput("placement file too short")
        magic, digest, slots, width, n_filled = _HEAD.unpack(head)
        if magic != PLACEMENT_MAGIC or not 1 <= width <= MAX_ELEMENT_BYTES:
            raise InvalidInput("not a placement file")
        if not hmac.compare_digest(digest, table_digest) or slots != n_slots:
            raise NotFound("no placement for this table")
        mask_bytes = (n_slots + 7) // 8
        if n_filled > n_slots or size != _HEAD.size + mask_bytes + n_filled * width:
            raise InvalidInput("placement file size does not match its counts")
        mask = np.unpackbits(np.frombuffer(f.read(mask_bytes), dtype=np.uint8), count=n_slots)
        filled = mask.astype(np.bool_)
        if int(np.count_nonzero(filled)) != n_filled:
            raise InvalidInput("placement mask does not match its count")
        elements = np.frombuffer(f.read(n_filled * width), dtype=np.uint8).reshape(-1, width)
    return Placement(table_digest=digest, n_slots=n_slots, filled=filled, elements=elements)

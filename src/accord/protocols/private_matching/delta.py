"""Table deltas: the next version of a blinded table built from the previous one, and the file
that turns a client's copy of the previous table into the next (docs/protocol/private-matching.md,
"Table deltas", steps U1-U4 and C1d).

A version built this way keeps the previous one's alpha, band seed, cuckoo salt and slot count.
Slots of removed elements get fresh random points; added elements are cuckoo-inserted, and an
element pushed to another slot keeps its blinded value, so only added elements are blinded. The
result is a complete table file with its own digest, logged like any other; the delta lists the
slots whose 32 bytes changed.

Delta file format (version 1), integers big-endian::

    magic        16 bytes  b"ACCORD-PM-DELTA" 0x01
    base digest  32 bytes  SHA-256 of the table it applies to
    new digest   32 bytes  SHA-256 of the table it makes
    n_changes     4 bytes
    changes      n_changes * 36 bytes: slot index (4 bytes), point (32 bytes), slot indices
                 strictly increasing

The delta's own SHA-256 is logged in the new version's entry. A client accepts a delta only if
it hashes to the logged value, and the table it makes only if that hashes to the logged table
digest (`apply_delta`); anything else is `table_delta_mismatch`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from accord.errors import AccordError, InvalidInput, NotFound, VerificationError
from accord.primitives.ristretto import Scalar, multiply_hashed_batch, random_points
from accord.protocols.detection.signals import PdqHash
from accord.protocols.private_matching.bands import BandSampler
from accord.protocols.private_matching.params import MatchingParams
from accord.protocols.private_matching.placement import (
    placement_of,
    read_placement,
    write_placement,
)
from accord.protocols.private_matching.table import (
    HASH_TO_GROUP_DST,
    POINT_BYTES,
    TABLE_HEADER_BYTES,
    Progress,
    TableBuild,
    TableDigest,
    TableSecret,
    _executor,
    _parse_header,
    cuckoo_slots,
    unique_band_elements,
)

DELTA_MAGIC = b"ACCORD-PM-DELTA\x01"
_DELTA_HEAD = struct.Struct(">16s32s32sI")
DELTA_HEADER_BYTES = _DELTA_HEAD.size
DELTA_ENTRY_BYTES = 4 + POINT_BYTES
#: A version is built from the previous one only while its elements fill at most this share of
#: the slots (a three-choice cuckoo table builds reliably below about 0.918); above, a full
#: build with a new slot count.
DELTA_MAX_LOAD = 0.90
#: A version is built from the previous one only if at most this share of the slots would hold
#: removed or added elements; a larger change gets a full build (and a fresh alpha).
DELTA_MAX_CHANGE = 0.25
#: Slots copied per step when a delta is applied, and changes read per step from a delta file.
APPLY_CHUNK_SLOTS = 1 << 20
DELTA_READ_ENTRIES = 1 << 16
#: Elements blinded per job of a worker process.
BLIND_CHUNK_ELEMENTS = 16_384
DELTA_MISMATCH = "table_delta_mismatch"
#: Slots one insertion may visit looking for a free one before the build falls back to a full one.
INSERT_MAX_VISITS = 100_000


@dataclass(frozen=True, slots=True)
class DeltaDigest:
    """SHA-256 of a delta file: the value the new version's log entry records."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes) or len(self.value) != 32:
            raise InvalidInput("a delta digest is 32 bytes")

    def hex(self) -> str:
        return self.value.hex()


@dataclass(frozen=True, slots=True)
class TableUpdate:
    """What building a version from the previous one produced."""

    table: TableBuild
    delta_digest: DeltaDigest
    delta_size: int
    changed_slots: int


@dataclass(frozen=True, slots=True)
class DeltaHeader:
    base: TableDigest
    new: TableDigest
    n_changes: int


def read_delta_header(data: bytes) -> DeltaHeader:
    """The header of a delta file (its first DELTA_HEADER_BYTES bytes)."""
    if len(data) != DELTA_HEADER_BYTES:
        raise InvalidInput("table delta too short")
    magic, base, new, n_changes = _DELTA_HEAD.unpack(data)
    if magic != DELTA_MAGIC:
        raise InvalidInput("not a table delta")
    return DeltaHeader(TableDigest(base), TableDigest(new), n_changes)


def max_delta_bytes(n_slots: int) -> int:
    """The largest delta a table of this slot count can have (every slot changed)."""
    return DELTA_HEADER_BYTES + DELTA_ENTRY_BYTES * n_slots


# --- applying (client and server) ---------------------------------------------------------------


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise InvalidInput("file shorter than announced")
    return data


def _write_changed(
    base: BinaryIO,
    out: BinaryIO,
    n_slots: int,
    blocks: Iterable[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]],
) -> None:
    """Copy the table `base` (positioned after its header) to `out`, replacing the slots each
    block names (slot indices strictly increasing across all blocks) with its points."""
    pos = 0
    none_i, none_v = np.empty(0, np.int64), np.empty((0, POINT_BYTES), np.uint8)

    def copy_until(end: int, idx: npt.NDArray[np.int64], vals: npt.NDArray[np.uint8]) -> None:
        nonlocal pos
        while pos < end:
            stop = min(end, pos + APPLY_CHUNK_SLOTS)
            raw = bytearray(_read_exact(base, (stop - pos) * POINT_BYTES))
            chunk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, POINT_BYTES)
            lo, hi = np.searchsorted(idx, [pos, stop])
            chunk[idx[lo:hi] - pos] = vals[lo:hi]
            out.write(raw)
            pos = stop

    for idx, vals in blocks:
        if idx.size:
            copy_until(int(idx[-1]) + 1, idx, vals)
    copy_until(n_slots, none_i, none_v)


def _delta_blocks(
    f: BinaryIO, n_changes: int, n_slots: int
) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]]:
    """The changes of a delta file, in blocks, refused unless every slot index is inside the
    table and larger than the one before."""
    last = -1
    for first in range(0, n_changes, DELTA_READ_ENTRIES):
        count = min(DELTA_READ_ENTRIES, n_changes - first)
        rows = np.frombuffer(_read_exact(f, count * DELTA_ENTRY_BYTES), dtype=np.uint8)
        rows = rows.reshape(-1, DELTA_ENTRY_BYTES)
        idx = np.ascontiguousarray(rows[:, :4]).view(">u4").ravel().astype(np.int64)
        if int(idx[0]) <= last or int(idx[-1]) >= n_slots or bool(np.any(np.diff(idx) <= 0)):
            raise InvalidInput("delta slot indices out of order or outside the table")
        last = int(idx[-1])
        yield idx, rows[:, 4:]


def apply_delta(
    base_path: Path,
    delta_path: Path,
    out_path: Path,
    *,
    base: TableDigest,
    new: TableDigest,
    expected_delta: DeltaDigest,
) -> None:
    """Write to `out_path` the table that the delta file makes of the table at `base_path`.

    Refused (`VerificationError`, code `table_delta_mismatch`) unless the delta file hashes to
    `expected_delta` (the logged value) and names `base` and `new`; the caller then accepts the
    result only through `BlindedTable.open_file(out_path, expected_digest=new)`, which hashes it.
    Every size and index is checked before it is used; a malformed delta is refused the same
    way."""
    try:
        with delta_path.open("rb") as f:
            actual = hashlib.file_digest(f, "sha256").digest()
            if not hmac.compare_digest(actual, expected_delta.value):
                raise VerificationError("the table delta is not the logged one")
            size = os.fstat(f.fileno()).st_size
            f.seek(0)
            head_d = read_delta_header(f.read(DELTA_HEADER_BYTES))
            n_changes = head_d.n_changes
            if not (
                hmac.compare_digest(head_d.base.value, base.value)
                and hmac.compare_digest(head_d.new.value, new.value)
            ):
                raise VerificationError("the table delta is for other tables")
            with base_path.open("rb") as b:
                header = _read_exact(b, TABLE_HEADER_BYTES)
                head = _parse_header(header, os.fstat(b.fileno()).st_size)
                if n_changes > head.n_slots or size != DELTA_HEADER_BYTES + (
                    DELTA_ENTRY_BYTES * n_changes
                ):
                    raise InvalidInput("table delta size does not match its count")
                with out_path.open("wb") as out:
                    out.write(header)
                    _write_changed(b, out, head.n_slots, _delta_blocks(f, n_changes, head.n_slots))
    except AccordError as exc:
        raise VerificationError(
            f"table delta refused: {exc.message}", code=DELTA_MISMATCH
        ) from None


def write_delta(
    path: Path,
    *,
    base: TableDigest,
    new: TableDigest,
    indices: npt.NDArray[np.int64],
    values: npt.NDArray[np.uint8],
) -> tuple[DeltaDigest, int]:
    """Write a delta file (indices strictly increasing); its digest and size."""
    rows = np.empty((indices.size, DELTA_ENTRY_BYTES), dtype=np.uint8)
    rows[:, :4] = indices.astype(">u4").view(np.uint8).reshape(-1, 4)
    rows[:, 4:] = values
    data = _DELTA_HEAD.pack(DELTA_MAGIC, base.value, new.value, indices.size) + rows.tobytes()
    path.write_bytes(data)
    return DeltaDigest(hashlib.sha256(data).digest()), len(data)


# --- building the next version (server) ---------------------------------------------------------


def _blind_elements_job(alpha: bytes, band_seed: bytes, elements: bytes, width: int) -> bytes:
    messages = (band_seed + elements[i : i + width] for i in range(0, len(elements), width))
    return multiply_hashed_batch(Scalar(alpha), messages, HASH_TO_GROUP_DST)


def insert_elements(
    candidates: Callable[[int], list[int]],
    slots: npt.NDArray[np.int64],
    waiting: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64] | None:
    """Insert the `waiting` elements into a placement (`slots`: for each slot the index of its
    element, -1 if empty; changed in place and returned), each along a shortest path of moves to
    a free slot (breadth-first over the cuckoo graph; `candidates(i)` are element i's slots): an
    element already placed moves only when a new one needs its slot, and as few move as one
    insertion at a time allows, so that few slots change. None if some element finds no free
    slot within INSERT_MAX_VISITS slots."""
    for element in waiting.tolist():
        parent: dict[int, int] = {}
        frontier: list[int] = []
        for slot in candidates(element):
            if slot not in parent:
                parent[slot] = -1
                frontier.append(slot)
        free = -1
        while frontier and free < 0 and len(parent) <= INSERT_MAX_VISITS:
            nxt: list[int] = []
            for slot in frontier:
                holder = int(slots[slot])
                if holder < 0:
                    free = slot
                    break
                for other in candidates(holder):
                    if other not in parent:
                        parent[other] = slot
                        nxt.append(other)
            frontier = nxt
        if free < 0:
            return None
        slot = free
        while parent[slot] >= 0:  # each element on the path moves one step towards the free slot
            slots[slot] = slots[parent[slot]]
            slot = parent[slot]
        slots[slot] = element
    return slots


def _row_keys(elements: npt.NDArray[np.uint8]) -> npt.NDArray[Any]:
    """One sortable key per element row, in the rows' byte order: a big-endian integer for
    elements of at most 8 bytes (much faster to search), the raw bytes otherwise."""
    width = elements.shape[1]
    if width <= 8:
        padded = np.zeros((len(elements), 8), dtype=np.uint8)
        padded[:, :width] = elements
        return padded.view(">u8").ravel().astype(np.uint64)
    return np.ascontiguousarray(elements).view(np.dtype((np.void, width))).ravel()


def update_table(
    hashes: list[PdqHash] | npt.NDArray[np.uint8],
    *,
    base_path: Path,
    base_digest: TableDigest,
    base_placement: Path,
    out_path: Path,
    delta_path: Path,
    placement_path: Path,
    params: MatchingParams,
    secret: TableSecret,
    workers: int = 1,
    progress: Progress | None = None,
) -> TableUpdate | None:
    """Build the table of `hashes` from the previous version at `base_path` (same alpha, band
    seed, cuckoo salt and slot count), write it to `out_path`, the delta to `delta_path` and the
    new placement to `placement_path`. None when the new version cannot be built this way (other
    parameters or key, no placement kept for the base, the load or the change over its cap, or
    an element found no free slot nearby): the caller then builds the whole table."""
    with base_path.open("rb") as f:
        head = _parse_header(_read_exact(f, TABLE_HEADER_BYTES), os.fstat(f.fileno()).st_size)
    if head.params != params or head.public != secret.public:
        return None
    n_slots = head.n_slots
    try:
        old = read_placement(base_placement, table_digest=base_digest.value, n_slots=n_slots)
    except NotFound:
        return None
    elements = unique_band_elements(hashes, BandSampler.create(head.band_seed, params))
    if len(elements) > DELTA_MAX_LOAD * n_slots or old.elements.shape[1] != elements.shape[1]:
        return None
    # Which old elements stay (and where), which are new.
    old_slots = old.filled_slots()
    rows, old_rows = _row_keys(elements), _row_keys(old.elements)
    found = np.minimum(np.searchsorted(rows, old_rows), max(len(rows) - 1, 0))
    kept = (rows[found] == old_rows) if len(rows) else np.zeros(len(old_rows), dtype=bool)
    before = np.full(n_slots, -1, dtype=np.int64)  # slot -> index of a kept element
    before[old_slots[kept]] = found[kept]
    is_old = np.zeros(len(elements), dtype=bool)
    is_old[found[kept]] = True
    old_slot_of = np.full(len(elements), -1, dtype=np.int64)
    old_slot_of[found[kept]] = old_slots[kept]
    waiting = np.flatnonzero(~is_old).astype(np.int64)
    removed = np.zeros(n_slots, dtype=bool)
    removed[old_slots[~kept]] = True
    if int(removed.sum()) + waiting.size > DELTA_MAX_CHANGE * n_slots:
        return None
    known: dict[int, list[int]] = {}  # the candidate slots of the elements the insertion met

    def candidates(i: int) -> list[int]:
        found = known.get(i)
        if found is None:
            found = known[i] = list(cuckoo_slots(head.cuckoo_salt, elements[i].tobytes(), n_slots))
        return found

    after = insert_elements(candidates, before.copy(), waiting)
    known.clear()
    if after is None:
        return None
    with _executor(workers) as pool:
        changed = np.flatnonzero((after != before) | removed).astype(np.int64)
        if not changed.size:  # the same elements: a full build gives the version its own digest
            return None
        holder = after[changed]
        values = np.empty((changed.size, POINT_BYTES), dtype=np.uint8)
        empty = holder < 0
        values[empty] = np.frombuffer(random_points(int(empty.sum())), dtype=np.uint8).reshape(
            -1, POINT_BYTES
        )
        moved = ~empty
        moved[moved] = is_old[holder[moved]]
        if moved.any():
            table = np.memmap(
                base_path, dtype=np.uint8, mode="r", offset=TABLE_HEADER_BYTES,
                shape=(n_slots, POINT_BYTES),
            )  # fmt: skip
            values[moved] = table[old_slot_of[holder[moved]]]
            del table
        fresh = np.flatnonzero(~empty & ~moved)
        width = elements.shape[1]
        if progress is not None:
            progress(0, fresh.size)
        jobs = [
            (
                part,
                pool.submit(
                    _blind_elements_job,
                    secret.alpha.value,
                    head.band_seed,
                    elements[holder[part]].tobytes(),
                    width,
                ),
            )
            for part in (
                fresh[i : i + BLIND_CHUNK_ELEMENTS]
                for i in range(0, fresh.size, BLIND_CHUNK_ELEMENTS)
            )
        ]
        done = 0
        for part, job in jobs:
            values[part] = np.frombuffer(job.result(), dtype=np.uint8).reshape(-1, POINT_BYTES)
            done += part.size
            if progress is not None:
                progress(done, fresh.size)
    with base_path.open("rb") as b, out_path.open("wb") as out:
        out.write(_read_exact(b, TABLE_HEADER_BYTES))
        _write_changed(b, out, n_slots, [(changed, values)])
    digest = TableDigest.of_file(out_path)
    delta_digest, delta_size = write_delta(
        delta_path, base=base_digest, new=digest, indices=changed, values=values
    )
    write_placement(placement_path, placement_of(digest.value, after, elements))
    size = TABLE_HEADER_BYTES + POINT_BYTES * n_slots
    return TableUpdate(
        table=TableBuild(digest=digest, n_slots=n_slots, n_elements=len(elements), size=size),
        delta_digest=delta_digest,
        delta_size=delta_size,
        changed_slots=int(changed.size),
    )

"""The blinded table: the server's bank, blinded, in a cuckoo table clients can download.

For every band element e of every banked PDQ hash the server computes alpha * H(e) (H is
RFC 9380 hash-to-ristretto255 with the table's seed and a domain separation tag; alpha is the
server's secret scalar) and places it in a cuckoo table with three hash functions: element e sits
in slot h_0(e), h_1(e) or h_2(e). Three choices let the table fill 88% of its slots (a
three-choice cuckoo table builds reliably below about 0.91); two would stop below 0.5. Empty
slots get random points, so the table shows how many slots there are and nothing else. Clients
never see a PDQ hash from the bank.

File format (version 2), all integers big-endian::

    magic       16 bytes  b"ACCORD-PM-TABLE" 0x02
    params      16 bytes  MatchingParams.encode()
    band_seed   32 bytes  public seed of the band positions and of H's input
    cuckoo_salt 16 bytes  public salt of the cuckoo hash functions
    public      32 bytes  alpha * G (ristretto255)
    n_slots      4 bytes
    slots       32 * n_slots bytes, each a ristretto255 point

h_c(e) = bytes 8c..8c+7 of SHA-256("accord-pm-v1 cuckoo" || salt || e), as a big-endian integer,
mod n_slots, for c = 0, 1, 2. Version 1 had the same layout with two hash functions (one
SHA-256 each) at load 0.45.

The table's digest is SHA-256 over the whole file; it is what the transparency log records, and a
client refuses a table whose digest it was not given (`BlindedTable.parse(expected_digest=...)`,
`BlindedTable.open_file`). A client reads a large table from its file one slot at a time and
touches only the slots its vouchers need.

Building (`write_table`): the band elements are computed and deduplicated with numpy, the slots
placed by a vectorised random-walk cuckoo insertion (numpy arrays, no Python object per slot),
and the blinding (one hash-to-group and one scalar multiplication per element, which is where
the time goes) runs in worker processes, each writing its range of slots into the file.
"""

from __future__ import annotations

import hashlib
import hmac
import multiprocessing
import os
import struct
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import numpy.typing as npt

from accord.errors import (
    ConfigurationError,
    InvalidInput,
    TooLarge,
    UnsupportedVersion,
    VerificationError,
)
from accord.primitives.ristretto import (
    Point,
    Scalar,
    generator_multiple,
    hash_to_group,
    multiply_hashed_batch,
    random_points,
)
from accord.protocols.detection.signals import PdqHash
from accord.protocols.private_matching.bands import BAND_SEED_BYTES, BandSampler
from accord.protocols.private_matching.params import PARAMS_BYTES, MatchingParams
from accord.protocols.private_matching.placement import placement_of, write_placement

TABLE_MAGIC = b"ACCORD-PM-TABLE\x02"
CUCKOO_SALT_BYTES = 16
TABLE_HEADER_BYTES = len(TABLE_MAGIC) + PARAMS_BYTES + BAND_SEED_BYTES + CUCKOO_SALT_BYTES + 32 + 4
POINT_BYTES = 32
#: Refuse tables larger than this many slots (4 GiB of points).
TABLE_MAX_SLOTS = 2**27
#: Candidate slots per element (cuckoo hash functions); a voucher carries one wrap per candidate.
CUCKOO_WAYS = 3
#: Share of slots holding an element. A three-choice cuckoo table with one slot per bucket
#: builds reliably below its threshold of about 0.918.
CUCKOO_LOAD_FACTOR = 0.88
#: Rounds of the parallel random walk before the placement is given up (and a new salt tried).
CUCKOO_MAX_ROUNDS = 20_000
CUCKOO_MAX_ATTEMPTS = 8
#: Slots blinded per job of a worker process.
BLIND_CHUNK_SLOTS = 32_768
#: Below this many elements a table is built in the calling process (starting worker processes
#: costs more than it saves).
PARALLEL_BUILD_MIN_ELEMENTS = 50_000
#: Elements whose cuckoo slots one job computes.
POSITION_CHUNK_ELEMENTS = 1 << 20
HASH_TO_GROUP_DST = b"accord-pm-v1 band element to ristretto255"
_CUCKOO_LABEL = b"accord-pm-v1 cuckoo"

Progress = Callable[[int, int], None]
"""Called with (slots blinded so far, all slots) while a table is built."""

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class TableDigest:
    """SHA-256 of a table file: the value the transparency log records."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes) or len(self.value) != 32:
            raise InvalidInput("a table digest is 32 bytes")

    @classmethod
    def of_file(cls, path: Path) -> TableDigest:
        """SHA-256 of a file, read in chunks (a large table never sits in memory whole)."""
        with path.open("rb") as f:
            return cls(hashlib.file_digest(f, "sha256").digest())

    def hex(self) -> str:
        return self.value.hex()


@dataclass(frozen=True, slots=True)
class TableSecret:
    """The server's blinding scalar alpha for one table version."""

    alpha: Scalar

    @classmethod
    def generate(cls) -> TableSecret:
        return cls(Scalar.random())

    @property
    def public(self) -> Point:
        return generator_multiple(self.alpha)

    def __repr__(self) -> str:
        return "TableSecret(...)"


def band_point(band_seed: bytes, element: bytes) -> Point:
    """H(e): hash-to-group of the element, bound to the table's seed."""
    return hash_to_group(band_seed + element, HASH_TO_GROUP_DST)


def cuckoo_slots(cuckoo_salt: bytes, element: bytes, n_slots: int) -> tuple[int, ...]:
    """The element's candidate slots h_0(e), ..., h_{CUCKOO_WAYS-1}(e)."""
    digest = hashlib.sha256(_CUCKOO_LABEL + cuckoo_salt + element).digest()
    return tuple(
        int.from_bytes(digest[8 * c : 8 * c + 8], "big") % n_slots for c in range(CUCKOO_WAYS)
    )


def cuckoo_positions(
    cuckoo_salt: bytes, elements: npt.NDArray[np.uint8], n_slots: int
) -> npt.NDArray[np.int64]:
    """`cuckoo_slots` of every row of an (n, width) element array: an (n, CUCKOO_WAYS) array."""
    prefix = hashlib.sha256(_CUCKOO_LABEL + cuckoo_salt)
    flat, width = elements.tobytes(), elements.shape[1]

    def digest(element: bytes) -> bytes:
        h = prefix.copy()
        h.update(element)
        return h.digest()[: 8 * CUCKOO_WAYS]

    words = b"".join(digest(flat[i : i + width]) for i in range(0, len(flat), width))
    grid = np.frombuffer(words, dtype=">u8").reshape(-1, CUCKOO_WAYS)
    return (grid % np.uint64(n_slots)).astype(np.int64)


def slot_count_for(n_elements: int) -> int:
    return max(8, int(n_elements / CUCKOO_LOAD_FACTOR) + 1)


def place_elements(
    positions: npt.NDArray[np.int64], n_slots: int, seed: int
) -> npt.NDArray[np.int64] | None:
    """Cuckoo placement of elements given their candidate slots (`cuckoo_positions`): for each
    slot the index of the element it holds (-1 if empty), or None if the walk did not settle.

    Random-walk insertion run for all waiting elements at once: each takes a free candidate slot
    if it has one (the lowest index wins a slot several want); otherwise it takes a random
    candidate other than the slot it was just pushed out of, and the element there waits next."""
    rng = np.random.default_rng(seed)
    slots = np.full(n_slots, -1, dtype=np.int64)
    claim = np.full(n_slots, -1, dtype=np.int64)  # scratch: which waiting element wins a slot
    came_from = np.full(len(positions), -1, dtype=np.int64)
    waiting = np.arange(len(positions), dtype=np.int64)

    def one_per_slot(target: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Indices into `target` of one claimant per distinct slot (no sort: the last write to
        a slot wins)."""
        order = np.arange(target.size, dtype=np.int64)
        claim[target] = order
        return np.flatnonzero(claim[target] == order)

    for _round in range(CUCKOO_MAX_ROUNDS):
        for c in range(CUCKOO_WAYS):
            if not waiting.size:
                return slots
            target = positions[waiting, c]
            free = np.flatnonzero(slots[target] == -1)
            if free.size:
                winners = free[one_per_slot(target[free])]
                slots[target[winners]] = waiting[winners]
                keep = np.ones(waiting.size, dtype=bool)
                keep[winners] = False
                waiting = waiting[keep]
        if not waiting.size:
            return slots
        choice = rng.integers(0, CUCKOO_WAYS, size=waiting.size)
        back = positions[waiting, choice] == came_from[waiting]
        if back.any():
            step = rng.integers(1, CUCKOO_WAYS, size=int(back.sum()))
            choice[back] = (choice[back] + step) % CUCKOO_WAYS
        target = positions[waiting, choice]
        first = one_per_slot(target)
        taken = target[first]
        pushed_out = slots[taken]
        slots[taken] = waiting[first]
        moved = pushed_out >= 0
        came_from[pushed_out[moved]] = taken[moved]
        keep = np.ones(waiting.size, dtype=bool)
        keep[first] = False
        waiting = np.concatenate([waiting[keep], pushed_out[moved]])
    return None


def _table_header(
    params: MatchingParams, band_seed: bytes, cuckoo_salt: bytes, public: Point, n_slots: int
) -> bytes:
    return (
        TABLE_MAGIC
        + params.encode()
        + band_seed
        + cuckoo_salt
        + public.value
        + struct.pack(">I", n_slots)
    )


class SlotFile:
    """The slots of a table file, read on demand with `pread` (no memory map: on a kernel that
    maps page-cache folios whole, a handful of random lookups in a mapped file made the whole
    file resident; measured in docs/benchmarks.md)."""

    def __init__(self, file: BinaryIO, offset: int, length: int) -> None:
        self._file = file
        self._offset = offset
        self._length = length

    def __len__(self) -> int:
        return self._length

    def read(self, start: int, count: int) -> bytes:
        if not 0 <= start <= start + count <= self._length:
            raise InvalidInput("slot outside the table")
        data = os.pread(self._file.fileno(), count, self._offset + start)
        if len(data) != count:
            raise InvalidInput("table file shorter than its slot count")
        return data

    def __bytes__(self) -> bytes:
        return self.read(0, self._length)


@dataclass(frozen=True, slots=True)
class _Header:
    params: MatchingParams
    band_seed: bytes
    cuckoo_salt: bytes
    public: Point
    n_slots: int

    def with_slots(
        self, slot_bytes: bytes | SlotFile, verified_digest: TableDigest | None = None
    ) -> BlindedTable:
        return BlindedTable(
            params=self.params,
            band_seed=self.band_seed,
            cuckoo_salt=self.cuckoo_salt,
            public=self.public,
            n_slots=self.n_slots,
            slot_bytes=slot_bytes,
            verified_digest=verified_digest,
        )


def _parse_header(header: bytes, total_bytes: int) -> _Header:
    """The header's fields, after checking that the file's size matches its slot count."""
    if len(header) < TABLE_HEADER_BYTES or total_bytes < TABLE_HEADER_BYTES:
        raise InvalidInput("table file too short")
    if header[: len(TABLE_MAGIC) - 1] != TABLE_MAGIC[:-1]:
        raise InvalidInput("not a private-matching table file")
    if header[len(TABLE_MAGIC) - 1] != TABLE_MAGIC[-1]:
        raise UnsupportedVersion("unsupported table format version")
    off = len(TABLE_MAGIC)
    params = MatchingParams.decode(header[off : off + PARAMS_BYTES])
    off += PARAMS_BYTES
    band_seed = header[off : off + BAND_SEED_BYTES]
    off += BAND_SEED_BYTES
    salt = header[off : off + CUCKOO_SALT_BYTES]
    off += CUCKOO_SALT_BYTES
    public = Point(header[off : off + 32])
    off += 32
    (n_slots,) = struct.unpack(">I", header[off : off + 4])
    if not 1 <= n_slots <= TABLE_MAX_SLOTS:
        raise TooLarge("table slot count out of limits")
    if total_bytes != TABLE_HEADER_BYTES + POINT_BYTES * n_slots:
        raise InvalidInput("table file size does not match its slot count")
    return _Header(params, bytes(band_seed), bytes(salt), public, n_slots)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlindedTable:
    params: MatchingParams
    band_seed: bytes
    cuckoo_salt: bytes
    public: Point
    n_slots: int
    slot_bytes: bytes | SlotFile = field(repr=False)
    """The slots: bytes, or the table file they are read from one at a time (`open_file`)."""
    verified_digest: TableDigest | None = field(default=None, repr=False, compare=False)
    """The file's digest when it was checked on opening (so it is not hashed again)."""

    def __post_init__(self) -> None:
        if len(self.band_seed) != BAND_SEED_BYTES or len(self.cuckoo_salt) != CUCKOO_SALT_BYTES:
            raise InvalidInput("malformed table seed or salt")
        if not 1 <= self.n_slots <= TABLE_MAX_SLOTS:
            raise TooLarge("table slot count out of limits")
        if len(self.slot_bytes) != POINT_BYTES * self.n_slots:
            raise InvalidInput("table slots do not match the slot count")

    def header(self) -> bytes:
        return _table_header(
            self.params, self.band_seed, self.cuckoo_salt, self.public, self.n_slots
        )

    def encode(self) -> bytes:
        return self.header() + bytes(self.slot_bytes)

    def digest(self) -> TableDigest:
        if self.verified_digest is not None:
            return self.verified_digest
        h = hashlib.sha256(self.header())
        h.update(bytes(self.slot_bytes))
        return TableDigest(h.digest())

    def sampler(self) -> BandSampler:
        return BandSampler.create(self.band_seed, self.params)

    def slot(self, index: int) -> Point:
        """The point in one slot, validated (a bad point in a logged table is refused here)."""
        start = POINT_BYTES * index
        if isinstance(self.slot_bytes, SlotFile):
            return Point(self.slot_bytes.read(start, POINT_BYTES))
        return Point(self.slot_bytes[start : start + POINT_BYTES])

    def slots_for(self, element: bytes) -> tuple[int, ...]:
        return cuckoo_slots(self.cuckoo_salt, element, self.n_slots)

    @classmethod
    def parse(cls, data: bytes, *, expected_digest: TableDigest) -> BlindedTable:
        """Parse a table file, refusing it unless its SHA-256 is `expected_digest` (the logged
        value). Sizes are checked before anything else; slot points are validated on use."""
        if len(data) < TABLE_HEADER_BYTES:
            raise InvalidInput("table file too short")
        if not hmac.compare_digest(hashlib.sha256(data).digest(), expected_digest.value):
            raise VerificationError("table digest does not match the logged digest")
        head = _parse_header(data[:TABLE_HEADER_BYTES], len(data))
        return head.with_slots(bytes(data[TABLE_HEADER_BYTES:]))

    @classmethod
    def open_file(cls, path: Path, *, expected_digest: TableDigest) -> BlindedTable:
        """A table file, refused unless its SHA-256 is `expected_digest`. The file is hashed by
        reading it in chunks, then kept open: a voucher reads only the slots it looks up
        (`pread`), so the table never becomes resident memory of this process."""
        f = path.open("rb", buffering=0)
        try:
            size = os.fstat(f.fileno()).st_size
            head = _parse_header(f.read(TABLE_HEADER_BYTES), size)
            f.seek(0)
            actual = hashlib.file_digest(f, "sha256").digest()
            if not hmac.compare_digest(actual, expected_digest.value):
                raise VerificationError("table digest does not match the logged digest")
        except BaseException:
            f.close()
            raise
        slots = SlotFile(f, TABLE_HEADER_BYTES, size - TABLE_HEADER_BYTES)
        return head.with_slots(slots, expected_digest)


def _hash_array(hashes: Sequence[PdqHash] | npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if isinstance(hashes, np.ndarray):
        return hashes
    arr = np.array([np.frombuffer(h.value, dtype=np.uint8) for h in hashes], dtype=np.uint8)
    return arr.reshape(-1, 32)


def unique_band_elements(
    hashes: Sequence[PdqHash] | npt.NDArray[np.uint8], sampler: BandSampler
) -> npt.NDArray[np.uint8]:
    """All distinct band elements of the hashes, in a canonical (sorted) order: an (n, width)
    byte array, one element per row."""
    width = sampler.element_bytes
    arr = _hash_array(hashes)
    if not len(arr):
        return np.empty((0, width), dtype=np.uint8)
    stacked = np.concatenate(sampler.elements_batch(arr))
    if width <= 8:  # sort as big-endian integers: the same order as the bytes
        padded = np.zeros((len(stacked), 8), dtype=np.uint8)
        padded[:, :width] = stacked
        keys = np.sort(padded.view(">u8").ravel().astype(np.uint64))
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))].astype(">u8")
        return np.ascontiguousarray(keys.view(np.uint8).reshape(-1, 8)[:, :width])
    return distinct_rows(stacked)


def distinct_rows(rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The distinct rows of an (n, width) byte array, sorted as bytes (by sorting, which is much
    faster here than `np.unique` on millions of rows)."""
    width = rows.shape[1]
    keys = np.sort(np.ascontiguousarray(rows).view(np.dtype((np.void, width))).ravel())
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if keys.size else keys
    return keys.view(np.uint8).reshape(-1, width)


class _InlineExecutor(Executor):
    """Runs each job at once in this process (a build with one worker)."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        future: Future[_T] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


@contextmanager
def _executor(workers: int) -> Iterator[Executor]:
    if workers <= 1:
        yield _InlineExecutor()
        return
    # spawn, not fork: the server process has threads
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield pool


def build_workers(n_hashes: int, params: MatchingParams) -> int:
    """Worker processes worth starting for a bank of this size: one per core, or none (1) for a
    small bank."""
    if n_hashes * params.band_count < PARALLEL_BUILD_MIN_ELEMENTS:
        return 1
    return os.cpu_count() or 1


def _positions_job(salt: bytes, elements: npt.NDArray[np.uint8], n_slots: int) -> Any:
    return cuckoo_positions(salt, elements, n_slots)


def _blind_job(
    path: str,
    first_slot: int,
    elements: bytes,
    width: int,
    filled: bytes,
    alpha: bytes,
    band_seed: bytes,
) -> int:
    """Worker: the points of slots first_slot.. (alpha * H(e) where `filled`, random points
    elsewhere), written to their place in the table file. Returns the number of slots."""
    mask = np.frombuffer(filled, dtype=np.bool_)
    messages = (band_seed + elements[i : i + width] for i in range(0, len(elements), width))
    blinded = multiply_hashed_batch(Scalar(alpha), messages, HASH_TO_GROUP_DST)
    out = np.empty((mask.size, POINT_BYTES), dtype=np.uint8)
    out[mask] = np.frombuffer(blinded, dtype=np.uint8).reshape(-1, POINT_BYTES)
    fill = random_points(int(mask.size - np.count_nonzero(mask)))
    out[~mask] = np.frombuffer(fill, dtype=np.uint8).reshape(-1, POINT_BYTES)
    with open(path, "r+b") as f:
        f.seek(TABLE_HEADER_BYTES + POINT_BYTES * first_slot)
        f.write(out.tobytes())
    return int(mask.size)


@dataclass(frozen=True, slots=True)
class TableBuild:
    """What building a table file produced."""

    digest: TableDigest
    n_slots: int
    n_elements: int
    size: int


def write_table(
    hashes: Sequence[PdqHash] | npt.NDArray[np.uint8],
    path: Path,
    *,
    params: MatchingParams,
    secret: TableSecret,
    band_seed: bytes | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    placement_path: Path | None = None,
) -> TableBuild:
    """Blind every band element of `hashes`, place it, fill the rest with random points, and
    write the table file to `path`; `workers` processes share the work (1: this process).
    With `placement_path`, also write which element went to which slot there (private to the
    server: `placement.py`), so that the next version can be built from this one."""
    seed = band_seed if band_seed is not None else os.urandom(BAND_SEED_BYTES)
    elements = unique_band_elements(hashes, BandSampler.create(seed, params))
    n_slots = slot_count_for(len(elements))
    if n_slots > TABLE_MAX_SLOTS:
        raise TooLarge("bank too large for one table")
    width = elements.shape[1]
    with _executor(workers) as pool:
        for _attempt in range(CUCKOO_MAX_ATTEMPTS):
            salt = os.urandom(CUCKOO_SALT_BYTES)
            parts = [
                pool.submit(
                    _positions_job, salt, elements[i : i + POSITION_CHUNK_ELEMENTS], n_slots
                )
                for i in range(0, len(elements), POSITION_CHUNK_ELEMENTS)
            ]
            positions = np.concatenate(
                [p.result() for p in parts] or [np.empty((0, CUCKOO_WAYS), dtype=np.int64)]
            )
            placement = place_elements(positions, n_slots, int.from_bytes(salt, "big"))
            if placement is not None:
                break
        else:  # pragma: no cover - vanishingly unlikely below the load threshold
            raise ConfigurationError("cuckoo table could not be built")
        del positions
        header = _table_header(params, seed, salt, secret.public, n_slots)
        with path.open("wb") as f:
            f.write(header)
            f.truncate(len(header) + POINT_BYTES * n_slots)
        if progress is not None:
            progress(0, n_slots)  # placed; blinding starts
        jobs = []
        for start in range(0, n_slots, BLIND_CHUNK_SLOTS):
            part = placement[start : start + BLIND_CHUNK_SLOTS]
            mask = part >= 0
            jobs.append(
                pool.submit(
                    _blind_job,
                    str(path),
                    start,
                    elements[part[mask]].tobytes(),
                    width,
                    mask.tobytes(),
                    secret.alpha.value,
                    seed,
                )
            )
        done = 0
        for job in as_completed(jobs):
            done += job.result()
            if progress is not None:
                progress(done, n_slots)
    digest = TableDigest.of_file(path)
    if placement_path is not None:
        write_placement(placement_path, placement_of(digest.value, placement, elements))
    return TableBuild(
        digest=digest,
        n_slots=n_slots,
        n_elements=len(elements),
        size=len(header) + POINT_BYTES * n_slots,
    )


def build_table(
    hashes: Sequence[PdqHash] | npt.NDArray[np.uint8],
    *,
    params: MatchingParams,
    secret: TableSecret,
    band_seed: bytes | None = None,
) -> BlindedTable:
    """A table in memory (small banks: tests and benchmarks); `write_table` for a file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table"
        built = write_table(hashes, path, params=params, secret=secret, band_seed=band_seed)
        return BlindedTable.parse(path.read_bytes(), expected_digest=built.digest)

"""Hash indexes: given query hashes, find banked entries within a distance.

`HashIndex` is the interface (one per signal family, as python-threatexchange's
`SignalTypeIndex`); implementations say how they search:

- `LinearPdqIndex`: the reference. Every query is compared with every entry (numpy popcount).
- `MihPdqIndex`: multi-index hashing (Norouzi, Punjani and Fleet, "Fast search in Hamming space
  with multi-index hashing", CVPR 2012). The 256 bits are cut into m substrings; if two
  hashes are within distance r, then by the pigeonhole principle at least one substring differs
  in at most floor(r / m) bits. Each substring has a table (entries sorted by substring value,
  with a direct-address offset array), so a query looks up every substring value within that
  small radius and checks the few candidates found at full length. The result is exact: the
  same matches as the linear scan for every threshold up to the one the index was built for
  (larger thresholds fall back to a scan). Building and searching run in compiled code
  (`index_kernels.py`, numba) on a thread pool with one thread per core.
- `ExactHashIndex`: MD5 / SHA-256 equality, with sorted arrays.

Indexes grow without a full rebuild: new entries go to a small linear "tail" that becomes a
segment when full, and segments of similar size are merged (as in a log-structured merge tree),
so each entry is re-indexed O(log n) times in all. Disabling an entry only marks it.

Persisted indexes use a small self-describing binary format (JSON header, then raw little-endian
arrays read with `numpy.frombuffer`). Nothing is unpickled: a bank comes from a third party, and
a crafted index file can at worst be rejected, never run code. Derived tables are rebuilt on load.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from typing import Any, BinaryIO, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from accord.errors import InvalidInput
from accord.protocols.detection.signals import (
    PDQ_HASH_BITS,
    PDQ_MATCH_THRESHOLD_BITS,
    Md5Hash,
    PdqHash,
    Sha256Hash,
)

U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

#: New entries are scanned linearly until this many have accumulated, then indexed.
TAIL_MAX_ENTRIES = 4096
#: Queries are processed in chunks of this many (bounds temporary memory).
QUERY_CHUNK = 4096
#: Substring keys are at most this many bits (offset tables of 2**bits int32 values).
MIH_MAX_KEY_BITS = 24
#: Brute-force scans of at most this many (query, entry) pairs run in numpy, not compiled code.
SMALL_SCAN_PAIRS = 1 << 20

_MAGIC = b"ACCORD-HASH-INDEX\n"
_FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 1 << 16
_ALLOWED_DTYPES: dict[str, np.dtype[Any]] = {
    "<u8": np.dtype("<u8"),
    "<i8": np.dtype("<i8"),
    "|u1": np.dtype("|u1"),
}


@dataclass(frozen=True, slots=True)
class IndexMatch:
    """One hit: which entry (the id given to `add`) and at what distance (0 for exact)."""

    entry_id: int
    distance: int


@dataclass(frozen=True, slots=True)
class BatchMatches:
    """Matches of a batch as parallel arrays: query position, entry id, distance."""

    query: I64
    entry_id: I64
    distance: I64

    def per_query(self, n_queries: int) -> list[list[IndexMatch]]:
        out: list[list[IndexMatch]] = [[] for _ in range(n_queries)]
        order = np.lexsort((self.entry_id, self.distance, self.query))
        for i in order.tolist():
            out[int(self.query[i])].append(IndexMatch(int(self.entry_id[i]), int(self.distance[i])))
        return out


H = TypeVar("H")


class HashIndex(ABC, Generic[H]):
    """Maps hashes to integer entry ids and finds the ids near a query hash."""

    #: Signal type name this index holds ("pdq", "md5", "sha256").
    signal_type: str
    #: Format tag in persisted files.
    kind: str

    def __init__(self) -> None:
        self._disabled: set[int] = set()
        self._disabled_array: I64 | None = np.zeros(0, dtype=np.int64)

    @abstractmethod
    def add(self, hashes: Sequence[H], ids: Sequence[int]) -> None:
        """Index `hashes[i]` under `ids[i]`. Ids need not be unique or ordered."""

    @abstractmethod
    def query(self, hashes: Sequence[H], threshold: int) -> list[list[IndexMatch]]:
        """For each query hash, the enabled entries within `threshold`, nearest first."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of indexed hashes, disabled ones included."""

    def set_enabled(self, ids: Iterable[int], enabled: bool) -> None:
        """Disable (or enable again) entries by id; no rebuild."""
        if enabled:
            self._disabled.difference_update(int(i) for i in ids)
        else:
            self._disabled.update(int(i) for i in ids)
        self._disabled_array = None

    def disabled_ids(self) -> set[int]:
        return set(self._disabled)

    def _filter_disabled(self, matches: BatchMatches) -> BatchMatches:
        if not self._disabled or len(matches.entry_id) == 0:
            return matches
        if self._disabled_array is None:
            self._disabled_array = np.array(sorted(self._disabled), dtype=np.int64)
        keep = ~np.isin(matches.entry_id, self._disabled_array)
        return BatchMatches(matches.query[keep], matches.entry_id[keep], matches.distance[keep])

    # -- persistence -------------------------------------------------------------------------

    @abstractmethod
    def _arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The arrays that define this index's content."""

    @abstractmethod
    def _params(self) -> dict[str, int]:
        """Scalar parameters needed to rebuild it."""

    def serialize(self, out: BinaryIO) -> None:
        """Write the index in the pickle-free format described in the module docstring."""
        arrays = dict(self._arrays())
        arrays["disabled"] = np.array(sorted(self._disabled), dtype="<i8")
        header = {
            "version": _FORMAT_VERSION,
            "kind": self.kind,
            "params": self._params(),
            "arrays": [
                {"name": name, "dtype": a.dtype.str, "shape": list(a.shape)}
                for name, a in arrays.items()
            ],
        }
        blob = json.dumps(header, sort_keys=True).encode()
        out.write(_MAGIC)
        out.write(struct.pack("<I", len(blob)))
        out.write(blob)
        for a in arrays.values():
            out.write(np.ascontiguousarray(a).tobytes())

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.serialize(buf)
        return buf.getvalue()


def read_index(inp: BinaryIO, *, max_bytes: int = 1 << 34) -> PdqHashIndex | ExactHashIndex:
    """Read an index written by `HashIndex.serialize`; raise `InvalidInput` if malformed."""
    magic = inp.read(len(_MAGIC))
    if magic != _MAGIC:
        raise InvalidInput("not an Accord hash index file")
    (n,) = struct.unpack("<I", _read_exact(inp, 4))
    if n > _MAX_HEADER_BYTES:
        raise InvalidInput("hash index header too large")
    try:
        header = json.loads(_read_exact(inp, n))
        kind = str(header["kind"])
        version = int(header["version"])
        params = {str(k): int(v) for k, v in dict(header["params"]).items()}
        specs = [
            (str(s["name"]), str(s["dtype"]), [int(x) for x in s["shape"]])
            for s in header["arrays"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidInput("malformed hash index header") from None
    if version != _FORMAT_VERSION:
        raise InvalidInput("unsupported hash index version")
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    total = 0
    for name, dtype_str, shape in specs:
        dtype = _ALLOWED_DTYPES.get(dtype_str)
        if dtype is None or any(d < 0 for d in shape) or len(shape) > 2:
            raise InvalidInput("malformed hash index array")
        count = math.prod(shape)
        size = count * dtype.itemsize
        total += size
        if total > max_bytes:
            raise InvalidInput("hash index file too large")
        arrays[name] = np.frombuffer(_read_exact(inp, size), dtype=dtype).reshape(shape)
    disabled = arrays.pop("disabled", np.zeros(0, dtype="<i8"))
    index: PdqHashIndex | ExactHashIndex
    if kind in (LinearPdqIndex.kind, MihPdqIndex.kind):
        codes, ids = arrays.get("codes"), arrays.get("ids")
        if codes is None or ids is None or codes.dtype != np.uint8 or codes.ndim != 2:
            raise InvalidInput("malformed hash index arrays")
        if codes.shape[1] != 32 or ids.shape != (codes.shape[0],) or ids.dtype != np.int64:
            raise InvalidInput("malformed hash index arrays")
        if kind == MihPdqIndex.kind:
            index = MihPdqIndex(max_distance=params.get("max_distance", PDQ_MATCH_THRESHOLD_BITS))
        else:
            index = LinearPdqIndex()
        index.add_codes(np.array(codes), np.array(ids, dtype=np.int64))
    elif kind in ("md5-exact", "sha256-exact"):
        keys, ids = arrays.get("keys"), arrays.get("ids")
        width = 16 if kind == "md5-exact" else 32
        if keys is None or ids is None or keys.dtype != np.uint8 or keys.ndim != 2:
            raise InvalidInput("malformed hash index arrays")
        if keys.shape[1] != width or ids.shape != (keys.shape[0],) or ids.dtype != np.int64:
            raise InvalidInput("malformed hash index arrays")
        index = ExactHashIndex("md5" if width == 16 else "sha256")
        index.add_keys(np.array(keys), np.array(ids, dtype=np.int64))
    else:
        raise InvalidInput("unknown hash index kind")
    if disabled.ndim != 1 or disabled.dtype != np.int64:
        raise InvalidInput("malformed hash index arrays")
    index.set_enabled(disabled.tolist(), False)
    return index


def _read_exact(inp: BinaryIO, n: int) -> bytes:
    data = inp.read(n)
    if len(data) != n:
        raise InvalidInput("hash index file is truncated")
    return data


# -- PDQ ---------------------------------------------------------------------------------------


def pdq_codes(hashes: Sequence[PdqHash]) -> U8:
    """Hashes as an (n, 32) uint8 array."""
    if not hashes:
        return np.zeros((0, 32), dtype=np.uint8)
    return np.frombuffer(b"".join(h.value for h in hashes), dtype=np.uint8).reshape(-1, 32)


def _words(codes: U8) -> U64:
    """(n, 32) bytes -> (n, 4) uint64 with hash bit 0 as the top bit of word 0."""
    return np.ascontiguousarray(codes).view(">u8").astype(np.uint64)


def _codes_from_words(words: U64) -> U8:
    return np.ascontiguousarray(words.astype(">u8")).view(np.uint8).reshape(-1, 32)


def _check_threshold(threshold: int) -> int:
    if not 0 <= threshold <= PDQ_HASH_BITS:
        raise InvalidInput("a PDQ threshold is between 0 and 256 bits")
    return int(threshold)


class PdqHashIndex(HashIndex[PdqHash]):
    """Common code of PDQ indexes: batch queries over raw (n, 32) uint8 code arrays."""

    signal_type = "pdq"

    def add(self, hashes: Sequence[PdqHash], ids: Sequence[int]) -> None:
        if len(hashes) != len(ids):
            raise InvalidInput("one id per hash")
        self.add_codes(pdq_codes(hashes), np.asarray(ids, dtype=np.int64).reshape(-1))

    @abstractmethod
    def add_codes(self, codes: U8, ids: I64) -> None:
        """Add an (n, 32) uint8 array of hashes with their ids."""

    @abstractmethod
    def _search(self, queries: U64, threshold: int) -> BatchMatches:
        """All (query, entry, distance) with distance <= threshold, disabled ones included."""

    def query_codes(self, codes: U8, threshold: int = PDQ_MATCH_THRESHOLD_BITS) -> BatchMatches:
        """Batch query: an (q, 32) uint8 array in, parallel match arrays out (deduplicated)."""
        threshold = _check_threshold(threshold)
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, 32)
        parts = []
        for start in range(0, len(codes), QUERY_CHUNK):
            chunk = _words(codes[start : start + QUERY_CHUNK])
            found = self._search(chunk, threshold)
            parts.append(BatchMatches(found.query + start, found.entry_id, found.distance))
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return BatchMatches(empty, empty, empty)
        merged = BatchMatches(
            np.concatenate([p.query for p in parts]),
            np.concatenate([p.entry_id for p in parts]),
            np.concatenate([p.distance for p in parts]),
        )
        return self._filter_disabled(merged)

    def query(self, hashes: Sequence[PdqHash], threshold: int) -> list[list[IndexMatch]]:
        return self.query_codes(pdq_codes(hashes), threshold).per_query(len(hashes))


class LinearPdqIndex(PdqHashIndex):
    """Reference implementation: compares every query with every entry (numpy popcount)."""

    kind = "pdq-linear"
    _SCAN_BLOCK = 1 << 20

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[tuple[U8, I64]] = []
        self._codes: U8 = np.zeros((0, 32), dtype=np.uint8)
        self._words: U64 = np.zeros((0, 4), dtype=np.uint64)
        self._ids: I64 = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(len(self._ids)) + sum(len(i) for _, i in self._parts)

    def add_codes(self, codes: U8, ids: I64) -> None:
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, 32)
        if len(codes) != len(ids):
            raise InvalidInput("one id per hash")
        self._parts.append((codes.copy(), np.asarray(ids, dtype=np.int64).copy()))

    def _consolidate(self) -> None:
        if self._parts:
            self._codes = np.concatenate([self._codes] + [c for c, _ in self._parts])
            self._ids = np.concatenate([self._ids] + [i for _, i in self._parts])
            self._words = _words(self._codes)
            self._parts = []

    def _search(self, queries: U64, threshold: int) -> BatchMatches:
        self._consolidate()
        return _scan(self._words, self._ids, queries, threshold, self._SCAN_BLOCK)

    def _arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        self._consolidate()
        return {"codes": self._codes, "ids": self._ids.astype("<i8")}

    def _params(self) -> dict[str, int]:
        return {}


def _scan(words: U64, ids: I64, queries: U64, threshold: int, block: int) -> BatchMatches:
    """Brute force: every query against every row of `words`."""
    qs, es, ds = [], [], []
    n = len(words)
    for qi in range(len(queries)):
        q = queries[qi]
        for start in range(0, n, block):
            d = np.bitwise_count(words[start : start + block] ^ q).sum(axis=1, dtype=np.int64)
            hit = np.flatnonzero(d <= threshold)
            if len(hit):
                qs.append(np.full(len(hit), qi, dtype=np.int64))
                es.append(ids[start + hit])
                ds.append(d[hit])
    if not qs:
        empty = np.zeros(0, dtype=np.int64)
        return BatchMatches(empty, empty, empty)
    return BatchMatches(np.concatenate(qs), np.concatenate(es), np.concatenate(ds))


#: Queries per block handed to one thread; matches kept per query before a search is redone.
_BLOCK_QUERIES = 64
_FIRST_CAP = 16
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _kernels() -> Any:
    """The compiled kernels, imported on first use (numba takes a while to import)."""
    from accord.protocols.detection import index_kernels

    return index_kernels


def _forget_pool() -> None:
    global _POOL
    _POOL = None  # a forked child has none of its parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool() -> ThreadPoolExecutor:
    """One thread per core this process may run on; the kernels release the GIL."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            _POOL = ThreadPoolExecutor(
                max_workers=workers or os.cpu_count() or 1, thread_name_prefix="pdq-index"
            )
        return _POOL


SearchBlock = Callable[[U64, I64, I32, I64], None]


def _run_search(search_block: SearchBlock, queries: U64, ids: I64) -> BatchMatches:
    """Run a kernel over blocks of queries on the pool; redo queries that overflowed."""
    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    rows, dist, counts = _search_blocks(search_block, queries, _FIRST_CAP)
    over = np.flatnonzero(counts > _FIRST_CAP)
    if len(over):
        more_rows, more_dist, more_counts = _search_blocks(
            search_block, np.ascontiguousarray(queries[over]), int(counts[over].max())
        )
        cap = more_rows.shape[1]
        rows = np.pad(rows, ((0, 0), (0, cap - _FIRST_CAP)))
        dist = np.pad(dist, ((0, 0), (0, cap - _FIRST_CAP)))
        rows[over], dist[over], counts[over] = more_rows, more_dist, more_counts
    keep = np.arange(rows.shape[1])[None, :] < counts[:, None]
    qidx = np.repeat(np.arange(len(queries), dtype=np.int64), counts)
    return BatchMatches(qidx, ids[rows[keep]], dist[keep].astype(np.int64))


def _search_blocks(search_block: SearchBlock, queries: U64, cap: int) -> tuple[I64, I32, I64]:
    n = len(queries)
    rows = np.zeros((n, cap), dtype=np.int64)
    dist = np.zeros((n, cap), dtype=np.int32)
    counts = np.zeros(n, dtype=np.int64)

    def run(start: int) -> None:
        end = start + _BLOCK_QUERIES
        search_block(queries[start:end], rows[start:end], dist[start:end], counts[start:end])

    starts = range(0, n, _BLOCK_QUERIES)
    if len(starts) == 1:
        run(0)  # one block: no hand-over to the pool
    else:
        list(_pool().map(run, starts))
    return rows, dist, counts


def _scan_batch(words: U64, ids: I64, queries: U64, threshold: int) -> BatchMatches:
    """Brute force (segments too small for tables, thresholds above them, the tail).

    Small scans stay in numpy, so that a command matching against a small bank does not pay
    for loading the compiled code.
    """
    if len(words) * len(queries) <= SMALL_SCAN_PAIRS:
        return _scan(words, ids, queries, threshold, 1 << 20)
    kernels = _kernels()

    def search_block(block: U64, out_row: I64, out_dist: I32, counts: I64) -> None:
        kernels.search_scan(words, block, threshold, out_row, out_dist, counts)

    return _run_search(search_block, queries, ids)


@dataclass(frozen=True, slots=True)
class _Layout:
    """How a segment cuts the 256 bits: substring starts and key widths, and probe radius."""

    starts: tuple[int, ...]
    key_bits: tuple[int, ...]
    radius: int


def _ball_size(bits: int, radius: int) -> int:
    return sum(math.comb(bits, k) for k in range(radius + 1))


def _probe_radii(layout: _Layout, threshold: int, n: int) -> I64:
    """How far to probe each table so that every hash within `threshold` is found.

    Generalised pigeonhole: if substring i is probed within r_i and sum(r_i + 1) > threshold,
    a hash within `threshold` differs in some substring i by at most r_i bits. Starting from the
    layout's radius everywhere, radii are lowered one at a time, each time where it saves the
    most expected work (probes, and the candidates they find), while the sum stays large enough:
    at 31 bits with 11 substrings, one table is probed within 1 bit instead of 2. A radius of -1
    leaves a table out (at distance 0 one table suffices).
    """
    radii = [layout.radius] * len(layout.starts)
    while sum(r + 1 for r in radii) - 1 > threshold:

        def saving(t: int) -> float:
            bits, r = layout.key_bits[t], radii[t]
            if r < 0:
                return -math.inf
            return math.comb(bits, r) * (1.0 + 1.5 * n / 2.0**bits)

        best = max(range(len(radii)), key=saving)
        radii[best] -= 1
    return np.array(radii, dtype=np.int64)


def _choose_layout(n: int, max_distance: int) -> _Layout | None:
    """Pick the substring count that minimises the expected work per query (None: scan)."""
    best: tuple[float, _Layout | None] = (0.05 * n, None)  # cost of a vectorised linear scan
    cap = max(8, min(MIH_MAX_KEY_BITS, math.ceil(math.log2(max(n, 2))) + 1))
    for radius in range(0, 4):
        m = max_distance // (radius + 1) + 1  # pigeonhole: m * (radius + 1) > max_distance
        if m > 32:
            continue
        lengths = [PDQ_HASH_BITS // m + (1 if i < PDQ_HASH_BITS % m else 0) for i in range(m)]
        key_bits = [min(length, cap) for length in lengths]
        probes = sum(_ball_size(k, radius) for k in key_bits)
        candidates = sum(_ball_size(k, radius) * n / 2.0**k for k in key_bits)
        cost = 1.0 * probes + 1.5 * candidates
        if cost < best[0]:
            starts = tuple(int(s) for s in np.cumsum([0] + lengths[:-1]))
            best = (cost, _Layout(starts, tuple(key_bits), radius))
    return best[1]


_MASK_CACHE: dict[tuple[int, int], npt.NDArray[np.int64]] = {}


def _masks(bits: int, radius: int) -> npt.NDArray[np.int64]:
    """All `bits`-bit masks with at most `radius` bits set."""
    key = (bits, radius)
    if key not in _MASK_CACHE:
        masks = [0]
        for r in range(1, radius + 1):
            masks.extend(sum(1 << b for b in c) for c in combinations(range(bits), r))
        _MASK_CACHE[key] = np.array(masks, dtype=np.int64)
    return _MASK_CACHE[key]


class _Segment:
    """A static block of entries with one table per substring (`index_kernels.build_table`)."""

    def __init__(self, words: U64, ids: I64, max_distance: int) -> None:
        self.ids = ids
        self.words = np.ascontiguousarray(words, dtype=np.uint64)
        self.layout = _choose_layout(len(words), max_distance)
        if self.layout is not None:
            self._build_tables(self.layout)

    def _build_tables(self, layout: _Layout) -> None:
        kernels = _kernels()
        n, bits = len(self.ids), layout.key_bits
        self.key_starts = np.array(layout.starts, dtype=np.int64)
        self.key_bits = np.array(bits, dtype=np.int64)
        self.key_masks = np.zeros((len(bits), 4), dtype=np.uint64)
        for t, (start, width) in enumerate(zip(layout.starts, bits, strict=True)):
            mask = np.zeros(PDQ_HASH_BITS, dtype=np.uint8)
            mask[start : start + width] = 1
            self.key_masks[t] = _words(np.packbits(mask).reshape(1, 32))[0]
        masks = [_masks(width, layout.radius) for width in bits]
        self.probe_masks = np.concatenate(masks)
        self.probe_base = np.cumsum([0] + [len(m) for m in masks[:-1]], dtype=np.int64)
        sizes = [(1 << width) + 1 for width in bits]
        self.offset_base = np.cumsum([0] + sizes[:-1], dtype=np.int64)
        self.offsets = np.zeros(sum(sizes), dtype=np.int32)
        self.order_stride = n + kernels.ORDER_PAD
        self.order = np.zeros(len(bits) * self.order_stride, dtype=np.int32)

        def build(t: int) -> None:
            kernels.build_table(
                self.words,
                layout.starts[t],
                bits[t],
                self.offsets[self.offset_base[t] : self.offset_base[t] + sizes[t]],
                self.order[t * self.order_stride : t * self.order_stride + n],
            )

        list(_pool().map(build, range(len(bits))))

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: U64, threshold: int, max_distance: int) -> BatchMatches:
        if self.layout is None or threshold > max_distance:
            return _scan_batch(self.words, self.ids, queries, threshold)
        radii = _probe_radii(self.layout, threshold, len(self.ids))
        kernels = _kernels()

        def search_block(block: U64, out_row: I64, out_dist: I32, counts: I64) -> None:
            kernels.search_tables(
                self.words,
                block,
                threshold,
                self.key_starts,
                self.key_bits,
                self.key_masks,
                radii,
                self.offsets,
                self.offset_base,
                self.order,
                self.order_stride,
                self.probe_masks,
                self.probe_base,
                out_row,
                out_dist,
                counts,
            )

        return _run_search(search_block, queries, self.ids)


class MihPdqIndex(PdqHashIndex):
    """Exact PDQ search by multi-index hashing; fast at the scale of millions of hashes."""

    kind = "pdq-mih"

    def __init__(self, *, max_distance: int = PDQ_MATCH_THRESHOLD_BITS) -> None:
        super().__init__()
        if not 0 <= max_distance <= 64:
            raise InvalidInput("an index's max distance is between 0 and 64 bits")
        self.max_distance = max_distance
        self._segments: list[_Segment] = []
        self._tail_words: list[U64] = []
        self._tail_ids: list[I64] = []
        self._tail: tuple[U64, I64] | None = None

    def __len__(self) -> int:
        return sum(len(s) for s in self._segments) + sum(len(i) for i in self._tail_ids)

    @property
    def segment_sizes(self) -> list[int]:
        return [len(s) for s in self._segments]

    def add_codes(self, codes: U8, ids: I64) -> None:
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, 32)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(codes) != len(ids):
            raise InvalidInput("one id per hash")
        if len(codes) == 0:
            return
        self._tail_words.append(_words(codes))
        self._tail_ids.append(ids.copy())
        self._tail = None
        if sum(len(i) for i in self._tail_ids) >= TAIL_MAX_ENTRIES:
            self._flush_tail()

    def _flush_tail(self) -> None:
        words = np.concatenate(self._tail_words)
        ids = np.concatenate(self._tail_ids)
        self._tail_words, self._tail_ids, self._tail = [], [], None
        # Merge with the newest segments while they are not much larger (LSM-style).
        while self._segments and len(self._segments[-1]) <= 2 * len(ids):
            last = self._segments.pop()
            words = np.concatenate([last.words, words])
            ids = np.concatenate([last.ids, ids])
        self._segments.append(_Segment(words, ids, self.max_distance))

    def compact(self) -> None:
        """Index everything in one segment (e.g. after loading a whole bank)."""
        if self._tail_ids or len(self._segments) > 1:
            words = np.concatenate([s.words for s in self._segments] + self._tail_words)
            ids = np.concatenate([s.ids for s in self._segments] + self._tail_ids)
            self._segments = [_Segment(words, ids, self.max_distance)]
            self._tail_words, self._tail_ids, self._tail = [], [], None

    def _search(self, queries: U64, threshold: int) -> BatchMatches:
        parts = [s.search(queries, threshold, self.max_distance) for s in self._segments]
        if self._tail_ids:
            if self._tail is None:
                self._tail = (np.concatenate(self._tail_words), np.concatenate(self._tail_ids))
            parts.append(_scan_batch(self._tail[0], self._tail[1], queries, threshold))
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return BatchMatches(empty, empty, empty)
        return BatchMatches(
            np.concatenate([p.query for p in parts]),
            np.concatenate([p.entry_id for p in parts]),
            np.concatenate([p.distance for p in parts]),
        )

    def _arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        words = [s.words for s in self._segments] + self._tail_words
        ids = [s.ids for s in self._segments] + self._tail_ids
        if not words:
            return {"codes": np.zeros((0, 32), dtype=np.uint8), "ids": np.zeros(0, dtype="<i8")}
        codes = _codes_from_words(np.concatenate(words))
        return {"codes": codes, "ids": np.concatenate(ids).astype("<i8")}

    def _params(self) -> dict[str, int]:
        return {"max_distance": self.max_distance}


# -- exact hashes ------------------------------------------------------------------------------


class ExactHashIndex(HashIndex[Md5Hash | Sha256Hash]):
    """Equality lookup for MD5 or SHA-256 over sorted 64-bit prefixes, verified in full."""

    def __init__(self, signal_type: str) -> None:
        super().__init__()
        if signal_type not in ("md5", "sha256"):
            raise InvalidInput("exact indexes hold md5 or sha256")
        self.signal_type = signal_type
        self.kind = f"{signal_type}-exact"
        self._width = 16 if signal_type == "md5" else 32
        self._keys: U8 = np.zeros((0, self._width), dtype=np.uint8)
        self._ids: I64 = np.zeros(0, dtype=np.int64)
        self._prefix: U64 = np.zeros(0, dtype=np.uint64)  # sorted
        self._order: I64 = np.zeros(0, dtype=np.int64)
        self._tail: dict[bytes, list[int]] = {}

    def __len__(self) -> int:
        return int(len(self._ids)) + sum(len(v) for v in self._tail.values())

    def add(self, hashes: Sequence[Md5Hash | Sha256Hash], ids: Sequence[int]) -> None:
        if len(hashes) != len(ids):
            raise InvalidInput("one id per hash")
        for h in hashes:
            if len(h.value) != self._width:
                raise InvalidInput("hash of the wrong type for this index")
        keys = np.frombuffer(b"".join(h.value for h in hashes), dtype=np.uint8)
        self.add_keys(keys.reshape(-1, self._width), np.asarray(ids, dtype=np.int64))

    def add_keys(self, keys: U8, ids: I64) -> None:
        keys = np.ascontiguousarray(keys, dtype=np.uint8).reshape(-1, self._width)
        if len(keys) != len(ids):
            raise InvalidInput("one id per hash")
        if len(keys) >= TAIL_MAX_ENTRIES:
            self._merge(keys, np.asarray(ids, dtype=np.int64))
            return
        for row, i in zip(keys, np.asarray(ids).tolist(), strict=True):
            self._tail.setdefault(row.tobytes(), []).append(int(i))
        if sum(len(v) for v in self._tail.values()) >= max(TAIL_MAX_ENTRIES, len(self._ids) // 8):
            self._flush()

    def _flush(self) -> None:
        items = [(k, i) for k, v in self._tail.items() for i in v]
        self._tail = {}
        if items:
            keys = np.frombuffer(b"".join(k for k, _ in items), dtype=np.uint8)
            self._merge(keys.reshape(-1, self._width), np.array([i for _, i in items]))

    def _merge(self, keys: U8, ids: I64) -> None:
        self._keys = np.concatenate([self._keys, keys])
        self._ids = np.concatenate([self._ids, ids.astype(np.int64)])
        prefix = np.ascontiguousarray(self._keys[:, :8]).view(">u8").astype(np.uint64).ravel()
        self._order = np.argsort(prefix, kind="stable").astype(np.int64)
        self._prefix = prefix[self._order]

    def query(
        self, hashes: Sequence[Md5Hash | Sha256Hash], threshold: int = 0
    ) -> list[list[IndexMatch]]:
        out: list[list[IndexMatch]] = []
        for h in hashes:
            found: list[int] = list(self._tail.get(h.value, []))
            if len(self._prefix):
                p = np.uint64(int.from_bytes(h.value[:8], "big"))
                lo = int(np.searchsorted(self._prefix, p, side="left"))
                hi = int(np.searchsorted(self._prefix, p, side="right"))
                for j in self._order[lo:hi].tolist():
                    if self._keys[j].tobytes() == h.value:
                        found.append(int(self._ids[j]))
            out.append([IndexMatch(i, 0) for i in sorted(set(found)) if i not in self._disabled])
        return out

    def _arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        self._flush()
        return {"keys": self._keys, "ids": self._ids.astype("<i8")}

    def _params(self) -> dict[str, int]:
        return {}


def new_index(
    signal_type: str, *, max_distance: int = PDQ_MATCH_THRESHOLD_BITS
) -> MihPdqIndex | ExactHashIndex:
    """The scalable index for a signal type (vPDQ frames use a PDQ index)."""
    if signal_type in ("pdq", "vpdq"):
        return MihPdqIndex(max_distance=max_distance)
    return ExactHashIndex(signal_type)

"""Compiled inner loops of the PDQ indexes (numba), imported only when an index is used.

Every kernel releases the GIL (`nogil=True`), so `index.py` runs them on a thread pool, one
block of queries (or one table) per thread. Numba's own parallel layer is not used: its default
thread pool may not be entered from two threads at once, as a server's requests would.
Compiled code is cached next to this file (`cache=True`), so a machine compiles it once.

Hashes are (n, 4) uint64 arrays with hash bit 0 as the top bit of word 0 (`index._words`).
Search kernels write, for query i, up to `cap` matches into row i of `out_row` / `out_dist`
(rows of the searched block, not entry ids) and the number found into `counts[i]`; a count
above `cap` means the row was cut short and the caller searches that query again with room.

Multi-index tables (`build_table`, `search_tables`): table t holds every row under its key, the
bits [key_starts[t], key_starts[t] + key_bits[t]) of its hash, as a counting sort: `offsets`
(2**key_bits + 1 int32 per table, one flat array, table t from `offset_base[t]`) gives each
key's first position in table t's part of `order` (`order_stride` int32 per table, rows of one
key in ascending order, two spare slots at the end so a bucket's first two rows are read
without a branch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

F = TypeVar("F", bound=Callable[..., Any])


def _jit(fn: F) -> F:
    """Compile `fn` (numba has no type information: the function keeps its Python signature)."""
    return cast(F, njit(cache=True, nogil=True)(fn))


def _intrinsic(fn: Callable[..., Any]) -> Any:
    """An LLVM-level function callable from compiled code only."""
    return intrinsic(fn)


#: Order slots after each table's rows (see the module docstring).
ORDER_PAD = 2


@_intrinsic
def _popcount(typingctx: Any, x: Any) -> Any:
    """The CPU's population count of a uint64 (LLVM's ctpop)."""

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@_intrinsic
def _prefetch(typingctx: Any, array: Any, index: Any) -> Any:
    """Ask the CPU to bring `array[index]` (a 1-D array) into its caches; never faults."""

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        )
        address = builder.bitcast(builder.gep(data, [args[1]]), i8p)
        # read, keep in all cache levels, data cache
        builder.call(fn, [address, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.none(array, index), codegen


@_jit
def _distance(words: Any, row: int, q0: Any, q1: Any, q2: Any, q3: Any) -> int:
    return int(
        _popcount(words[row, 0] ^ q0)
        + _popcount(words[row, 1] ^ q1)
        + _popcount(words[row, 2] ^ q2)
        + _popcount(words[row, 3] ^ q3)
    )


@_jit
def _bits(words: Any, row: int, start: int, nbits: int) -> int:
    """Bits [start, start + nbits) of `words[row]` (bit 0 = top bit of word 0), nbits < 64."""
    w = start // 64
    off = start % 64
    if off + nbits <= 64:
        v = words[row, w] >> np.uint64(64 - off - nbits)
    else:
        lo_bits = off + nbits - 64
        v = (words[row, w] << np.uint64(lo_bits)) | (words[row, w + 1] >> np.uint64(64 - lo_bits))
    return int(v & np.uint64((1 << nbits) - 1))


@_jit
def _ball(nbits: int, radius: int) -> int:
    """How many nbits-bit masks have at most `radius` bits set (the probes of one table)."""
    total = 0
    term = 1
    for k in range(radius + 1):
        total += term
        term = term * (nbits - k) // (k + 1)
    return total


@_jit
def build_table(words: Any, start: int, nbits: int, offsets: Any, order: Any) -> None:
    """Counting sort of the rows by key into `offsets` (zeroed) and `order` (n slots)."""
    n = words.shape[0]
    keys = np.empty(n, dtype=np.uint32)
    for row in range(n):
        k = _bits(words, row, start, nbits)
        keys[row] = k
        offsets[k + 1] += 1
    for k in range(1, offsets.shape[0]):
        offsets[k] += offsets[k - 1]
    fill = offsets[:-1].copy()
    for row in range(n):
        k = keys[row]
        order[fill[k]] = row
        fill[k] += 1


@_jit
def search_tables(
    words: Any,
    queries: Any,
    threshold: int,
    key_starts: Any,
    key_bits: Any,
    key_masks: Any,
    radii: Any,
    offsets: Any,
    offset_base: Any,
    order: Any,
    order_stride: int,
    probe_masks: Any,
    probe_base: Any,
    out_row: Any,
    out_dist: Any,
    counts: Any,
) -> None:
    """Multi-index hashing: probe every key within `radii[t]` of the query's key in table t.

    `probe_masks[probe_base[t]:]` lists table t's masks by number of bits set. Each query runs
    in three passes, so that the memory reads of a pass do not wait on one another: the offsets
    of every probed key, then the rows they point at, then the candidates' full hashes (each
    pass prefetches what the next one reads).

    A row is reported once, by the first table that finds it: a later table skips a row whose
    key in an earlier table is within that table's radius of the query's (that table probed it).
    """
    cap = out_row.shape[1]
    words_flat = words.reshape(-1)
    n_tables = key_starts.shape[0]
    n_probes = 0
    for t in range(n_tables):
        n_probes += _ball(key_bits[t], radii[t])
    buckets = np.empty(n_probes, dtype=np.int64)
    bucket_table = np.empty(n_probes, dtype=np.int64)
    lows = np.empty(n_probes, dtype=np.int64)
    sizes = np.empty(n_probes, dtype=np.int64)
    cand = np.empty(2 * n_probes + ORDER_PAD, dtype=np.int64)
    cand_table = np.empty(2 * n_probes + ORDER_PAD, dtype=np.int64)
    for qi in range(queries.shape[0]):
        q0, q1, q2, q3 = queries[qi, 0], queries[qi, 1], queries[qi, 2], queries[qi, 3]
        nb = 0
        for t in range(n_tables):
            key = _bits(queries, qi, key_starts[t], key_bits[t])
            for p in range(probe_base[t], probe_base[t] + _ball(key_bits[t], radii[t])):
                b = offset_base[t] + (key ^ probe_masks[p])
                buckets[nb] = b
                bucket_table[nb] = t
                _prefetch(offsets, b)
                nb += 1
        total = 0
        for j in range(nb):
            lo = offsets[buckets[j]]
            size = offsets[buckets[j] + 1] - lo
            lo += bucket_table[j] * order_stride
            lows[j] = lo
            sizes[j] = size
            total += size
            _prefetch(order, lo)
        if total + ORDER_PAD > cand.shape[0]:
            cand = np.empty(2 * (total + ORDER_PAD), dtype=np.int64)
            cand_table = np.empty(2 * (total + ORDER_PAD), dtype=np.int64)
        nc = 0
        for j in range(nb):
            lo, size, t = lows[j], sizes[j], bucket_table[j]
            # Most buckets hold 0, 1 or 2 rows: read two slots without branching on the size.
            row = order[lo]
            cand[nc] = row
            cand_table[nc] = t
            _prefetch(words_flat, 4 * row)
            nc += size > 0
            row = order[lo + 1]
            cand[nc] = row
            cand_table[nc] = t
            _prefetch(words_flat, 4 * row)
            nc += size > 1
            for pos in range(lo + 2, lo + size):
                cand[nc] = order[pos]
                cand_table[nc] = t
                nc += 1
        found = 0
        for c in range(nc):
            row = cand[c]
            d = _distance(words, row, q0, q1, q2, q3)
            if d > threshold:
                continue
            if _seen_before(words, row, queries, qi, cand_table[c], key_masks, radii):
                continue
            if found < cap:
                out_row[qi, found] = row
                out_dist[qi, found] = d
            found += 1
        counts[qi] = found


@_jit
def _seen_before(
    words: Any, row: int, queries: Any, qi: int, table: int, key_masks: Any, radii: Any
) -> bool:
    """Whether a table before `table` probed `row` (its key within that table's radius)."""
    for s in range(table):
        d = 0
        for w in range(4):
            d += _popcount((words[row, w] ^ queries[qi, w]) & key_masks[s, w])
        if d <= radii[s]:
            return True
    return False


@_jit
def search_scan(
    words: Any, queries: Any, threshold: int, out_row: Any, out_dist: Any, counts: Any
) -> None:
    """Brute force: every query against every row."""
    cap = out_row.shape[1]
    for qi in range(queries.shape[0]):
        q0, q1, q2, q3 = queries[qi, 0], queries[qi, 1], queries[qi, 2], queries[qi, 3]
        found = 0
        for row in range(words.shape[0]):
            d = _distance(words, row, q0, q1, q2, q3)
            if d <= threshold:
                if found < cap:
                    out_row[qi, found] = row
                    out_dist[qi, found] = d
                found += 1
        counts[qi] = found

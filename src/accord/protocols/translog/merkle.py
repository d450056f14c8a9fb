"""RFC 9162 (RFC 6962) Merkle tree hashing, proofs and proof verification.

Pure functions over SHA-256 hashes; no I/O. Section numbers refer to RFC 9162, "Certificate
Transparency Version 2.0", whose Merkle tree is the RFC 6962 one:

- §2.1.1 defines the Merkle Tree Hash (MTH): the empty tree hashes to SHA-256(""), a leaf to
  SHA-256(0x00 || data) and an interior node to SHA-256(0x01 || left || right), where the left
  subtree holds the largest power of two strictly smaller than the number of leaves;
- §2.1.3.1 / §2.1.4.1 define inclusion (PATH) and consistency (PROOF / SUBPROOF) proofs;
- §2.1.3.2 / §2.1.4.2 give the verification algorithms that `verify_inclusion` and
  `verify_consistency` follow step by step (the comments cite the steps).

Proof generation is written against a `SubtreeHashFn`, a callable returning the hash of one
complete, aligned subtree (``2**level`` leaves starting at a multiple of ``2**level``). A durable
store that keeps those node hashes can therefore serve proofs and roots from O(log n) stored
nodes without reading every leaf; `inclusion_proof_nodes` / `consistency_proof_nodes` list the
nodes it needs so that it can fetch them in one query. The list-based functions
(`root_hash`, `inclusion_proof`, `consistency_proof`) are the same algorithms over an in-memory
list of leaf hashes.

The client-side verification steps in ``docs/protocol/transparency.md`` (V3: consistency, V4:
inclusion) call `verify_consistency` and `verify_inclusion`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

from accord.errors import InvalidInput, VerificationError

HASH_SIZE_BYTES = 32
"""SHA-256 output size; every leaf hash, node hash and proof element has this length."""

MAX_TREE_SIZE = 2**64 - 1
"""Tree sizes and indexes are uint64 in RFC 9162 and in C2SP checkpoints."""

MAX_PROOF_HASHES = 64
"""No valid inclusion or consistency proof for a uint64-sized tree is longer than this."""

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 9162 §2.1.1)."""


class NodeId(NamedTuple):
    """A complete, aligned subtree: leaves ``[idx * 2**level, (idx + 1) * 2**level)``."""

    level: int
    idx: int

    @property
    def start(self) -> int:
        return self.idx << self.level

    @property
    def end(self) -> int:
        return (self.idx + 1) << self.level


SubtreeHashFn = Callable[[NodeId], bytes]
"""Returns MTH of one complete, aligned subtree (see `NodeId`)."""


# --------------------------------------------------------------------------------------------
# Hashing (RFC 9162 §2.1.1)


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the tree whose leaves have these hashes; the empty tree hashes to SHA-256("").

    Computed bottom-up: pairing adjacent nodes level by level and carrying an odd last node up
    unchanged gives exactly the RFC's recursive split at the largest power of two.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


# --------------------------------------------------------------------------------------------
# Tree geometry


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 §2.1.1: the largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[NodeId]:
    """The complete aligned subtrees that make up the leaf range ``[start, end)``, left to right.

    Every range that appears in RFC 9162 trees and proofs starts at a multiple of the smallest
    power of two not below its length; such a range splits into strictly decreasing aligned
    blocks (the binary digits of its length), and its MTH is the right fold of their hashes
    (see `hash_range`). Other ranges are refused.
    """
    if not 0 <= start < end or end > MAX_TREE_SIZE:
        raise InvalidInput("empty or out-of-range leaf range")
    length = end - start
    if length & (length - 1) == 0:  # one complete subtree (the common case in proofs)
        level = length.bit_length() - 1
        if start & (length - 1):
            raise InvalidInput("leaf range is not the shape of a Merkle subtree")
        return [NodeId(level, start >> level)]
    span = 1 << (length - 1).bit_length()  # smallest power of two >= length
    if start % span:
        raise InvalidInput("leaf range is not the shape of a Merkle subtree")
    nodes: list[NodeId] = []
    offset = start
    for level in range(length.bit_length() - 1, -1, -1):
        if length >> level & 1:
            nodes.append(NodeId(level, offset >> level))
            offset += 1 << level
    return nodes


def fold_range(node_hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the hashes of its `range_nodes`, largest first."""
    if not node_hashes:
        raise InvalidInput("no nodes to fold")
    acc = node_hashes[-1]
    for left in reversed(node_hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


def hash_range(start: int, end: int, subtree_hash: SubtreeHashFn) -> bytes:
    """MTH(D[start:end]) from complete-subtree hashes (``[0, size)`` gives the root)."""
    return fold_range([subtree_hash(node) for node in range_nodes(start, end)])


def root_nodes(size: int) -> list[NodeId]:
    """The stored nodes a root at ``size`` is folded from (none for the empty tree)."""
    _check_size(size)
    return range_nodes(0, size) if size else []


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise InvalidInput("tree size out of range")


# --------------------------------------------------------------------------------------------
# Proof generation (RFC 9162 §2.1.3.1 and §2.1.4.1) as lists of leaf ranges


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """PATH(m, D[n]) (RFC 9162 §2.1.3.1) as leaf ranges whose MTHs form the proof, in order."""
    _check_size(size)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise InvalidInput("leaf index out of range")
    ranges: list[tuple[int, int]] = []
    start, end, m = 0, size, index
    # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])      if m < k
    #               = PATH(m - k, D[k:n]) : MTH(D[0:k])  if m >= k
    # Iterating top-down collects siblings from the root down; the proof lists them leaf-up.
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if m < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m = start + k, m - k
    ranges.reverse()
    return ranges


def consistency_proof_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (RFC 9162 §2.1.4.1) as leaf ranges.

    Defined for 0 < m <= n; for m == n the proof is empty.
    """
    _check_size(new_size)
    _check_size(old_size)
    if not 0 < old_size <= new_size:
        raise InvalidInput("consistency proof needs 0 < old size <= new size")
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, new_size, old_size, True
    while True:
        if m == end - start:
            # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if not complete:
                ranges.append((start, end))
            break
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.append((start + k, end))
            end = start + k
        else:
            # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    ranges.reverse()
    return ranges


def inclusion_proof_nodes(index: int, size: int) -> list[NodeId]:
    """Every stored node needed to build the inclusion proof of ``index`` at ``size``."""
    return _nodes_of(inclusion_proof_ranges(index, size))


def consistency_proof_nodes(old_size: int, new_size: int) -> list[NodeId]:
    """Every stored node needed to build the consistency proof from ``old_size``."""
    return _nodes_of(consistency_proof_ranges(old_size, new_size))


def _nodes_of(ranges: Iterable[tuple[int, int]]) -> list[NodeId]:
    return [node for start, end in ranges for node in range_nodes(start, end)]


def proof_from_nodes(
    ranges: Sequence[tuple[int, int]], node_hashes: Mapping[NodeId, bytes]
) -> list[bytes]:
    """Fold fetched node hashes into the proof elements for ``ranges``."""
    try:
        return [fold_range([node_hashes[n] for n in range_nodes(s, e)]) for s, e in ranges]
    except KeyError:
        raise InvalidInput("a node needed for the proof is missing") from None


def inclusion_proof_from(index: int, size: int, subtree_hash: SubtreeHashFn) -> list[bytes]:
    """Inclusion proof of leaf ``index`` in the tree of ``size`` leaves, from subtree hashes."""
    return [hash_range(s, e, subtree_hash) for s, e in inclusion_proof_ranges(index, size)]


def consistency_proof_from(
    old_size: int, new_size: int, subtree_hash: SubtreeHashFn
) -> list[bytes]:
    """Consistency proof from ``old_size`` to ``new_size``, from subtree hashes."""
    return [hash_range(s, e, subtree_hash) for s, e in consistency_proof_ranges(old_size, new_size)]


def _list_subtree_hash(leaf_hashes: Sequence[bytes]) -> SubtreeHashFn:
    def subtree_hash(node: NodeId) -> bytes:
        if node.end > len(leaf_hashes):
            raise InvalidInput("subtree beyond the end of the tree")
        return root_hash(leaf_hashes[node.start : node.end])

    return subtree_hash


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) over an in-memory list of leaf hashes."""
    return inclusion_proof_from(index, len(leaf_hashes), _list_subtree_hash(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]) over an in-memory list of leaf hashes (n = len(leaf_hashes))."""
    return consistency_proof_from(old_size, len(leaf_hashes), _list_subtree_hash(leaf_hashes))


# --------------------------------------------------------------------------------------------
# Appending (a compact range over [0, size): the frontier)


def frontier_nodes(size: int) -> list[NodeId]:
    """The complete subtrees on the right edge of a tree of ``size`` leaves, largest first.

    Their hashes are all that is needed to append leaves and to compute the root.
    """
    return root_nodes(size)


def append_leaves(
    size: int, frontier: Sequence[bytes], new_leaf_hashes: Iterable[bytes]
) -> tuple[int, list[bytes], list[tuple[NodeId, bytes]]]:
    """Append leaves to a tree known only by its frontier.

    Returns the new size, the new frontier hashes (largest first) and every complete subtree
    that came into existence, leaves included, as ``(NodeId, hash)`` in creation order.
    """
    nodes = frontier_nodes(size)
    if len(nodes) != len(frontier):
        raise InvalidInput("frontier does not match the tree size")
    stack: list[tuple[NodeId, bytes]] = list(zip(nodes, frontier, strict=True))
    created: list[tuple[NodeId, bytes]] = []
    for h in new_leaf_hashes:
        if len(h) != HASH_SIZE_BYTES:
            raise InvalidInput("leaf hash has the wrong length")
        node, value = NodeId(0, size), h
        size += 1
        created.append((node, value))
        while stack and stack[-1][0].level == node.level:
            left_node, left_value = stack.pop()
            node, value = NodeId(node.level + 1, left_node.idx >> 1), node_hash(left_value, value)
            created.append((node, value))
        stack.append((node, value))
    if size > MAX_TREE_SIZE:
        raise InvalidInput("tree size out of range")
    return size, [value for _, value in stack], created


# --------------------------------------------------------------------------------------------
# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2)


def _require_hash(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE_BYTES:
        raise VerificationError("proof hash has the wrong length")
    return value


def _require_proof(proof: Sequence[bytes]) -> list[bytes]:
    if len(proof) > MAX_PROOF_HASHES:
        raise VerificationError("proof is too long")
    return [_require_hash(p) for p in proof]


def _is_uint64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TREE_SIZE


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` with ``root``.

    Follows RFC 9162 §2.1.3.2; raises `VerificationError` on any failure (also for hashes that
    are not 32 bytes, negative or non-integer sizes, and extra or missing proof elements).
    """
    if not (_is_uint64(index) and _is_uint64(tree_size)):
        raise VerificationError("leaf index or tree size out of range")
    leaf = _require_hash(leaf_hash)
    expected_root = _require_hash(root)
    path = _require_proof(proof)
    # Step 1: leaf_index >= tree_size fails.
    if index >= tree_size:
        raise VerificationError("leaf index is not below the tree size")
    # Step 2: fn = leaf_index, sn = tree_size - 1.
    fn, sn = index, tree_size - 1
    # Step 3: r = hash.
    r = leaf
    # Step 4: for each p in inclusion_path.
    for p in path:
        # Step 4a: sn == 0 -> stop and fail (the proof is too long).
        if sn == 0:
            raise VerificationError("inclusion proof has extra elements")
        # Step 4b.
        if fn & 1 or fn == sn:
            # Step 4b.i: r = HASH(0x01 || p || r).
            r = node_hash(p, r)
            # Step 4b.ii: if LSB(fn) is not set, shift until LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            # Step 4b "Otherwise" i: r = HASH(0x01 || r || p).
            r = node_hash(r, p)
        # Step 4c: shift both once.
        fn >>= 1
        sn >>= 1
    # Step 5: sn must be 0 and r must equal root_hash.
    if sn != 0:
        raise VerificationError("inclusion proof is missing elements")
    if not hmac.compare_digest(r, expected_root):
        raise VerificationError("inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (new_size, new_root) extends the tree (old_size, old_root).

    Follows RFC 9162 §2.1.4.2 for 0 < old_size < new_size. Outside that range: old_size == 0 is
    always refused (there is nothing to be consistent with), old_size > new_size is refused,
    and old_size == new_size needs an empty proof and identical roots. Raises
    `VerificationError` on any failure.
    """
    if not (_is_uint64(old_size) and _is_uint64(new_size)):
        raise VerificationError("tree size out of range")
    if not isinstance(old_root, bytes) or not isinstance(new_root, bytes):
        raise VerificationError("roots must be bytes")
    path = _require_proof(proof)
    if old_size == 0:
        raise VerificationError("consistency with an empty tree cannot be proven")
    if old_size > new_size:
        raise VerificationError("old tree is larger than the new tree")
    if old_size == new_size:
        # Same tree: nothing to prove, the roots must be identical. Like the upstream verifier
        # (transparency-dev/merkle proof/verify.go) the roots are compared as opaque bytes
        # here; the probe "sizes are equal (one) and proof is empty" relies on it.
        if path:
            raise VerificationError("consistency proof between equal sizes must be empty")
        if not hmac.compare_digest(old_root, new_root):
            raise VerificationError("roots differ at the same tree size")
        return
    first_hash = _require_hash(old_root)
    second_hash = _require_hash(new_root)
    # Step 1: an empty consistency_path fails.
    if not path:
        raise VerificationError("consistency proof is empty")
    # Step 2: if first is an exact power of 2, prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path = [first_hash, *path]
    # Step 3: fn = first - 1, sn = second - 1.
    fn, sn = old_size - 1, new_size - 1
    # Step 4: if LSB(fn) is set, shift both until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5: fr = sr = the first value of consistency_path.
    fr = sr = path[0]
    # Step 6: for each subsequent value c.
    for c in path[1:]:
        # Step 6a: sn == 0 -> stop and fail.
        if sn == 0:
            raise VerificationError("consistency proof has extra elements")
        # Step 6b.
        if fn & 1 or fn == sn:
            # Step 6b.i and 6b.ii.
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # Step 6b.iii: if LSB(fn) is not set, shift until LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            # Step 6b "Otherwise" i: sr = HASH(0x01 || sr || c).
            sr = node_hash(sr, c)
        # Step 6c: shift both once.
        fn >>= 1
        sn >>= 1
    # Step 7: fr == first_hash, sr == second_hash and sn == 0. Compare both roots whatever
    # the outcome of the first comparison.
    old_ok = hmac.compare_digest(fr, first_hash)
    new_ok = hmac.compare_digest(sr, second_hash)
    if sn != 0:
        raise VerificationError("consistency proof is missing elements")
    if not (old_ok and new_ok):
        raise VerificationError("consistency proof does not lead to the roots")

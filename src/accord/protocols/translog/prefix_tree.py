"""The prefix tree of key transparency: a verifiable map from search key to commitment.

The structure, hashing and proof encoding follow draft-ietf-keytrans-protocol-06 §"Prefix Tree"
(construction) and §"Tree Proofs / Prefix Tree"; the steps are numbered in
docs/protocol/transparency.md §8 (K1-K4) and cited here.

K1  A binary trie over 256-bit search keys: a parent at depth d holds the keys that share its
    d-bit prefix, its left child those followed by 0, its right child those followed by 1. A
    leaf sits at the shallowest depth where its key is alone; the root (depth 0) is always a
    parent, so leaves are at depth 1 or deeper.
K2  leaf value   = SHA-256(0x02 || search_key || commitment)
    parent value = SHA-256(0x03 || left value || right value), a missing child being 32 zero
    bytes; the empty tree's root value is 32 zero bytes.
K3  A search proof for a key is the terminal of the search (`inclusion`, `non_inclusion_leaf`
    with the other key's leaf, or `non_inclusion_parent`, a missing child), its depth, and the
    values of the copath nodes in left-to-right order (a sibling to the left of the search
    path comes before everything below it, one to the right after).
K4  Verifying folds the terminal value with the copath, bit by bit of the search key, and
    compares with the root; a `non_inclusion_leaf` must share the searched key's first `depth`
    bits and differ from it.

Trees are immutable: an update copies the path it changes, so a snapshot (the map at one
checkpoint) stays valid while later updates build the next one.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from accord.errors import InvalidInput, VerificationError

HASH_BYTES = 32
KEY_BYTES = 32
KEY_BITS = KEY_BYTES * 8
ZERO = bytes(HASH_BYTES)
"""The value of a missing node (K2)."""

_LEAF_PREFIX = b"\x02"
_PARENT_PREFIX = b"\x03"


def leaf_value(key: bytes, commitment: bytes) -> bytes:
    """K2."""
    return hashlib.sha256(_LEAF_PREFIX + key + commitment).digest()


def parent_value(left: bytes, right: bytes) -> bytes:
    """K2."""
    return hashlib.sha256(_PARENT_PREFIX + left + right).digest()


def _bit(key: bytes, depth: int) -> int:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


class _Leaf:
    __slots__ = ("commitment", "key", "value")

    def __init__(self, key: bytes, commitment: bytes) -> None:
        self.key = key
        self.commitment = commitment
        self.value: bytes = leaf_value(key, commitment)


class _Parent:
    __slots__ = ("left", "right", "value")

    def __init__(self, left: _Node | None, right: _Node | None) -> None:
        self.left = left
        self.right = right
        self.value: bytes = parent_value(
            left.value if left is not None else ZERO, right.value if right is not None else ZERO
        )

    def child(self, bit: int) -> _Node | None:
        return self.right if bit else self.left

    def with_child(self, bit: int, node: _Node) -> _Parent:
        return _Parent(self.left, node) if bit else _Parent(node, self.right)


_Node = _Leaf | _Parent


class SearchResult(Enum):
    """Where a search ended (K3): the draft's PrefixSearchResultType."""

    INCLUSION = "inclusion"
    NON_INCLUSION_LEAF = "non_inclusion_leaf"
    NON_INCLUSION_PARENT = "non_inclusion_parent"


@dataclass(frozen=True, slots=True)
class SearchProof:
    """K3: the proof of one search (the draft's PrefixProof with one result)."""

    result: SearchResult
    depth: int
    elements: tuple[bytes, ...]
    leaf_key: bytes | None = None  # non_inclusion_leaf: the key and commitment found instead
    leaf_commitment: bytes | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.depth <= KEY_BITS or len(self.elements) != self.depth:
            raise InvalidInput("search proof depth does not match its elements")
        if any(len(e) != HASH_BYTES for e in self.elements):
            raise InvalidInput("search proof element is not a hash")
        other_leaf = self.result is SearchResult.NON_INCLUSION_LEAF
        if other_leaf != (self.leaf_key is not None and self.leaf_commitment is not None):
            raise InvalidInput("search proof leaf is missing or unexpected")
        if other_leaf and (
            len(self.leaf_key or b"") != KEY_BYTES or len(self.leaf_commitment or b"") != HASH_BYTES
        ):
            raise InvalidInput("search proof leaf is malformed")


class PrefixTree:
    """An immutable prefix tree (K1-K2); `with_updates` returns a new one."""

    __slots__ = ("_root", "size")

    def __init__(self, root: _Parent | None = None, size: int = 0) -> None:
        self._root = root
        self.size = size
        """How many keys the tree holds."""

    @property
    def root_value(self) -> bytes:
        return self._root.value if self._root is not None else ZERO

    @classmethod
    def from_items(cls, items: Iterable[tuple[bytes, bytes]]) -> PrefixTree:
        """A tree of (search key, commitment) pairs, built bottom-up in one pass (O(n) hashes).
        Keys must be distinct."""
        pairs = sorted(items)
        for key, commitment in pairs:
            _check_pair(key, commitment)
        for i in range(1, len(pairs)):
            if pairs[i - 1][0] == pairs[i][0]:
                raise InvalidInput("prefix tree keys must be distinct")
        if not pairs:
            return cls()
        root = _build(pairs, 0, len(pairs), 0)
        if isinstance(root, _Leaf):  # one key: the root is still a parent (K1)
            root = _Parent(None, root) if _bit(root.key, 0) else _Parent(root, None)
        return cls(root, len(pairs))

    def with_updates(self, items: Iterable[tuple[bytes, bytes]]) -> PrefixTree:
        """This tree with each key set to its commitment (inserted or replaced)."""
        latest = dict(items)  # the last commitment given for a key wins
        if not latest:
            return self
        for key, commitment in latest.items():
            _check_pair(key, commitment)
        root = self._root if self._root is not None else _Parent(None, None)
        pending = sorted(latest.items())
        new_root, added = _set_many(root, 0, pending, 0, len(pending))
        return PrefixTree(new_root, self.size + added)

    def get(self, key: bytes) -> bytes | None:
        """The commitment stored under `key`, if any."""
        node: _Node | None = self._root
        depth = 0
        while isinstance(node, _Parent):
            node = node.child(_bit(key, depth))
            depth += 1
        return node.commitment if node is not None and node.key == key else None

    def search(self, key: bytes) -> SearchProof:
        """K3: the proof of a search for `key`."""
        if len(key) != KEY_BYTES:
            raise InvalidInput("search keys are 32 bytes")
        if self._root is None:
            return SearchProof(SearchResult.NON_INCLUSION_PARENT, 0, ())
        left: list[bytes] = []  # siblings left of the path, top-down
        right: list[bytes] = []  # siblings right of the path, top-down
        node: _Node | None = self._root
        depth = 0
        while isinstance(node, _Parent):
            bit = _bit(key, depth)
            sibling = node.child(1 - bit)
            (left if bit else right).append(sibling.value if sibling is not None else ZERO)
            node = node.child(bit)
            depth += 1
        elements = tuple(left) + tuple(reversed(right))
        if node is None:
            return SearchProof(SearchResult.NON_INCLUSION_PARENT, depth, elements)
        if node.key == key:
            return SearchProof(SearchResult.INCLUSION, depth, elements)
        return SearchProof(
            SearchResult.NON_INCLUSION_LEAF, depth, elements, node.key, node.commitment
        )


def _check_pair(key: bytes, commitment: bytes) -> None:
    if len(key) != KEY_BYTES or len(commitment) != HASH_BYTES:
        raise InvalidInput("prefix tree keys and commitments are 32 bytes")


def _first_one(pairs: Sequence[tuple[bytes, bytes]], lo: int, hi: int, depth: int) -> int:
    """The first of the sorted keys `pairs[lo:hi]` (sharing `depth` bits) with bit `depth` set."""
    while lo < hi:
        mid = (lo + hi) // 2
        if _bit(pairs[mid][0], depth):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _set_many(
    node: _Parent, depth: int, pairs: Sequence[tuple[bytes, bytes]], lo: int, hi: int
) -> tuple[_Parent, int]:
    """`node` (a parent at `depth`) with the sorted keys `pairs[lo:hi]` set, each node on the
    changed paths made once; returns it and how many keys were added."""
    if hi - lo == 1:
        return _set(node, depth, *pairs[lo])
    mid = _first_one(pairs, lo, hi, depth)
    left, right, added = node.left, node.right, 0
    for bit, a, b in ((0, lo, mid), (1, mid, hi)):
        if a == b:
            continue
        child = node.child(bit)
        if child is None:
            new: _Node = _build(pairs, a, b, depth + 1)
            count = b - a
        elif isinstance(child, _Parent):
            new, count = _set_many(child, depth + 1, pairs, a, b)
        else:  # a leaf: it joins the batch (unless a new value replaces it) and all go below
            merged = [pairs[i] for i in range(a, b)]
            count = b - a
            if all(k != child.key for k, _ in merged):
                merged = sorted([*merged, (child.key, child.commitment)])
            else:
                count -= 1
            new = _build(merged, 0, len(merged), depth + 1)
        if bit:
            right = new
        else:
            left = new
        added += count
    return _Parent(left, right), added


def _set(node: _Parent, depth: int, key: bytes, commitment: bytes) -> tuple[_Parent, int]:
    """`node` (a parent at `depth`) with `key` set; returns it and how many keys were added."""
    bit = _bit(key, depth)
    child = node.child(bit)
    if child is None:
        return node.with_child(bit, _Leaf(key, commitment)), 1
    if isinstance(child, _Parent):
        new_child, added = _set(child, depth + 1, key, commitment)
        return node.with_child(bit, new_child), added
    if child.key == key:
        return node.with_child(bit, _Leaf(key, commitment)), 0
    return node.with_child(bit, _split(child, _Leaf(key, commitment), depth + 1)), 1


def _split(old: _Leaf, new: _Leaf, depth: int) -> _Parent:
    """Parents from `depth` down to the first bit where the two keys differ (K1)."""
    old_bit, new_bit = _bit(old.key, depth), _bit(new.key, depth)
    if old_bit != new_bit:
        return _Parent(new, old) if old_bit else _Parent(old, new)
    below = _split(old, new, depth + 1)
    return _Parent(None, below) if old_bit else _Parent(below, None)


def _build(pairs: Sequence[tuple[bytes, bytes]], lo: int, hi: int, depth: int) -> _Node:
    """The node at `depth` holding the sorted keys `pairs[lo:hi]` (at least one)."""
    if hi - lo == 1:
        return _Leaf(*pairs[lo])
    a = _first_one(pairs, lo, hi, depth)
    left = _build(pairs, lo, a, depth + 1) if a > lo else None
    right = _build(pairs, a, hi, depth + 1) if hi > a else None
    return _Parent(left, right)


def verify_search(
    key: bytes, proof: SearchProof, root: bytes, commitment: bytes | None = None
) -> None:
    """K4: `proof` is a correct search for `key` in the tree whose root value is `root`.

    For an inclusion, `commitment` is the value the caller expects under `key` (it rebuilt it
    from the data it was given); for a non-inclusion it must be None. Raises
    `VerificationError` (code ``map_proof_invalid``) otherwise.
    """
    if len(key) != KEY_BYTES or len(root) != HASH_BYTES:
        raise VerificationError("malformed search key or root", code="map_proof_invalid")
    if proof.result is SearchResult.INCLUSION:
        if commitment is None or len(commitment) != HASH_BYTES:
            raise VerificationError("an inclusion needs the expected commitment")
        value = leaf_value(key, commitment)
    elif commitment is not None:
        raise VerificationError(
            "the map does not hold this account (a non-inclusion proof)", code="map_proof_invalid"
        )
    elif proof.result is SearchResult.NON_INCLUSION_LEAF:
        other, other_commitment = proof.leaf_key or b"", proof.leaf_commitment or b""
        if other == key or not _same_prefix(other, key, proof.depth):
            raise VerificationError("non-inclusion leaf is misplaced", code="map_proof_invalid")
        value = leaf_value(other, other_commitment)
    else:
        value = ZERO
    elements = deque(proof.elements)
    siblings = [elements.popleft() if _bit(key, d) else elements.pop() for d in range(proof.depth)]
    for depth in reversed(range(proof.depth)):
        sibling = siblings[depth]
        value = parent_value(sibling, value) if _bit(key, depth) else parent_value(value, sibling)
    if value != root:
        raise VerificationError(
            "the map proof does not lead to the logged map root", code="map_proof_invalid"
        )


def _same_prefix(a: bytes, b: bytes, bits: int) -> bool:
    return all(_bit(a, d) == _bit(b, d) for d in range(bits))

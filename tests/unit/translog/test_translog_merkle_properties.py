"""Property tests of the Merkle tree: random trees up to 4,096 leaves.

Every inclusion and consistency proof verifies; changing a proof element or a root is always
rejected; changing an index or a size is rejected unless it leaves the verifier's computation
unchanged (RFC 6962 proofs bind index and size only through the shape of the path: e.g. the
proof of leaf 0 in a 3-leaf tree also verifies as leaf 0 "of 4 leaves" against the same
3-leaf root; checkpoints bind size and root together, which is why that is harmless). Those
cases are predicted exactly from the tree geometry below, so the tests still say "rejected" for
every other change.
"""

from __future__ import annotations

from functools import cache

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from accord.errors import VerificationError
from accord.protocols.translog import merkle

MAX_LEAVES = 4096
ALL_LEAVES = tuple(merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(MAX_LEAVES))


@cache
def root(size: int) -> bytes:
    return merkle.root_hash(ALL_LEAVES[:size])


@cache
def level_hashes(level: int) -> tuple[bytes, ...]:
    """Every complete aligned subtree hash at ``level`` over ALL_LEAVES (cheap proofs)."""
    if level == 0:
        return ALL_LEAVES
    below = level_hashes(level - 1)
    return tuple(merkle.node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2))


def subtree(node: merkle.NodeId) -> bytes:
    return level_hashes(node.level)[node.idx]


def sizes() -> st.SearchStrategy[int]:
    powers = [1 << k for k in range(13)]
    near = sorted({p + d for p in powers for d in (-1, 0, 1) if 1 <= p + d <= MAX_LEAVES})
    return st.one_of(st.sampled_from(near), st.integers(1, MAX_LEAVES))


def rejected(fn: object, *args: object) -> bool:
    try:
        fn(*args)  # type: ignore[operator]
    except VerificationError:
        return True
    return False


def flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def inclusion_shape(index: int, size: int) -> tuple[str, ...]:
    """Left/right side of each inclusion proof element, leaf upwards."""
    return tuple(
        "L" if end <= index else "R" for _, end in merkle.inclusion_proof_ranges(index, size)
    )


def consistency_shape(old: int, new: int) -> tuple[str, ...] | None:
    """How the RFC 9162 verifier consumes a consistency proof for (old, new); None: refused."""
    if not 0 < old <= new:
        return None
    if old == new:
        return ()
    seed = "root" if old & (old - 1) == 0 else "proof"
    ranges = merkle.consistency_proof_ranges(old, new)
    if seed == "proof":
        ranges = ranges[1:]
    return (seed, *("L" if end <= old else "R" for _, end in ranges))


# --------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(size=sizes(), data=st.data())
def test_every_inclusion_proof_verifies(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof_from(index, size, subtree)
    merkle.verify_inclusion(ALL_LEAVES[index], index, size, proof, root(size))
    # The node-fetching path the durable store uses gives the same proof.
    nodes = {n: subtree(n) for n in merkle.inclusion_proof_nodes(index, size)}
    assert merkle.proof_from_nodes(merkle.inclusion_proof_ranges(index, size), nodes) == proof


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_list_proofs_match_subtree_proofs(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    leaves = list(ALL_LEAVES[:size])
    assert merkle.inclusion_proof(leaves, index) == merkle.inclusion_proof_from(
        index, size, subtree
    )
    assert merkle.consistency_proof(leaves, old) == merkle.consistency_proof_from(
        old, size, subtree
    )


@settings(max_examples=150, deadline=None)
@given(size=sizes(), data=st.data())
def test_every_consistency_proof_verifies(size: int, data: st.DataObject) -> None:
    old = data.draw(st.integers(1, size))
    proof = merkle.consistency_proof_from(old, size, subtree)
    merkle.verify_consistency(old, size, root(old), root(size), proof)
    nodes = {n: subtree(n) for n in merkle.consistency_proof_nodes(old, size)}
    assert merkle.proof_from_nodes(merkle.consistency_proof_ranges(old, size), nodes) == proof


@settings(max_examples=200, deadline=None)
@given(size=sizes(), data=st.data())
def test_any_inclusion_mutation_is_rejected(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof_from(index, size, subtree)
    leaf, good_root = ALL_LEAVES[index], root(size)
    bit = data.draw(st.integers(0, 255))

    assert rejected(merkle.verify_inclusion, flip(leaf, bit), index, size, proof, good_root)
    assert rejected(merkle.verify_inclusion, leaf, index, size, proof, flip(good_root, bit))
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        assert rejected(merkle.verify_inclusion, leaf, index, size, bad, good_root)
        assert rejected(merkle.verify_inclusion, leaf, index, size, proof[:-1], good_root)
        swapped = proof[::-1]
        if swapped != proof:
            assert rejected(merkle.verify_inclusion, leaf, index, size, swapped, good_root)
    extra = data.draw(st.sampled_from([*ALL_LEAVES[:4], good_root]))
    assert rejected(merkle.verify_inclusion, leaf, index, size, [*proof, extra], good_root)
    assert rejected(merkle.verify_inclusion, leaf, index, size, [extra, *proof], good_root)

    # Another index or size: refused unless the verifier would do exactly the same hashing.
    other_index = data.draw(st.integers(0, 2 * MAX_LEAVES).filter(lambda i: i != index))
    other_size = data.draw(st.integers(0, 2 * MAX_LEAVES).filter(lambda n: n != size))
    for i, n in [(other_index, size), (index, other_size), (other_index, other_size)]:
        same = i < n and inclusion_shape(i, n) == inclusion_shape(index, size)
        assert rejected(merkle.verify_inclusion, leaf, i, n, proof, good_root) is not same


@settings(max_examples=200, deadline=None)
@given(size=sizes(), data=st.data())
def test_any_consistency_mutation_is_rejected(size: int, data: st.DataObject) -> None:
    assume(size > 1)
    old = data.draw(st.integers(1, size - 1))
    proof = merkle.consistency_proof_from(old, size, subtree)
    old_root, new_root = root(old), root(size)
    bit = data.draw(st.integers(0, 255))

    verify = merkle.verify_consistency
    assert rejected(verify, old, size, flip(old_root, bit), new_root, proof)
    assert rejected(verify, old, size, old_root, flip(new_root, bit), proof)
    assert rejected(verify, old, size, new_root, old_root, proof)
    at = data.draw(st.integers(0, len(proof) - 1))
    bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
    assert rejected(verify, old, size, old_root, new_root, bad)
    assert rejected(verify, old, size, old_root, new_root, proof[:-1])
    assert rejected(verify, old, size, old_root, new_root, proof[1:])
    extra = data.draw(st.sampled_from([*ALL_LEAVES[:4], old_root, new_root]))
    assert rejected(verify, old, size, old_root, new_root, [*proof, extra])
    assert rejected(verify, old, size, old_root, new_root, [extra, *proof])

    other_old = data.draw(st.integers(0, 2 * MAX_LEAVES).filter(lambda m: m != old))
    other_new = data.draw(st.integers(0, 2 * MAX_LEAVES).filter(lambda n: n != size))
    for m, n in [(other_old, size), (old, other_new), (other_old, other_new)]:
        shape = consistency_shape(m, n)
        same = shape is not None and shape == consistency_shape(old, size)
        assert rejected(verify, m, n, old_root, new_root, proof) is not same


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=6))
def test_append_leaves_tracks_the_root(sizes: list[int]) -> None:
    """Appending in batches: the frontier always folds to the root, and every created node
    has the right hash."""
    size, frontier = 0, []
    for batch in sizes:
        new_size = min(size + batch, MAX_LEAVES)
        size, frontier, created = merkle.append_leaves(size, frontier, ALL_LEAVES[size:new_size])
        assert size == new_size
        for node, value in created:
            assert value == subtree(node)
        got = merkle.fold_range(frontier) if frontier else merkle.EMPTY_ROOT
        assert got == root(size)

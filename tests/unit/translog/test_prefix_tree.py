"""The key-transparency prefix tree (K1-K4): searches prove what the tree holds, nothing else."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput, VerificationError
from accord.protocols.translog.prefix_tree import (
    ZERO,
    PrefixTree,
    SearchProof,
    SearchResult,
    leaf_value,
    parent_value,
    verify_search,
)

keys = st.binary(min_size=32, max_size=32)
commitments = st.binary(min_size=32, max_size=32)


def _key(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


def test_the_empty_tree_has_the_zero_root_and_proves_absence() -> None:
    tree = PrefixTree()
    assert tree.root_value == ZERO
    proof = tree.search(_key(1))
    assert proof.result is SearchResult.NON_INCLUSION_PARENT
    verify_search(_key(1), proof, tree.root_value)


def test_one_key_sits_below_a_parent_root_as_the_draft_describes() -> None:
    key, commitment = bytes([0x80]) + bytes(31), bytes(32)
    tree = PrefixTree.from_items([(key, commitment)])
    # K1-K2: the root is a parent; the key's first bit is 1, so the leaf is its right child.
    assert tree.root_value == parent_value(ZERO, leaf_value(key, commitment))
    assert tree.with_updates([]).root_value == tree.root_value
    assert PrefixTree().with_updates([(key, commitment)]).root_value == tree.root_value


def test_keys_sharing_a_prefix_hang_below_one_child_parents() -> None:
    a = bytes([0b0001_0000]) + bytes(31)
    b = bytes([0b0010_1000]) + bytes(31)  # shares the first two bits with a
    ca, cb = b"\x01" * 32, b"\x02" * 32
    tree = PrefixTree.from_items([(a, ca), (b, cb)])
    depth2 = parent_value(leaf_value(a, ca), leaf_value(b, cb))  # split on the third bit
    depth1 = parent_value(depth2, ZERO)
    assert tree.root_value == parent_value(depth1, ZERO)
    proof = tree.search(a)
    assert (proof.result, proof.depth) == (SearchResult.INCLUSION, 3)
    # Left-to-right order: every sibling lies to the right of the path.
    assert proof.elements == (leaf_value(b, cb), ZERO, ZERO)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(keys, commitments, max_size=40), keys)
def test_incremental_and_bulk_builds_agree_and_every_search_verifies(
    items: dict[bytes, bytes], probe: bytes
) -> None:
    bulk = PrefixTree.from_items(items.items())
    incremental = PrefixTree()
    for key, commitment in items.items():
        incremental = incremental.with_updates([(key, commitment)])
    assert bulk.root_value == incremental.root_value
    assert bulk.size == len(items)
    for key, commitment in items.items():
        assert bulk.get(key) == commitment
        verify_search(key, bulk.search(key), bulk.root_value, commitment)
    if probe not in items:
        verify_search(probe, bulk.search(probe), bulk.root_value, None)
        with pytest.raises(VerificationError):
            verify_search(probe, bulk.search(probe), bulk.root_value, bytes(32))


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(keys, commitments, min_size=2, max_size=30), st.data())
def test_a_changed_value_or_a_tampered_proof_is_refused(
    items: dict[bytes, bytes], data: st.DataObject
) -> None:
    tree = PrefixTree.from_items(items.items())
    key = data.draw(st.sampled_from(sorted(items)))
    proof = tree.search(key)
    with pytest.raises(VerificationError):
        verify_search(key, proof, tree.root_value, bytes(a ^ 1 for a in items[key]))
    with pytest.raises(VerificationError):  # an included key cannot be shown absent
        verify_search(
            key,
            dataclasses.replace(proof, result=SearchResult.NON_INCLUSION_PARENT),
            tree.root_value,
        )
    if proof.elements:
        i = data.draw(st.integers(0, len(proof.elements) - 1))
        bad = list(proof.elements)
        bad[i] = bytes(x ^ 0xFF for x in bad[i])
        with pytest.raises(VerificationError):
            verify_search(
                key, dataclasses.replace(proof, elements=tuple(bad)), tree.root_value, items[key]
            )


def test_an_update_keeps_the_old_snapshot_valid() -> None:
    items = [(_key(i), _key(1000 + i)) for i in range(50)]
    old = PrefixTree.from_items(items)
    new = old.with_updates([(_key(3), _key(7)), (_key(99), _key(98))])
    verify_search(_key(3), old.search(_key(3)), old.root_value, _key(1003))
    verify_search(_key(3), new.search(_key(3)), new.root_value, _key(7))
    verify_search(_key(99), old.search(_key(99)), old.root_value, None)
    assert (old.size, new.size) == (50, 51)


def test_a_non_inclusion_leaf_must_lie_on_the_searched_path() -> None:
    items = [(_key(i), _key(1000 + i)) for i in range(20)]
    tree = PrefixTree.from_items(items)
    absent = _key(500)
    proof = tree.search(absent)
    other = _key(3)
    if proof.result is SearchResult.NON_INCLUSION_LEAF and proof.leaf_key != other:
        moved = dataclasses.replace(proof, leaf_key=other, leaf_commitment=_key(1003))
        with pytest.raises(VerificationError):
            verify_search(absent, moved, tree.root_value)


def test_malformed_proofs_are_refused_at_construction() -> None:
    with pytest.raises(InvalidInput):
        SearchProof(SearchResult.INCLUSION, 2, (bytes(32),))
    with pytest.raises(InvalidInput):
        SearchProof(SearchResult.INCLUSION, 1, (bytes(31),))
    with pytest.raises(InvalidInput):
        SearchProof(SearchResult.NON_INCLUSION_LEAF, 0, ())
    with pytest.raises(InvalidInput):
        PrefixTree.from_items([(_key(1), _key(2)), (_key(1), _key(3))])


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(keys, commitments, max_size=40),
    st.dictionaries(keys, commitments, max_size=40),
    st.data(),
)
def test_a_batch_update_makes_the_same_tree_as_a_bulk_build(
    before: dict[bytes, bytes], batch: dict[bytes, bytes], data: st.DataObject
) -> None:
    # Some of the batch replaces existing keys, the rest is new.
    if before:
        for key in data.draw(st.lists(st.sampled_from(sorted(before)), max_size=5)):
            batch[key] = bytes(32)
    updated = PrefixTree.from_items(before.items()).with_updates(batch.items())
    expected = PrefixTree.from_items({**before, **batch}.items())
    assert updated.root_value == expected.root_value
    assert updated.size == expected.size

"""`verify_entries_after`: with one inclusion proof, every entry after a leaf up to the tree
size is authenticated, so a server cannot leave one out, change one or add one (the matching
client relies on it to know a table is the latest logged)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput, VerificationError
from accord.protocols.translog import merkle
from accord.protocols.translog.note import Checkpoint
from accord.protocols.translog.verify import verify_entries_after


def _tree(n: int) -> tuple[list[bytes], list[bytes], Checkpoint]:
    entries = [f"entry {i}".encode() for i in range(n)]
    hashes = [merkle.leaf_hash(e) for e in entries]
    return entries, hashes, Checkpoint("log.example", n, merkle.root_hash(hashes))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 70))
def test_the_suffix_verifies_and_any_change_is_refused(data: st.DataObject, n: int) -> None:
    entries, hashes, checkpoint = _tree(n)
    index = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(hashes, index)
    later = hashes[index + 1 :]
    verify_entries_after(entries[index], index, checkpoint, proof, later)

    changes = [later + [merkle.leaf_hash(b"added")]]
    if later:
        k = data.draw(st.integers(0, len(later) - 1))
        changes.append(later[:k] + later[k + 1 :])  # one left out
        changes.append(later[:k] + [merkle.leaf_hash(b"other")] + later[k + 1 :])  # one changed
        if len(later) > 1:
            changes.append(later[::-1] if later[::-1] != later else later)  # reordered
    for changed in changes:
        if changed == later:
            continue
        with pytest.raises((VerificationError, InvalidInput)):
            verify_entries_after(entries[index], index, checkpoint, proof, changed)


def test_a_proof_for_another_leaf_is_refused() -> None:
    entries, hashes, checkpoint = _tree(9)
    proof = merkle.inclusion_proof(hashes, 3)
    with pytest.raises((VerificationError, InvalidInput)):
        verify_entries_after(entries[2], 2, checkpoint, proof, hashes[3:])

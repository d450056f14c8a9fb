"""Client verification steps V1-V4 (docs/protocol/transparency.md) end to end."""

from __future__ import annotations

import pytest

from accord.errors import InvalidInput, VerificationError
from accord.protocols.translog import merkle
from accord.protocols.translog import note as tn
from accord.protocols.translog.verify import (
    LogTrustPolicy,
    verify_checkpoint_extends,
    verify_checkpoint_note,
    verify_entry_inclusion,
)

ORIGIN = "log.example/accord"
LOG = tn.parse_skey(tn.generate_signer(ORIGIN)[0])
WITNESSES = [tn.parse_skey(tn.generate_cosigner(f"w{i}.example")[0]) for i in range(3)]
ENTRIES = [b"device key %d" % i for i in range(40)]
LEAVES = [merkle.leaf_hash(e) for e in ENTRIES]
POLICY = LogTrustPolicy(
    origin=ORIGIN,
    log_verifiers=(LOG.verifier,),
    witness_verifiers=tuple(w.verifier for w in WITNESSES),
    witness_quorum=2,
)


def published(size: int, witnesses: int = 2, leaves: list[bytes] = LEAVES) -> str:
    body = tn.Checkpoint(ORIGIN, size, merkle.root_hash(leaves[:size])).to_text()
    note = tn.sign_note(body, [LOG])
    return tn.add_signatures(note, [w.sign(body, timestamp=100) for w in WITNESSES[:witnesses]])


def test_v1_to_v4() -> None:
    first = verify_checkpoint_note(published(10), POLICY).checkpoint  # V1, V2
    verify_checkpoint_extends(None, first, [])  # V3a
    second = verify_checkpoint_note(published(33), POLICY).checkpoint
    verify_checkpoint_extends(first, second, merkle.consistency_proof(LEAVES[:33], 10))  # V3d
    verify_checkpoint_extends(second, second, [])  # V3c
    proof = merkle.inclusion_proof(LEAVES[:33], 17)
    verify_entry_inclusion(ENTRIES[17], 17, second, proof)  # V4
    with pytest.raises(VerificationError):
        verify_entry_inclusion(ENTRIES[18], 17, second, proof)


def test_v2_quorum() -> None:
    with pytest.raises(VerificationError):
        verify_checkpoint_note(published(10, witnesses=1), POLICY)


def test_v3_rollback_and_fork() -> None:
    seen = verify_checkpoint_note(published(20), POLICY).checkpoint
    older = verify_checkpoint_note(published(10), POLICY).checkpoint
    with pytest.raises(VerificationError):
        verify_checkpoint_extends(seen, older, [])
    forked_leaves = [merkle.leaf_hash(b"fork %d" % i) for i in range(40)]
    fork = verify_checkpoint_note(published(20, leaves=forked_leaves), POLICY).checkpoint
    with pytest.raises(VerificationError):
        verify_checkpoint_extends(seen, fork, [])
    with pytest.raises(VerificationError):
        verify_checkpoint_extends(None, seen, [LEAVES[0]])


def test_policy_checks() -> None:
    with pytest.raises(InvalidInput):
        LogTrustPolicy(origin=ORIGIN, log_verifiers=())
    with pytest.raises(InvalidInput):
        LogTrustPolicy(origin=ORIGIN, log_verifiers=(LOG.verifier,), witness_quorum=1)
    with pytest.raises(InvalidInput):
        LogTrustPolicy(
            origin=ORIGIN,
            log_verifiers=(LOG.verifier,),
            witness_verifiers=(LOG.verifier,),
        )
    other = LogTrustPolicy(origin="other.example/log", log_verifiers=(LOG.verifier,))
    with pytest.raises(VerificationError):
        verify_checkpoint_note(published(5), other)

"""Client verification of the transparency log: steps V1-V4 of docs/protocol/transparency.md.

V1  the checkpoint is signed by the log's key and is for the expected origin;
V2  a quorum of trusted witnesses cosigned it;
V3  it is consistent with the last checkpoint this client accepted (never smaller, same root at
    the same size, otherwise a valid RFC 9162 consistency proof);
V4  an entry is included in it (RFC 9162 inclusion proof);
V5  it is fresh: at least the quorum of trusted witnesses cosigned it no longer ago than the
    deployment manifest's maximum checkpoint age, and no further ahead than a small skew.

Only after V1-V3 may the client store the new checkpoint as its last-seen one; only after V4
may it use the entry.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from accord.errors import InvalidInput, VerificationError
from accord.protocols.translog import merkle
from accord.protocols.translog.note import (
    Checkpoint,
    VerifiedCheckpoint,
    Verifier,
    split_cosignature,
    verify_checkpoint,
)

MAX_COSIGNATURE_FUTURE_SKEW_S = 300
"""V5: a cosignature dated up to 5 minutes ahead of the device's clock is accepted (clocks
drift); one further ahead counts for nothing."""


@dataclass(frozen=True)
class LogTrustPolicy:
    """What a client trusts for one log: its origin and key(s), witnesses and quorum."""

    origin: str
    log_verifiers: tuple[Verifier, ...]
    witness_verifiers: tuple[Verifier, ...] = ()
    witness_quorum: int = 0

    def __post_init__(self) -> None:
        if not self.log_verifiers:
            raise InvalidInput("a log policy needs the log's key")
        if not 0 <= self.witness_quorum <= len(self.witness_verifiers):
            raise InvalidInput("witness quorum out of range")
        if any(not v.is_cosigner for v in self.witness_verifiers):
            raise InvalidInput("witness keys must be cosignature (type 0x04) keys")


def verify_checkpoint_note(note: bytes | str, policy: LogTrustPolicy) -> VerifiedCheckpoint:
    """V1 and V2: log signature, origin, witness quorum."""
    return verify_checkpoint(
        note,
        log_verifiers=policy.log_verifiers,
        origin=policy.origin,
        witness_verifiers=policy.witness_verifiers,
        witness_quorum=policy.witness_quorum,
    )


def verify_checkpoint_fresh(
    verified: VerifiedCheckpoint, *, quorum: int, now_s: int, max_age_s: int
) -> None:
    """V5: at least `quorum` of the verified witness cosignatures are dated within
    [now_s - max_age_s, now_s + MAX_COSIGNATURE_FUTURE_SKEW_S]. Raises `VerificationError`
    (`stale_checkpoint`)."""
    fresh = 0
    for sig in verified.witness_signatures:
        timestamp, _ = split_cosignature(sig.signature)
        if now_s - max_age_s <= timestamp <= now_s + MAX_COSIGNATURE_FUTURE_SKEW_S:
            fresh += 1
    if fresh < quorum:
        raise VerificationError(
            f"the log checkpoint has {fresh} witness cosignatures from the last {max_age_s} s "
            f"and needs {quorum}: the server may be showing an old view",
            code="stale_checkpoint",
        )


def verify_checkpoint_extends(
    last_seen: Checkpoint | None, new: Checkpoint, proof: Sequence[bytes]
) -> None:
    """V3: ``new`` extends ``last_seen`` (the client's previous verified checkpoint, if any)."""
    if last_seen is None or last_seen.size == 0:
        # V3a: nothing seen yet (or only the empty tree): the first view is trusted on the
        # strength of V1-V2; a proof from size 0 must be empty.
        if proof:
            raise VerificationError("unexpected consistency proof")
        return
    if new.origin != last_seen.origin:
        raise VerificationError("checkpoints are for different logs")
    # V3b: a smaller tree is a rollback.
    if new.size < last_seen.size:
        raise VerificationError("checkpoint is older than the one already seen")
    # V3c/V3d: same size needs the same root; a larger one a valid consistency proof.
    merkle.verify_consistency(last_seen.size, new.size, last_seen.root_hash, new.root_hash, proof)


def verify_entry_inclusion(
    entry: bytes, index: int, checkpoint: Checkpoint, proof: Sequence[bytes]
) -> None:
    """V4: ``entry`` is leaf ``index`` of the tree ``checkpoint`` commits to."""
    merkle.verify_inclusion(
        merkle.leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root_hash
    )


def verify_entries_after(
    entry: bytes,
    index: int,
    checkpoint: Checkpoint,
    proof: Sequence[bytes],
    later_leaf_hashes: Sequence[bytes],
) -> None:
    """V4 for `entry` at `index`, and that `later_leaf_hashes` are the leaf hashes of every entry
    after it in the tree `checkpoint` commits to (indexes index+1 .. size-1), nothing left out.

    The inclusion proof's right-hand siblings are the Merkle hashes of exactly those leaves
    (RFC 9162 §2.1.3.1: PATH(m, D[n]) ends each level with MTH(D[k:n]) when m < k), so once the
    proof is verified against the root, recomputing them authenticates the whole suffix.
    """
    verify_entry_inclusion(entry, index, checkpoint, proof)
    if len(later_leaf_hashes) != checkpoint.size - index - 1:
        raise VerificationError("the log entries after an entry are not all there")
    for (start, end), node in zip(
        merkle.inclusion_proof_ranges(index, checkpoint.size), proof, strict=True
    ):
        if start > index:
            part = later_leaf_hashes[start - index - 1 : end - index - 1]
            if not hmac.compare_digest(merkle.root_hash(part), node):
                raise VerificationError("the log entries after an entry are not the logged ones")

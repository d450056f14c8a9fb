"""The target device's check of a delivered warrant: steps W1-W12 of docs/lawful-access.md §6.

`verify_warrant_for_device` runs every step and returns a `VerifiedWarrant` only if all pass.
Until it returns, the device copies nothing to anyone. The code cites the step numbers:

W1  the warrant names the approver set this device trusts;
W2  k distinct members of that set approved this exact warrant, each in their role;
W3  the target is this device's own account;
W4  the window has started and has not ended;
W5  the window is no longer than the maximum duration;
W6  the warrant is not one this device has already accepted (replay);
W7  the delivery key is a registered agency key: its log entry is signed by k approvers of
    the current set and its id is the one the warrant names;
W8  the checkpoint is signed by the log, cosigned by a witness quorum, and consistent with the
    last checkpoint this device accepted (translog V1-V3);
W9  the commitment log entry opens to this signed warrant with the delivered nonce, and its
    public fields (window, disclosure time, scope, approvers, set, delivery key) match it;
W10 the commitment entry and the agency key entry are both included in that checkpoint
    (translog V4);
W11 prospective only: every approval is dated no later than the window's start (in W2), and
    the window starts no earlier than `max_start_skew_s` before the witnesses first cosigned a
    checkpoint containing the commitment (the delivery's `commitment_checkpoint_note`: its
    cosignature timestamps, the quorum-th earliest counting). With no witnesses configured
    (insecure development mode) there is no witnessed time: the check is skipped and only the
    device's own rule holds (nothing before the moment it verified the warrant is copied);
W12 the disclosure is set at most `max_disclosure_delay_s` after the window ends.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from accord.errors import AuthorizationError, InvalidInput, ProtocolError, VerificationError
from accord.primitives.encoding import canonical_json
from accord.protocols.access import _codec as c
from accord.protocols.access.agency import AgencyKey, verify_agency_key
from accord.protocols.access.approvers import HASH_BYTES, ApproverSet
from accord.protocols.access.log_entries import (
    AgencyKeyEntry,
    WarrantCommitmentEntry,
    parse_access_entry,
)
from accord.protocols.access.warrant import (
    DEFAULT_MAX_DISCLOSURE_DELAY_S,
    DEFAULT_MAX_START_SKEW_S,
    WARRANT_COMMITMENT_NONCE_BYTES,
    WARRANT_MAX_DURATION_S,
    SignedWarrant,
    WarrantCommitment,
    WarrantId,
    check_disclosure_delay,
    check_warrant_duration,
    check_warrant_prospective,
    verify_warrant_approvals,
    verify_warrant_opening,
)
from accord.protocols.translog import merkle
from accord.protocols.translog.note import Checkpoint, VerifiedCheckpoint, split_cosignature
from accord.protocols.translog.verify import (
    LogTrustPolicy,
    verify_checkpoint_extends,
    verify_checkpoint_note,
    verify_entry_inclusion,
)

MAX_PROOF_HASHES = merkle.MAX_PROOF_HASHES


@dataclass(frozen=True)
class WarrantDelivery:
    """What the provider sends to each of the target's devices (not yet verified)."""

    signed_warrant: SignedWarrant
    nonce: bytes
    commitment_entry: bytes
    commitment_index: int
    commitment_proof: tuple[bytes, ...]
    agency_key_entry: bytes
    agency_key_index: int
    agency_key_proof: tuple[bytes, ...]
    checkpoint_note: str
    consistency_proof: tuple[bytes, ...] = ()
    # W11: the first checkpoint the witnesses cosigned with the commitment in it, and the
    # commitment's inclusion proof there (empty where no witness is configured).
    commitment_checkpoint_note: str = ""
    commitment_checkpoint_proof: tuple[bytes, ...] = ()

    def to_obj(self) -> dict[str, Any]:
        return {
            "signed_warrant": self.signed_warrant.to_obj(),
            "nonce": self.nonce.hex(),
            "commitment_entry": c.b64(self.commitment_entry),
            "commitment_index": self.commitment_index,
            "commitment_proof": [h.hex() for h in self.commitment_proof],
            "agency_key_entry": c.b64(self.agency_key_entry),
            "agency_key_index": self.agency_key_index,
            "agency_key_proof": [h.hex() for h in self.agency_key_proof],
            "checkpoint_note": self.checkpoint_note,
            "consistency_proof": [h.hex() for h in self.consistency_proof],
            "commitment_checkpoint_note": self.commitment_checkpoint_note,
            "commitment_checkpoint_proof": [h.hex() for h in self.commitment_checkpoint_proof],
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_obj())

    @classmethod
    def from_bytes(cls, data: bytes) -> WarrantDelivery:
        o = c.require_keys(
            c.decode_canonical(data, what="warrant delivery"),
            {
                "signed_warrant", "nonce", "commitment_entry", "commitment_index",
                "commitment_proof", "agency_key_entry", "agency_key_index", "agency_key_proof",
                "checkpoint_note", "consistency_proof", "commitment_checkpoint_note",
                "commitment_checkpoint_proof",
            },
            what="warrant delivery",
        )  # fmt: skip

        def proof(key: str) -> tuple[bytes, ...]:
            items = c.get_list(o, key, max_items=MAX_PROOF_HASHES)
            return tuple(c.parse_hex(h, key, size=HASH_BYTES) for h in items)

        note, first_note = o["checkpoint_note"], o["commitment_checkpoint_note"]
        for text in (note, first_note):
            if not isinstance(text, str) or len(text) > 1 << 20:
                raise InvalidInput("checkpoint note must be text")
        return cls(
            signed_warrant=SignedWarrant.from_obj(o["signed_warrant"]),
            nonce=c.get_hex(o, "nonce", size=WARRANT_COMMITMENT_NONCE_BYTES),
            commitment_entry=c.get_b64(o, "commitment_entry", max_bytes=1 << 16),
            commitment_index=c.get_int(o, "commitment_index"),
            commitment_proof=proof("commitment_proof"),
            agency_key_entry=c.get_b64(o, "agency_key_entry", max_bytes=1 << 16),
            agency_key_index=c.get_int(o, "agency_key_index"),
            agency_key_proof=proof("agency_key_proof"),
            checkpoint_note=note,
            consistency_proof=proof("consistency_proof"),
            commitment_checkpoint_note=first_note,
            commitment_checkpoint_proof=proof("commitment_checkpoint_proof"),
        )


@dataclass(frozen=True)
class VerifiedWarrant:
    """A warrant that passed W1-W12 on this device. Only this type may start interception."""

    signed_warrant: SignedWarrant
    commitment: WarrantCommitment
    approver_ids: tuple[str, ...]
    agency_key: AgencyKey
    checkpoint: Checkpoint
    committed_at: int | None = None
    """When the witnesses first cosigned the commitment (None: no witness configured)."""

    @property
    def warrant_id(self) -> WarrantId:
        return self.signed_warrant.warrant_id

    def is_active(self, now: int) -> bool:
        w = self.signed_warrant.warrant
        return w.start_time <= now < w.end_time


def check_warrant_window(start_time: int, end_time: int, *, now: int) -> None:
    """W4: ``start_time <= now < end_time``, else `AuthorizationError`."""
    if now < start_time:
        raise AuthorizationError("warrant window has not started", code="warrant_not_started")
    if now >= end_time:
        raise AuthorizationError("warrant window is over", code="warrant_expired")


def _check_public_fields(
    entry: WarrantCommitmentEntry, signed: SignedWarrant, ids: Sequence[str]
) -> None:
    w = signed.warrant
    matches = (
        entry.start_time == w.start_time
        and entry.end_time == w.end_time
        and entry.disclosure_time == w.disclosure_time
        and entry.scope == w.scope
        and tuple(entry.approver_ids) == tuple(ids)
        and hmac.compare_digest(entry.approver_set, w.approver_set)
        and hmac.compare_digest(entry.delivery_key_id, w.delivery_key_id)
    )
    if not matches:
        raise VerificationError(
            "the log's public fields do not match the warrant", code="commitment_fields_mismatch"
        )


def verify_warrant_for_device(
    delivery: WarrantDelivery,
    *,
    account: str,
    approver_set: ApproverSet,
    log_policy: LogTrustPolicy,
    last_checkpoint: Checkpoint | None,
    now: int,
    seen_warrant_ids: Collection[bytes] = frozenset(),
    max_duration_s: int = WARRANT_MAX_DURATION_S,
    max_start_skew_s: int = DEFAULT_MAX_START_SKEW_S,
    max_disclosure_delay_s: int = DEFAULT_MAX_DISCLOSURE_DELAY_S,
) -> VerifiedWarrant:
    """Run W1-W12 (module docstring). Raises on the first failure; never returns partially.

    ``approver_set`` is the device's current trusted set (pinned, then advanced only by k-of-n
    updates); ``last_checkpoint`` the last checkpoint it accepted; ``seen_warrant_ids`` the ids
    of warrants it has accepted before. On success the caller stores ``result.checkpoint`` as
    its new last checkpoint and adds ``result.warrant_id`` to its seen ids.
    """
    signed = delivery.signed_warrant
    warrant = signed.warrant
    # W1 + W2: approver set and k distinct valid approvals, none dated after the start (W11).
    approver_ids = verify_warrant_approvals(signed, approver_set)
    # W12: the disclosure cannot be set beyond the bound.
    check_disclosure_delay(
        warrant.end_time, warrant.disclosure_time, max_delay_s=max_disclosure_delay_s
    )
    # W3: one account, and it is ours.
    if not hmac.compare_digest(warrant.target_identifier.encode(), account.encode()):
        raise AuthorizationError(
            "warrant names another account than this device's", code="warrant_wrong_target"
        )
    # W4: inside the window.
    check_warrant_window(warrant.start_time, warrant.end_time, now=now)
    # W5: no longer than the maximum.
    check_warrant_duration(warrant, max_duration_s=max_duration_s)
    # W6: not a replay of a warrant this device already accepted.
    if signed.warrant_id in seen_warrant_ids:
        raise ProtocolError("warrant was already delivered and used", code="warrant_replayed")
    # W7: the delivery key is registered (k approvers of the current set) and is the named one.
    try:
        key_entry = parse_access_entry(delivery.agency_key_entry)
    except InvalidInput:
        raise AuthorizationError(
            "delivery key is not a registered agency key", code="agency_key_unregistered"
        ) from None
    if not isinstance(key_entry, AgencyKeyEntry):
        raise AuthorizationError(
            "delivery key is not a registered agency key", code="agency_key_unregistered"
        )
    agency_key = verify_agency_key(key_entry.signed, approver_set)
    if not hmac.compare_digest(agency_key.key_id, warrant.delivery_key_id):
        raise AuthorizationError(
            "warrant names an agency key that is not registered", code="agency_key_unregistered"
        )
    # W8: checkpoint signed, cosigned by a witness quorum, consistent with what we saw (V1-V3).
    checkpoint = verify_checkpoint_note(delivery.checkpoint_note, log_policy).checkpoint
    verify_checkpoint_extends(last_checkpoint, checkpoint, delivery.consistency_proof)
    # W9: the logged commitment opens to this warrant, and its public fields match.
    try:
        commit_entry = parse_access_entry(delivery.commitment_entry)
    except InvalidInput:
        raise VerificationError(
            "commitment log entry is malformed", code="commitment_fields_mismatch"
        ) from None
    if not isinstance(commit_entry, WarrantCommitmentEntry):
        raise VerificationError("not a warrant commitment entry", code="commitment_fields_mismatch")
    verify_warrant_opening(commit_entry.commitment, signed, delivery.nonce)
    _check_public_fields(commit_entry, signed, approver_ids)
    # W10: both entries are in the cosigned log (V4).
    try:
        verify_entry_inclusion(
            delivery.commitment_entry,
            delivery.commitment_index,
            checkpoint,
            delivery.commitment_proof,
        )
        verify_entry_inclusion(
            delivery.agency_key_entry,
            delivery.agency_key_index,
            checkpoint,
            delivery.agency_key_proof,
        )
    except InvalidInput:
        raise VerificationError("malformed inclusion proof", code="not_in_log") from None
    except VerificationError:
        raise VerificationError(
            "warrant or agency key is not in the log", code="not_in_log"
        ) from None
    # W11: the window starts no earlier than the commitment was witnessed (less the skew).
    committed_at = None
    if log_policy.witness_quorum > 0:
        committed_at = _first_witnessed(delivery, log_policy)
        check_warrant_prospective(warrant.start_time, committed_at, max_skew_s=max_start_skew_s)
    return VerifiedWarrant(
        signed_warrant=signed,
        commitment=commit_entry.commitment,
        approver_ids=approver_ids,
        agency_key=agency_key,
        checkpoint=checkpoint,
        committed_at=committed_at,
    )


def witnessed_at(verified: VerifiedCheckpoint, quorum: int) -> int:
    """The time by which a quorum of witnesses had cosigned: the quorum-th earliest of the
    verified cosignature timestamps (fewer than ``quorum - 1`` lying witnesses cannot move it
    earlier than an honest witness's time)."""
    times = sorted(split_cosignature(s.signature)[0] for s in verified.witness_signatures)
    if len(times) < quorum or quorum < 1:
        raise VerificationError("checkpoint is not cosigned by a witness quorum")
    return times[quorum - 1]


def _first_witnessed(delivery: WarrantDelivery, log_policy: LogTrustPolicy) -> int:
    """W11: when the witnesses first cosigned a checkpoint containing the commitment."""
    try:
        first = verify_checkpoint_note(delivery.commitment_checkpoint_note, log_policy)
        verify_entry_inclusion(
            delivery.commitment_entry,
            delivery.commitment_index,
            first.checkpoint,
            delivery.commitment_checkpoint_proof,
        )
    except (InvalidInput, VerificationError):
        raise VerificationError(
            "no witnessed checkpoint shows when the warrant was logged",
            code="warrant_not_witnessed",
        ) from None
    return witnessed_at(first, log_policy.witness_quorum)


def verify_warrant_submission(
    signed: SignedWarrant,
    *,
    approver_set: ApproverSet,
    agency_key: AgencyKey,
    now: int,
    max_duration_s: int = WARRANT_MAX_DURATION_S,
    max_start_skew_s: int = DEFAULT_MAX_START_SKEW_S,
    max_disclosure_delay_s: int = DEFAULT_MAX_DISCLOSURE_DELAY_S,
) -> tuple[str, ...]:
    """The provider's checks before it commits to a submitted warrant (flow step 4).

    W1-W2 (approvals), W5 (duration), W11 (the window starts no earlier than now less the
    skew), W12 (disclosure bound), the window not already over, and W7 (``agency_key`` is the
    verified registration the warrant names). Returns the approver ids for the public fields.
    """
    approver_ids = verify_warrant_approvals(signed, approver_set)
    warrant = signed.warrant
    check_warrant_duration(warrant, max_duration_s=max_duration_s)
    if now >= warrant.end_time:
        raise AuthorizationError("warrant window is over", code="warrant_expired")
    check_warrant_prospective(warrant.start_time, now, max_skew_s=max_start_skew_s)
    check_disclosure_delay(
        warrant.end_time, warrant.disclosure_time, max_delay_s=max_disclosure_delay_s
    )
    if not hmac.compare_digest(agency_key.key_id, warrant.delivery_key_id):
        raise AuthorizationError(
            "warrant names an agency key that is not registered", code="agency_key_unregistered"
        )
    return approver_ids

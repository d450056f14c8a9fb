"""Acceptance 2: every way a warrant can be wrong fails closed on the target's device (W1-W11)."""

from __future__ import annotations

import dataclasses

import pytest
from access_world import (
    DAY,
    LOG_SIGNER,
    NOW,
    ORIGIN,
    POLICY,
    SIGNERS,
    TARGET,
    WITNESSED_AT,
    WITNESSES,
    World,
    make_set,
    make_world,
)

from accord.errors import AuthorizationError, ProtocolError, VerificationError
from accord.primitives.hpke import generate_hpke_key_pair
from accord.protocols.access.agency import AgencyKey, sign_agency_key
from accord.protocols.access.approvers import (
    SignedApproverSet,
    sign_approver_set,
    verify_approver_set_update,
)
from accord.protocols.access.device import (
    VerifiedWarrant,
    WarrantDelivery,
    verify_warrant_for_device,
    verify_warrant_submission,
    witnessed_at,
)
from accord.protocols.access.log_entries import AgencyKeyEntry
from accord.protocols.access.warrant import Approval, SignedWarrant, approval_message
from accord.protocols.translog import merkle
from accord.protocols.translog import note as tn
from accord.protocols.translog.note import Checkpoint
from accord.protocols.translog.verify import verify_checkpoint_note


def check(world: World, delivery: WarrantDelivery, **kw: object) -> VerifiedWarrant:
    args: dict[str, object] = {
        "account": TARGET,
        "approver_set": world.approver_set,
        "log_policy": POLICY,
        "last_checkpoint": None,
        "now": NOW,
    }
    args.update(kw)
    return verify_warrant_for_device(delivery, **args)  # type: ignore[arg-type]


def test_valid_warrant_passes_every_step(world: World) -> None:
    signed = world.approve(world.draft(), "judge", "commissioner")
    verified = check(world, world.deliver(signed))
    assert verified.warrant_id == signed.warrant_id
    assert verified.approver_ids == ("commissioner", "judge")
    assert verified.agency_key == world.agency_key
    assert verified.is_active(NOW)


def test_delivery_round_trips_through_canonical_bytes(world: World) -> None:
    delivery = world.deliver(world.approve(world.draft(), "judge", "commissioner"))
    again = WarrantDelivery.from_bytes(delivery.to_bytes())
    assert again == delivery
    check(world, again)


def expect(
    exc: type[Exception], code: str, world: World, delivery: WarrantDelivery, **kw: object
) -> None:
    with pytest.raises(exc) as info:
        check(world, delivery, **kw)
    assert info.value.code == code  # type: ignore[attr-defined]


def test_k_minus_one_signatures_refused(world: World) -> None:
    signed = world.approve(world.draft(), "judge")
    expect(VerificationError, "threshold_not_met", world, world.deliver(signed))


def test_signature_by_non_member_refused(world: World) -> None:
    signed = world.approve(world.draft(), "judge", "commissioner")
    w = signed.warrant
    outsider = SIGNERS["newcomer"]
    msg = approval_message(w.warrant_id, "newcomer", signed.approvals[0].role, NOW - 60)
    forged = Approval("newcomer", signed.approvals[0].role, NOW - 60, outsider.sign(msg).signature)
    delivery = world.deliver(SignedWarrant(w, (*signed.approvals, forged)))
    expect(VerificationError, "approver_not_member", world, delivery)


def test_signature_by_removed_approver_refused() -> None:
    v1 = make_set(["commissioner", "judge", "oversight"])
    v2 = make_set(["commissioner", "judge", "newcomer"], version=2, previous=v1.set_hash)
    update = sign_approver_set(sign_approver_set(v2, SIGNERS["judge"]), SIGNERS["commissioner"])
    current = verify_approver_set_update(v1, update)
    old_world = make_world(v1)
    # Approved under v1 by oversight (removed in v2) and judge: a v2 client refuses it.
    signed = old_world.approve(old_world.draft(), "judge", "oversight")
    delivery = old_world.deliver(signed)
    expect(VerificationError, "approver_set_mismatch", old_world, delivery, approver_set=current)
    # Relabelled to claim v2: the removed approver is no longer a member.
    new_world = make_world(current)
    relabelled = new_world.draft()
    forged = SignedWarrant(
        relabelled,
        tuple(
            Approval(
                a.approver_id,
                a.role,
                a.approved_at,
                SIGNERS[a.approver_id]
                .sign(approval_message(relabelled.warrant_id, a.approver_id, a.role, a.approved_at))
                .signature,
            )
            for a in signed.approvals
        ),
    )
    expect(VerificationError, "approver_not_member", new_world, new_world.deliver(forged))


def test_two_signatures_by_one_approver_refused(world: World) -> None:
    once = world.approve(world.draft(), "judge")
    twice = world.approve(once, "judge")
    assert len(twice.approvals) == 2
    expect(VerificationError, "duplicate_approver", world, world.deliver(twice))
    # ... even alongside a valid k.
    thrice = world.approve(twice, "commissioner")
    expect(VerificationError, "duplicate_approver", world, world.deliver(thrice))


def test_bad_signature_refused(world: World) -> None:
    signed = world.approve(world.draft(), "judge", "commissioner")
    a = signed.approvals[0]
    bad = dataclasses.replace(a, signature=bytes([a.signature[0] ^ 1]) + a.signature[1:])
    delivery = world.deliver(SignedWarrant(signed.warrant, (bad, signed.approvals[1])))
    expect(VerificationError, "bad_approver_signature", world, delivery)


def test_target_other_than_own_account_refused(world: World) -> None:
    signed = world.approve(world.draft(target_identifier="mallory"), "judge", "commissioner")
    expect(AuthorizationError, "warrant_wrong_target", world, world.deliver(signed))


def test_server_delivering_warrant_to_another_account_refused(world: World) -> None:
    # A valid warrant for alice, delivered by the server to bob's device.
    signed = world.approve(world.draft(), "judge", "commissioner")
    expect(AuthorizationError, "warrant_wrong_target", world, world.deliver(signed), account="bob")


def test_window_not_yet_started_refused(world: World) -> None:
    signed = world.approve(
        world.draft(start_time=NOW + 60, end_time=NOW + DAY), "judge", "commissioner"
    )
    expect(AuthorizationError, "warrant_not_started", world, world.deliver(signed))


def test_window_already_over_refused(world: World) -> None:
    signed = world.approve(
        world.draft(start_time=NOW - 2 * DAY, end_time=NOW - 3 * 3600), "judge", "commissioner"
    )
    # approvals are dated NOW - 7200, after this window ended: re-date them inside it
    delivery = world.deliver(signed)
    with pytest.raises((AuthorizationError, VerificationError)):
        check(world, delivery)
    signed = world.approve(
        world.draft(start_time=NOW - 2 * DAY, end_time=NOW), "judge", "commissioner"
    )
    expect(AuthorizationError, "warrant_expired", world, world.deliver(signed))


def test_duration_above_maximum_refused(world: World) -> None:
    with pytest.raises(AuthorizationError):
        world.draft(end_time=NOW - 3600 + 31 * DAY)  # drafting refuses it too
    long = world.draft(end_time=NOW - 3600 + 30 * DAY)
    signed = world.approve(long, "judge", "commissioner")
    expect(
        AuthorizationError, "warrant_too_long", world, world.deliver(signed), max_duration_s=7 * DAY
    )


def test_warrant_not_in_log_refused(world: World) -> None:
    signed = world.approve(world.draft(), "judge", "commissioner")
    delivery = world.deliver(signed)
    # The server claims an inclusion proof for a commitment it never appended.
    other = world.approve(world.draft(), "judge", "commissioner")
    entry, nonce, _ = world.commit(other)
    world.log.entries.pop()
    fake = dataclasses.replace(delivery, signed_warrant=other, nonce=nonce, commitment_entry=entry)
    expect(VerificationError, "not_in_log", world, fake)


def test_proof_against_uncosigned_checkpoint_refused(world: World) -> None:
    signed = world.approve(world.draft(), "judge", "commissioner")
    delivery = world.deliver(signed, witnesses=1)  # quorum is 2
    with pytest.raises(VerificationError):
        check(world, delivery)


def test_proof_against_forked_checkpoint_refused(world: World) -> None:
    _, seen = world.log.checkpoint()  # the device saw this tree earlier
    # The server forks: rewrites an old entry, appends the commitment, and proves
    # "consistency" from its own forked history. Witnesses cosigned the fork (worst case).
    world.log.entries[0] = b"rewritten history"
    signed = world.approve(world.draft(), "judge", "commissioner")
    delivery = world.deliver(signed)
    proof = tuple(merkle.consistency_proof(world.log.leaves(), seen.size))
    forked = dataclasses.replace(delivery, consistency_proof=proof)
    with pytest.raises(VerificationError):
        check(world, forked, last_checkpoint=seen)
    # Without a last-seen checkpoint the same delivery verifies: the fork is only
    # detectable against history, which is why devices keep their last checkpoint.
    check(world, dataclasses.replace(delivery, consistency_proof=()))


def test_consistent_checkpoint_accepted(world: World) -> None:
    _, seen = world.log.checkpoint()
    size = seen.size
    signed = world.approve(world.draft(), "judge", "commissioner")
    delivery = world.deliver(signed)
    proof = tuple(merkle.consistency_proof(world.log.leaves(), size))
    check(world, dataclasses.replace(delivery, consistency_proof=proof), last_checkpoint=seen)


def test_unregistered_agency_key_refused(world: World) -> None:
    rogue = AgencyKey(
        agency_id="rogue",
        name="Unregistered",
        public_key=generate_hpke_key_pair().public_key(),
        approver_set=world.approver_set.set_hash,
        registered_at=NOW,
    )
    signed = world.approve(world.draft(delivery_key_id=rogue.key_id), "judge", "commissioner")
    expect(AuthorizationError, "agency_key_unregistered", world, world.deliver(signed))


def test_agency_key_signed_by_one_approver_refused(world: World) -> None:
    weak = AgencyKey(
        agency_id="weak",
        name="One signature",
        public_key=generate_hpke_key_pair().public_key(),
        approver_set=world.approver_set.set_hash,
        registered_at=NOW,
    )
    signed_key = sign_agency_key(weak, SIGNERS["judge"])
    index = world.log.append(AgencyKeyEntry(signed_key).to_bytes())
    world.agency_index = index
    signed = world.approve(world.draft(delivery_key_id=weak.key_id), "judge", "commissioner")
    expect(VerificationError, "threshold_not_met", world, world.deliver(signed))


def test_replayed_old_warrant_refused(world: World) -> None:
    signed = world.approve(world.draft(), "judge", "commissioner")
    first = check(world, world.deliver(signed))
    # The server re-logs and re-delivers the same warrant.
    expect(
        ProtocolError,
        "warrant_replayed",
        world,
        world.deliver(signed),
        seen_warrant_ids={first.warrant_id},
    )


def test_replayed_expired_warrant_refused(world: World) -> None:
    signed = world.approve(world.draft(), "judge", "commissioner")
    expect(AuthorizationError, "warrant_expired", world, world.deliver(signed), now=NOW + 8 * DAY)


def test_public_fields_must_match_warrant(world: World) -> None:
    signed = world.approve(world.draft(), "judge", "commissioner")
    entry, nonce, index = world.commit(signed, approver_ids=("judge", "oversight"))
    note, _ = world.log.checkpoint()
    delivery = WarrantDelivery(
        signed,
        nonce,
        entry,
        index,
        world.log.proof(index),
        world.log.entries[world.agency_index],
        world.agency_index,
        world.log.proof(world.agency_index),
        note,
    )
    expect(VerificationError, "commitment_fields_mismatch", world, delivery)


def test_wrong_nonce_refused(world: World) -> None:
    delivery = world.deliver(world.approve(world.draft(), "judge", "commissioner"))
    expect(
        VerificationError, "bad_commitment", world, dataclasses.replace(delivery, nonce=bytes(32))
    )


def test_approver_set_update_needs_k_of_current(world: World) -> None:
    v1 = world.approver_set
    v2 = make_set(["commissioner", "judge", "newcomer"], version=2, previous=v1.set_hash)
    one = sign_approver_set(v2, SIGNERS["judge"])
    with pytest.raises(VerificationError):
        verify_approver_set_update(v1, one)
    by_new = sign_approver_set(one, SIGNERS["newcomer"])  # newcomer is not in v1
    with pytest.raises(VerificationError):
        verify_approver_set_update(v1, by_new)
    assert isinstance(by_new, SignedApproverSet)


def test_provider_submission_checks(world: World) -> None:
    signed = world.approve(world.draft(), "judge", "commissioner")
    ok = verify_warrant_submission(
        signed, approver_set=world.approver_set, agency_key=world.agency_key, now=WITNESSED_AT
    )
    assert ok == ("commissioner", "judge")
    with pytest.raises(AuthorizationError):  # window already over: refused
        verify_warrant_submission(
            signed, approver_set=world.approver_set, agency_key=world.agency_key, now=NOW + 8 * DAY
        )
    with pytest.raises(VerificationError):
        verify_warrant_submission(
            world.approve(world.draft(), "judge"),
            approver_set=world.approver_set,
            agency_key=world.agency_key,
            now=NOW,
        )


def cosigned_at(world: World, timestamps: list[int], *, log_signer: tn.Signer = LOG_SIGNER) -> str:
    """The log's current checkpoint, cosigned by the first witnesses, each dating its
    cosignature with its own timestamp."""
    cp = Checkpoint(ORIGIN, len(world.log.entries), merkle.root_hash(world.log.leaves()))
    body = cp.to_text()
    return tn.add_signatures(
        tn.sign_note(body, [log_signer]),
        [w.sign(body, timestamp=t) for w, t in zip(WITNESSES, timestamps, strict=False)],
    )


def test_delivery_without_a_witnessed_first_checkpoint_refused(world: World) -> None:
    """W11 needs the checkpoint the witnesses first cosigned with the commitment in it; a
    delivery that leaves it out, or forges it or its proof, has no witnessed time."""
    delivery = world.deliver(world.approve(world.draft(), "judge", "commissioner"))
    index = delivery.commitment_index
    other_log = tn.parse_skey(tn.generate_signer(ORIGIN)[0])
    before_commitment, _ = world.log.checkpoint(size=index)
    forged_note = cosigned_at(world, [WITNESSED_AT] * 2, log_signer=other_log)
    proof = delivery.commitment_checkpoint_proof
    for broken in (
        {"commitment_checkpoint_note": ""},  # missing
        {"commitment_checkpoint_note": world.log.checkpoint(witnesses=1)[0]},  # quorum is 2
        {"commitment_checkpoint_note": forged_note},  # not signed by the log's key
        {"commitment_checkpoint_note": before_commitment},  # does not hold the commitment
        {"commitment_checkpoint_proof": ()},  # proof missing
        {"commitment_checkpoint_proof": (bytes(32), *proof[1:])},  # proof forged
    ):
        expect(
            VerificationError,
            "warrant_not_witnessed",
            world,
            dataclasses.replace(delivery, **broken),  # type: ignore[arg-type]
        )
    check(world, delivery)  # the same delivery with its own first checkpoint passes


def test_witnessed_time_is_the_quorum_th_earliest_cosignature(world: World) -> None:
    """One witness (of a quorum of 2) lying early cannot date the commitment earlier: the
    window of a retroactive warrant is still measured against the honest witnesses' time."""
    start = WITNESSED_AT - 10 * DAY  # ten days before the warrant was logged
    signed = world.approve(world.draft(start_time=start), "judge", "commissioner")
    delivery = world.deliver(signed)
    liar_first = cosigned_at(world, [start, WITNESSED_AT, WITNESSED_AT])
    verified = verify_checkpoint_note(liar_first, POLICY)
    assert witnessed_at(verified, 2) == WITNESSED_AT
    assert witnessed_at(verified, 1) == start  # what a quorum of one would have believed
    lied = dataclasses.replace(
        delivery, checkpoint_note=liar_first, commitment_checkpoint_note=liar_first
    )
    expect(AuthorizationError, "warrant_retroactive", world, lied)
    # Two lying witnesses are a quorum: that is the trust the deployment places in witnesses.
    two_liars = cosigned_at(world, [start, start, WITNESSED_AT])
    accepted = check(
        world,
        dataclasses.replace(
            delivery, checkpoint_note=two_liars, commitment_checkpoint_note=two_liars
        ),
    )
    assert accepted.committed_at == start

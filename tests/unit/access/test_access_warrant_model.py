"""Warrant model: canonical encoding, single-field mutations, commitment, entries, time parsing."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from access_world import DAY, NOW, SIGNERS, World, make_set, make_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.cli.timeparse import parse_time
from accord.errors import AuthorizationError, InvalidInput, VerificationError
from accord.protocols.access.approvers import (
    ApproverRole,
    SignedApproverSet,
    advance_approver_set,
    pin_approver_set,
    sign_approver_set,
)
from accord.protocols.access.log_entries import (
    AgencyKeyEntry,
    ApproverSetEntry,
    RecordCountEntry,
    WarrantCommitmentEntry,
    WarrantDisclosureEntry,
    parse_access_entry,
)
from accord.protocols.access.timeparse import format_duration, format_time, parse_duration
from accord.protocols.access.warrant import (
    SignedWarrant,
    approve_warrant,
    commit_warrant,
    compute_warrant_commitment,
    verify_warrant_approvals,
    verify_warrant_opening,
)

WORLD = make_world()
SIGNED = WORLD.approve(WORLD.draft(), "judge", "commissioner")


def test_signed_warrant_canonical_round_trip() -> None:
    data = SIGNED.to_bytes()
    assert SignedWarrant.from_bytes(data) == SIGNED
    assert SignedWarrant.from_bytes(data).to_bytes() == data
    obj = json.loads(data)
    assert set(obj["warrant"]) == {
        "version", "object_identifier", "authorisation_reference", "legal_type",
        "case_reference", "timespan", "target_identifier", "delivery_key_id", "scope",
        "disclosure_time", "approver_set",
    }  # fmt: skip
    spaced = json.dumps(obj).encode()
    with pytest.raises(InvalidInput):
        SignedWarrant.from_bytes(spaced)  # same JSON, not canonical bytes
    with pytest.raises(InvalidInput):
        SignedWarrant.from_bytes(data.replace(b'"version":1', b'"version":1.0'))


def _leaf_paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _leaf_paths(v, (*path, k))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _leaf_paths(v, (*path, i))]
    return [path]


PATHS = _leaf_paths(SIGNED.to_obj())


def _mutate(value: Any, draw: st.DataObject) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + draw.draw(st.integers(1, 10**6))
    assert isinstance(value, str)
    pos = draw.draw(st.integers(0, max(len(value) - 1, 0)))
    ch = value[pos] if value else "a"
    repl = draw.draw(st.sampled_from("0123456789abcdefABCDEF+/=-_x").filter(lambda c: c != ch))
    return value[:pos] + repl + value[pos + 1 :]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(PATHS), data=st.data())
def test_property_any_single_field_mutation_rejected(
    path: tuple[Any, ...], data: st.DataObject
) -> None:
    obj = SIGNED.to_obj()
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = _mutate(node[path[-1]], data)
    try:
        mutated = SignedWarrant.from_obj(obj)
    except (InvalidInput, ValueError):
        return  # malformed: refused at parsing
    assert mutated != SIGNED
    with pytest.raises((VerificationError, AuthorizationError)):
        verify_warrant_approvals(mutated, WORLD.approver_set)
        # Approvals still verify only if the mutation left every signed byte unchanged,
        # which it cannot: the commitment must differ too.
        raise AssertionError("mutation accepted")


def test_single_field_mutation_changes_commitment() -> None:
    commitment, nonce = commit_warrant(SIGNED)
    verify_warrant_opening(commitment, SIGNED, nonce)
    other = dataclasses.replace(SIGNED, approvals=SIGNED.approvals[:1])
    with pytest.raises(VerificationError):
        verify_warrant_opening(commitment, other, nonce)
    with pytest.raises(VerificationError):
        verify_warrant_opening(commitment, SIGNED, bytes(32))
    # Hiding: fresh nonces give unrelated commitments for the same warrant.
    assert commit_warrant(SIGNED)[0] != commitment
    assert compute_warrant_commitment(SIGNED, nonce) == commitment


def test_role_mismatch_and_late_approval_refused(world: World) -> None:
    signed = world.approve(world.draft(), "judge", "commissioner")
    wrong_role = dataclasses.replace(signed.approvals[0], role=ApproverRole.OVERSIGHT_BODY)
    with pytest.raises(VerificationError):
        verify_warrant_approvals(
            SignedWarrant(signed.warrant, (wrong_role, signed.approvals[1])), world.approver_set
        )
    draft = world.draft()
    start = draft.start_time
    late = approve_warrant(draft, SIGNERS["judge"], world.approver_set, now=start + 1)
    late = approve_warrant(late, SIGNERS["commissioner"], world.approver_set, now=start - 10)
    with pytest.raises(VerificationError) as info:
        verify_warrant_approvals(late, world.approver_set)
    assert info.value.code == "approval_after_start"


def test_non_member_cannot_approve(world: World) -> None:
    with pytest.raises(AuthorizationError):
        approve_warrant(world.draft(), SIGNERS["newcomer"], world.approver_set, now=NOW)


def test_warrant_field_validation(world: World) -> None:
    for bad in (
        {"end_time": NOW - 3600},  # ends before it starts
        {"disclosure_time": NOW},  # disclosed before the window ends
        {"scope": []},
        {"scope": ["everything"]},
        {"target_identifier": "a\nb"},
        {"authorisation_reference": ""},
    ):
        with pytest.raises(InvalidInput):
            world.draft(**bad)


def test_approver_set_rules() -> None:
    v1 = make_set(["commissioner", "judge", "oversight"])
    with pytest.raises(InvalidInput):
        make_set(["judge", "oversight"], threshold=1)  # nobody acts alone
    with pytest.raises(InvalidInput):
        make_set(["judge", "oversight"], threshold=3)
    with pytest.raises(InvalidInput):
        make_set(["judge", "oversight"], version=2)  # later versions name their predecessor
    genesis = sign_approver_set(sign_approver_set(v1, SIGNERS["judge"]), SIGNERS["oversight"])
    assert pin_approver_set(genesis) == v1
    assert pin_approver_set(SignedApproverSet(v1), configured_hash=v1.set_hash) == v1
    with pytest.raises(VerificationError):
        pin_approver_set(SignedApproverSet(v1))  # unsigned first set, nothing configured
    other = make_set(["commissioner", "judge"])
    with pytest.raises(VerificationError):
        pin_approver_set(genesis, configured_hash=other.set_hash)
    v2 = make_set(["commissioner", "judge", "newcomer"], version=2, previous=v1.set_hash)
    v3 = make_set(["judge", "newcomer"], version=3, previous=v2.set_hash)
    u2 = sign_approver_set(sign_approver_set(v2, SIGNERS["judge"]), SIGNERS["oversight"])
    u3 = sign_approver_set(sign_approver_set(v3, SIGNERS["newcomer"]), SIGNERS["commissioner"])
    assert advance_approver_set(v1, [u2, u3]) == v3
    with pytest.raises(VerificationError):
        advance_approver_set(v1, [u3])  # skipping a version
    # oversight was removed in v2: its signature no longer counts for v3
    u3_bad = sign_approver_set(sign_approver_set(v3, SIGNERS["oversight"]), SIGNERS["judge"])
    with pytest.raises(VerificationError):
        advance_approver_set(v1, [u2, u3_bad])


def _entries() -> list[Any]:
    commitment, nonce = commit_warrant(SIGNED)
    w = SIGNED.warrant
    genesis = sign_approver_set(
        sign_approver_set(WORLD.approver_set, SIGNERS["judge"]), SIGNERS["oversight"]
    )
    return [
        ApproverSetEntry(genesis),
        AgencyKeyEntry(WORLD.signed_agency_key),
        WarrantCommitmentEntry(commitment, w.start_time, w.end_time, w.disclosure_time, w.scope,
                               ("commissioner", "judge"), w.approver_set, w.delivery_key_id),
        WarrantDisclosureEntry(commitment, SIGNED, nonce),
        RecordCountEntry(commitment, 12, NOW),
    ]  # fmt: skip


@pytest.mark.parametrize("entry", _entries(), ids=lambda e: type(e).__name__)
def test_log_entries_have_one_canonical_encoding(entry: Any) -> None:
    data = entry.to_bytes()
    assert parse_access_entry(data) == entry
    obj = json.loads(data)
    assert obj["type"] == entry.TYPE
    with pytest.raises(InvalidInput):
        parse_access_entry(json.dumps(obj, indent=1).encode())
    for key in obj:
        if key != "type":
            broken = {k: v for k, v in obj.items() if k != key}
            with pytest.raises(InvalidInput):
                parse_access_entry(
                    json.dumps(broken, sort_keys=True, separators=(",", ":")).encode()
                )
    with pytest.raises(InvalidInput):
        parse_access_entry(
            json.dumps(
                {**obj, "type": "accord.access.other.v1"}, sort_keys=True, separators=(",", ":")
            ).encode()
        )
    with pytest.raises(InvalidInput):
        parse_access_entry(
            json.dumps({**obj, "extra": 1}, sort_keys=True, separators=(",", ":")).encode()
        )


def test_log_entry_rejects_garbage() -> None:
    for bad in (b"", b"[]", b"not json", b'{"type":1}', b'{"a":1,"a":2}', b"\xff"):
        with pytest.raises(InvalidInput):
            parse_access_entry(bad)


def test_time_and_duration_parsing() -> None:
    assert parse_duration("180d") == 180 * DAY
    assert parse_duration("0s") == 0
    assert (
        parse_duration("90s") == 90
        and parse_duration("2h") == 7200
        and parse_duration("15m") == 900
    )
    for bad in ("", "1", "1w", "-1d", "1.5h", "01d", "d"):
        with pytest.raises(InvalidInput):
            parse_duration(bad)
    assert parse_time("now", now=NOW) == NOW
    assert parse_time("+90s", now=NOW) == NOW + 90
    assert parse_time("+2h", now=NOW) == NOW + 7200
    assert parse_time("+30d", now=NOW) == NOW + 30 * DAY
    assert parse_time("-1d", now=NOW) == NOW - DAY
    assert parse_time("2025-03-01T12:00:00Z", now=NOW) == 1740830400
    assert parse_time("2025-03-01T13:00:00+01:00", now=NOW) == 1740830400
    for bad in ("2025-03-01T12:00:00", "tomorrow", "+1w", "+", "2025-13-01T00:00:00Z"):
        with pytest.raises(InvalidInput):
            parse_time(bad, now=NOW)
    assert format_time(1740830400) == "2025-03-01T12:00:00Z"
    assert (
        format_duration(30 * DAY) == "30d"
        and format_duration(5400) == "90m"
        and format_duration(0) == "0s"
    )

"""Disclosure that cannot be postponed silently, and the approver-set chain, as the audit reads
them from the log (protocols/access/audit.py)."""

from __future__ import annotations

import json

import pytest
from access_world import DAY, NOW, SIGNERS, World, make_set
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput
from accord.protocols.access.approvers import sign_approver_set
from accord.protocols.access.audit import audit_access_log
from accord.protocols.access.log_entries import (
    ApproverSetEntry,
    DisclosureExtensionEntry,
    extension_message,
    parse_access_entry,
)
from accord.protocols.access.warrant import DEFAULT_MAX_DISCLOSURE_DELAY_S, WarrantCommitment
from accord.protocols.manifest import LawfulAccessBounds
from accord_testing import JSON_VALUES


def _extension(
    world: World,
    commitment: WarrantCommitment,
    disclosure_time: int,
    *,
    at: int,
    by: tuple[str, ...] = ("judge", "oversight"),
) -> DisclosureExtensionEntry:
    aset = world.approver_set.set_hash
    message = extension_message(commitment, disclosure_time, at, aset)
    return DisclosureExtensionEntry(
        commitment, disclosure_time, at, aset, tuple(SIGNERS[i].sign(message) for i in by)
    )


def _warrant(world: World, *, disclosure_time: int) -> WarrantCommitment:
    signed = world.approve(
        world.draft(
            start_time=NOW - 20 * DAY, end_time=NOW - 10 * DAY, disclosure_time=disclosure_time
        ),
        "judge",
        "commissioner",
    )
    entry, _, _ = world.commit(signed)
    return parse_access_entry(entry).commitment  # type: ignore[union-attr]


def test_postponed_disclosure_is_overdue_without_a_logged_extension(world: World) -> None:
    commitment = _warrant(world, disclosure_time=NOW - DAY)
    report = audit_access_log(world.log.entries, now=NOW)
    assert report.overdue_disclosures == (commitment,)
    # k approvers postpone it, before it was due, by a bounded delay: no longer overdue.
    world.log.append(_extension(world, commitment, NOW + 30 * DAY, at=NOW - 2 * DAY).to_bytes())
    report = audit_access_log(world.log.entries, now=NOW)
    assert report.overdue_disclosures == () and not report.invalid_entries
    [w] = report.warrants
    assert (w.disclosure_due, w.extensions) == (NOW + 30 * DAY, 1)
    assert audit_access_log(world.log.entries, now=NOW + 30 * DAY).overdue_disclosures == (
        commitment,
    )


@pytest.mark.parametrize(
    ("when", "to", "by", "reason"),
    [
        (-2 * DAY, 30 * DAY, ("judge",), "threshold_not_met"),
        (DAY, 30 * DAY, ("judge", "oversight"), "extension_too_late"),
        (-2 * DAY, -3 * DAY, ("judge", "oversight"), "extension_not_later"),
        (
            -2 * DAY,
            DEFAULT_MAX_DISCLOSURE_DELAY_S + DAY,
            ("judge", "oversight"),
            "disclosure_too_late",
        ),
    ],
)
def test_an_extension_that_fails_its_checks_postpones_nothing(
    world: World, when: int, to: int, by: tuple[str, ...], reason: str
) -> None:
    commitment = _warrant(world, disclosure_time=NOW - DAY)
    extension = _extension(world, commitment, NOW + to, at=NOW - DAY + when, by=by)
    world.log.append(extension.to_bytes())
    report = audit_access_log(world.log.entries, now=NOW)
    assert report.overdue_disclosures == (commitment,)
    assert any(reason in why for _, why in report.invalid_entries), report.invalid_entries


def test_disclosure_a_million_years_out_is_flagged(world: World) -> None:
    _warrant(world, disclosure_time=NOW + 1_000_000 * 365 * DAY)
    report = audit_access_log(world.log.entries, now=NOW)
    assert any("disclosure_too_late" in why for _, why in report.invalid_entries)


def test_second_genesis_set_is_flagged_and_warrants_show_their_set(world: World) -> None:
    own = make_set(["newcomer", "judge"])  # a provider's own "approvers"
    rogue = sign_approver_set(sign_approver_set(own, SIGNERS["newcomer"]), SIGNERS["judge"])
    index = world.log.append(ApproverSetEntry(rogue).to_bytes())
    commitment = _warrant(world, disclosure_time=NOW + DAY)
    report = audit_access_log(world.log.entries, now=NOW)
    assert report.second_genesis == (index,)
    statuses = [(s.version, s.status) for s in report.approver_sets]
    assert statuses == [(1, "genesis"), (1, "second genesis")]
    [w] = [w for w in report.warrants if w.commitment == commitment]
    assert (w.approver_set, w.approver_set_version) == (world.approver_set.set_hash.hex(), 1)
    assert [a.valid for a in report.agencies] == [True]
    # An auditor configured with the rogue set as genesis flags the real one instead.
    bounds = LawfulAccessBounds(own.set_hash.hex(), DEFAULT_MAX_DISCLOSURE_DELAY_S, 300)
    configured = audit_access_log(world.log.entries, now=NOW, bounds=bounds)
    assert configured.approver_sets[0].status == "not configured"
    assert any("not in the chain" in why for _, why in configured.invalid_entries)


@settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(
            ["commitment", "disclosure_time", "extended_at", "approver_set", "signatures", "x"]
        ),
        JSON_VALUES,
    )
)
def test_extension_parser_fails_only_as_invalid_input(fields: dict[str, object]) -> None:
    data = json.dumps(
        {"type": "accord.access.disclosure_extension.v1", **fields},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    try:
        parse_access_entry(data)
    except InvalidInput:
        pass


def test_extension_entry_round_trips_and_any_byte_change_is_refused_or_differs(
    world: World,
) -> None:
    commitment = _warrant(world, disclosure_time=NOW + DAY)
    data = _extension(world, commitment, NOW + 2 * DAY, at=NOW).to_bytes()
    assert parse_access_entry(data).to_bytes() == data
    for i in range(0, len(data), 7):
        mutated = data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]
        try:
            assert parse_access_entry(mutated).to_bytes() == mutated
        except InvalidInput:
            pass

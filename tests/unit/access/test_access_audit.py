"""Disclosure notices and the public audit recomputed from the log."""

from __future__ import annotations

import pytest
from access_world import DAY, NOW, TARGET, World

from accord.errors import VerificationError
from accord.protocols.access.audit import audit_access_log, disclosure_notice
from accord.protocols.access.log_entries import (
    RecordCountEntry,
    WarrantDisclosureEntry,
    parse_access_entry,
)


def test_disclosure_notice_for_target_only(world: World) -> None:
    signed = world.approve(world.draft(), "judge", "commissioner")
    entry_bytes, nonce, _ = world.commit(signed)
    entry = parse_access_entry(entry_bytes)
    disclosure = WarrantDisclosureEntry(entry.commitment, signed, nonce)  # type: ignore[union-attr]
    notice = disclosure_notice(disclosure, entry, account=TARGET)  # type: ignore[arg-type]
    assert notice is not None and notice.case_reference == "CASE-77"
    assert {a[0] for a in notice.approvals} == {"judge", "commissioner"}
    assert disclosure_notice(disclosure, entry, account="bob") is None  # type: ignore[arg-type]
    forged = WarrantDisclosureEntry(entry.commitment, signed, bytes(32))  # type: ignore[union-attr]
    with pytest.raises(VerificationError):
        disclosure_notice(forged, entry, account=TARGET)  # type: ignore[arg-type]


def test_audit_counts_windows_disclosures_and_records(world: World) -> None:
    active = world.approve(world.draft(), "judge", "commissioner")
    past = world.approve(
        world.draft(start_time=NOW - 40 * DAY, end_time=NOW - 20 * DAY, disclosure_time=NOW - DAY),
        "judge",
        "oversight",
    )
    disclosed = world.approve(
        world.draft(
            start_time=NOW - 40 * DAY, end_time=NOW - 30 * DAY, disclosure_time=NOW - 2 * DAY
        ),
        "commissioner",
        "oversight",
    )
    # the approvals above are dated NOW - 7200; the audit reads only public fields
    e_active, _, _ = world.commit(active)
    e_past, _, _ = world.commit(past)
    e_disc, nonce, _ = world.commit(disclosed)
    c_active = parse_access_entry(e_active).commitment  # type: ignore[union-attr]
    c_past = parse_access_entry(e_past).commitment  # type: ignore[union-attr]
    c_disc = parse_access_entry(e_disc).commitment  # type: ignore[union-attr]
    world.log.append(RecordCountEntry(c_active, 5, NOW - 60).to_bytes())
    world.log.append(RecordCountEntry(c_active, 9, NOW).to_bytes())
    world.log.append(RecordCountEntry(c_past, 3, NOW - 20 * DAY).to_bytes())
    world.log.append(WarrantDisclosureEntry(c_disc, disclosed, nonce).to_bytes())
    world.log.append(WarrantDisclosureEntry(c_past, past, bytes(32)).to_bytes())  # bad opening
    world.log.append(b'{"type":"accord.access.bogus.v1"}')

    report = audit_access_log(world.log.entries, now=NOW)
    assert (report.active, report.upcoming, report.past) == (1, 0, 2)
    assert report.overdue_disclosures == (c_past,)
    assert report.total_records == 12
    by = {w.commitment: w for w in report.warrants}
    assert by[c_active].record_count == 9 and by[c_active].duration_s == 7 * DAY + 3600
    assert by[c_disc].disclosed and not by[c_disc].disclosure_overdue
    assert report.approvals_by_approver == {"commissioner": 2, "judge": 2, "oversight": 2}
    assert len(report.invalid_entries) == 2
    # Anyone recomputing from the same entries gets the same report.
    assert audit_access_log(list(world.log.entries), now=NOW) == report

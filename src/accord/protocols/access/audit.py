"""Disclosure notices and the public audit, recomputed from the log alone.

`audit_access_log` reads every lawful-access entry of the log (other entries are skipped) and
reports active, upcoming and past warrants (windows, durations, scope, approvers), disclosures
(and whether each opens its commitment), overdue disclosures, and the record counts the provider
published per warrant. Anyone holding the log can run it and must get the same answer.

`disclosure_notice` is the target client's side: given a disclosure entry and the commitment
entry it opens, it checks the opening and, if the warrant named this account, returns what the
client shows its user.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from accord.errors import InvalidInput, VerificationError
from accord.protocols.access.approvers import ApproverRole
from accord.protocols.access.log_entries import (
    RecordCountEntry,
    WarrantCommitmentEntry,
    WarrantDisclosureEntry,
    is_access_entry,
    parse_access_entry,
)
from accord.protocols.access.warrant import Scope, WarrantCommitment, verify_warrant_opening


@dataclass(frozen=True)
class DisclosureNotice:
    """What the target's client shows its user once a warrant against them is disclosed."""

    authorisation_reference: str
    legal_type: str
    case_reference: str
    start_time: int
    end_time: int
    scope: tuple[Scope, ...]
    approvals: tuple[tuple[str, ApproverRole, int], ...]
    disclosure_time: int


def verify_disclosure(
    disclosure: WarrantDisclosureEntry, commitment_entry: WarrantCommitmentEntry
) -> None:
    """The disclosure opens the commitment and agrees with its public fields."""
    if not hmac.compare_digest(disclosure.commitment, commitment_entry.commitment):
        raise VerificationError("disclosure is for another commitment", code="bad_commitment")
    verify_warrant_opening(commitment_entry.commitment, disclosure.signed_warrant, disclosure.nonce)
    w = disclosure.signed_warrant.warrant
    ids = tuple(sorted({a.approver_id for a in disclosure.signed_warrant.approvals}))
    if (
        w.start_time != commitment_entry.start_time
        or w.end_time != commitment_entry.end_time
        or w.disclosure_time != commitment_entry.disclosure_time
        or w.scope != commitment_entry.scope
        or ids != commitment_entry.approver_ids
    ):
        raise VerificationError(
            "disclosed warrant disagrees with its logged public fields",
            code="commitment_fields_mismatch",
        )


def disclosure_notice(
    disclosure: WarrantDisclosureEntry,
    commitment_entry: WarrantCommitmentEntry,
    *,
    account: str,
) -> DisclosureNotice | None:
    """Verify the opening; return a notice if the warrant targeted ``account``, else None."""
    verify_disclosure(disclosure, commitment_entry)
    w = disclosure.signed_warrant.warrant
    if not hmac.compare_digest(w.target_identifier.encode(), account.encode()):
        return None
    return DisclosureNotice(
        authorisation_reference=w.authorisation_reference,
        legal_type=w.legal_type,
        case_reference=w.case_reference,
        start_time=w.start_time,
        end_time=w.end_time,
        scope=w.scope,
        approvals=tuple(
            (a.approver_id, a.role, a.approved_at) for a in disclosure.signed_warrant.approvals
        ),
        disclosure_time=w.disclosure_time,
    )


@dataclass(frozen=True)
class WarrantAudit:
    """One warrant as the public sees it."""

    commitment: WarrantCommitment
    log_index: int
    start_time: int
    end_time: int
    duration_s: int
    disclosure_time: int
    scope: tuple[Scope, ...]
    approver_ids: tuple[str, ...]
    status: str  # "upcoming", "active" or "past"
    disclosed: bool
    disclosure_overdue: bool
    record_count: int


@dataclass(frozen=True)
class AuditReport:
    warrants: tuple[WarrantAudit, ...]
    active: int
    upcoming: int
    past: int
    overdue_disclosures: tuple[WarrantCommitment, ...]
    approvals_by_approver: dict[str, int]
    total_records: int
    invalid_entries: tuple[tuple[int, str], ...]
    """(log index, reason) for access entries that failed to parse or to open."""


def audit_access_log(entries: Iterable[bytes], *, now: int) -> AuditReport:
    """Recompute the lawful-access transparency report from the log's entries, in log order."""
    return audit_access_entries(enumerate(entries), now=now)


def audit_access_entries(indexed: Iterable[tuple[int, bytes]], *, now: int) -> AuditReport:
    """`audit_access_log` over (log index, entry) pairs in increasing index order, for callers
    that keep only the lawful-access entries of a long log."""
    commitments: dict[bytes, tuple[int, WarrantCommitmentEntry]] = {}
    disclosed: set[bytes] = set()
    counts: dict[bytes, RecordCountEntry] = {}
    invalid: list[tuple[int, str]] = []
    pending_disclosures: list[tuple[int, WarrantDisclosureEntry]] = []
    for index, data in indexed:
        if not is_access_entry(data):
            continue
        try:
            entry = parse_access_entry(data)
        except InvalidInput as exc:
            invalid.append((index, exc.message))
            continue
        if isinstance(entry, WarrantCommitmentEntry):
            if entry.commitment in commitments:
                invalid.append((index, "commitment logged twice"))
                continue
            commitments[entry.commitment] = (index, entry)
        elif isinstance(entry, WarrantDisclosureEntry):
            pending_disclosures.append((index, entry))
        elif isinstance(entry, RecordCountEntry):
            previous = counts.get(entry.commitment)
            if previous is None or entry.as_of >= previous.as_of:
                counts[entry.commitment] = entry
    for index, disclosure in pending_disclosures:
        found = commitments.get(disclosure.commitment)
        if found is None or found[0] > index:
            invalid.append((index, "disclosure of a commitment not logged before it"))
            continue
        try:
            verify_disclosure(disclosure, found[1])
        except VerificationError as exc:
            invalid.append((index, exc.message))
            continue
        disclosed.add(disclosure.commitment)

    warrants: list[WarrantAudit] = []
    by_approver: dict[str, int] = {}
    for commitment, (index, e) in commitments.items():
        status = "upcoming" if now < e.start_time else "active" if now < e.end_time else "past"
        is_disclosed = commitment in disclosed
        for approver_id in e.approver_ids:
            by_approver[approver_id] = by_approver.get(approver_id, 0) + 1
        count = counts.get(commitment)
        warrants.append(
            WarrantAudit(
                commitment=e.commitment,
                log_index=index,
                start_time=e.start_time,
                end_time=e.end_time,
                duration_s=e.duration_s,
                disclosure_time=e.disclosure_time,
                scope=e.scope,
                approver_ids=e.approver_ids,
                status=status,
                disclosed=is_disclosed,
                disclosure_overdue=not is_disclosed and now >= e.disclosure_time,
                record_count=0 if count is None else count.record_count,
            )
        )
    return AuditReport(
        warrants=tuple(warrants),
        active=sum(w.status == "active" for w in warrants),
        upcoming=sum(w.status == "upcoming" for w in warrants),
        past=sum(w.status == "past" for w in warrants),
        overdue_disclosures=tuple(w.commitment for w in warrants if w.disclosure_overdue),
        approvals_by_approver=dict(sorted(by_approver.items())),
        total_records=sum(w.record_count for w in warrants),
        invalid_entries=tuple(sorted(invalid)),
    )

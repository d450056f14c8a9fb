"""Disclosure notices and the public audit, recomputed from the log alone.

`audit_access_log` reads every lawful-access entry of the log (other entries are skipped) and
reports active, upcoming and past warrants (windows, durations, scope, approvers, the approver
set each was approved under), disclosures (and whether each opens its commitment), disclosure
extensions, overdue disclosures, and the record counts the provider published per warrant.
Anyone holding the log can run it and must get the same answer.

It also follows the approver sets: the chain starts at the configured genesis set (or, without
one, the first version 1 in the log), and each later version must be signed by k members of the
one before. A second version 1 (a "second genesis": a set that does not descend from the real
one, as a provider appointing its own approvers would publish) or a set that does not follow is
flagged, as is an agency key, warrant or extension under a set outside the chain, a disclosure
date beyond the bound, and an extension that is not signed by k approvers, not later, too long
or signed after the disclosure was already due.

`disclosure_notice` is the target client's side: given a disclosure entry and the commitment
entry it opens, it checks the opening and, if the warrant named this account, returns what the
client shows its user.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from accord.errors import AccordError, AuthorizationError, InvalidInput, VerificationError
from accord.protocols.access.agency import verify_agency_key
from accord.protocols.access.approvers import (
    ApproverRole,
    ApproverSet,
    verify_approver_set_update,
    verify_genesis_approver_set,
    verify_threshold_signatures,
)
from accord.protocols.access.log_entries import (
    AgencyKeyEntry,
    ApproverSetEntry,
    DisclosureExtensionEntry,
    RecordCountEntry,
    WarrantCommitmentEntry,
    WarrantDisclosureEntry,
    is_access_entry,
    parse_access_entry,
)
from accord.protocols.access.warrant import (
    DEFAULT_MAX_DISCLOSURE_DELAY_S,
    Scope,
    SignedWarrant,
    WarrantCommitment,
    check_disclosure_delay,
    verify_warrant_opening,
)
from accord.protocols.manifest import LawfulAccessBounds


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
    overdue: bool = False
    """Shown by the target's own device from the warrant it verified: the disclosure date
    passed and the provider had not published the opening."""


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
    return warrant_notice(disclosure.signed_warrant)


def warrant_notice(signed: SignedWarrant) -> DisclosureNotice:
    """What the target is told of a warrant (already verified by the caller)."""
    w = signed.warrant
    return DisclosureNotice(
        authorisation_reference=w.authorisation_reference,
        legal_type=w.legal_type,
        case_reference=w.case_reference,
        start_time=w.start_time,
        end_time=w.end_time,
        scope=w.scope,
        approvals=tuple((a.approver_id, a.role, a.approved_at) for a in signed.approvals),
        disclosure_time=w.disclosure_time,
    )


def verify_disclosure_extension(
    extension: DisclosureExtensionEntry,
    commitment_entry: WarrantCommitmentEntry,
    approver_set: ApproverSet,
    *,
    due: int,
    max_delay_s: int,
) -> int:
    """An extension of a disclosure now due at ``due``: k approvers of the warrant's own set
    signed it no later than ``due``, and it moves the date later by at most ``max_delay_s``.
    Returns the new due date."""
    if not (
        hmac.compare_digest(extension.commitment, commitment_entry.commitment)
        and hmac.compare_digest(extension.approver_set, commitment_entry.approver_set)
        and hmac.compare_digest(extension.approver_set, approver_set.set_hash)
    ):
        raise VerificationError(
            "extension names another warrant or approver set", code="approver_set_mismatch"
        )
    verify_threshold_signatures(
        approver_set, extension.message, extension.signatures, what="disclosure extension"
    )
    if extension.extended_at > due:
        raise AuthorizationError(
            "extension signed after the disclosure was due", code="extension_too_late"
        )
    if extension.disclosure_time <= due:
        raise AuthorizationError(
            "extension does not postpone the disclosure", code="extension_not_later"
        )
    check_disclosure_delay(due, extension.disclosure_time, max_delay_s=max_delay_s)
    return extension.disclosure_time


@dataclass(frozen=True)
class ApproverSetAudit:
    """One logged approver set and where it stands in the chain."""

    log_index: int
    version: int
    set_hash: str
    threshold: int
    members: tuple[tuple[str, str, ApproverRole], ...]  # (id, name, role)
    status: str  # "genesis", "follows", "second genesis", "not configured", "broken: <why>"

    @property
    def in_chain(self) -> bool:
        return self.status in ("genesis", "follows")


@dataclass(frozen=True)
class AgencyAudit:
    log_index: int
    agency_id: str
    name: str
    key_id: str
    approver_set: str
    valid: bool


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
    approver_set: str = ""  # hash (hex) of the set it was approved under
    approver_set_version: int | None = None  # None: not a set of the chain
    disclosure_due: int = 0  # the disclosure time after valid extensions
    extensions: int = 0


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
    """(log index, reason) for access entries that failed to parse, open or verify."""
    approver_sets: tuple[ApproverSetAudit, ...] = ()
    agencies: tuple[AgencyAudit, ...] = ()
    second_genesis: tuple[int, ...] = ()
    """Log indexes of version 1 approver sets other than the chain's genesis."""


@dataclass
class _SetChain:
    """The approver-set chain as the audit follows it (see the module docstring)."""

    genesis: str | None
    current: ApproverSet | None = None
    known: dict[bytes, ApproverSet] = field(default_factory=dict)
    audits: list[ApproverSetAudit] = field(default_factory=list)
    second_genesis: list[int] = field(default_factory=list)

    def take(self, index: int, entry: ApproverSetEntry) -> str | None:
        """Add one set; return a reason if it is flagged."""
        new = entry.signed.approver_set
        status, problem = "follows", None
        try:
            if self.current is None and self.genesis is not None:
                if new.set_hash.hex() != self.genesis:
                    status = "not configured"
                    problem = "approver set is not the configured genesis and does not follow it"
            elif self.current is None:
                verify_genesis_approver_set(entry.signed)
                status = "genesis"
            elif new.version == 1:
                status = "second genesis"
                problem = "a second genesis approver set (it does not descend from the first)"
                self.second_genesis.append(index)
            else:
                verify_approver_set_update(self.current, entry.signed)
        except VerificationError as exc:
            status, problem = f"broken: {exc.code}", f"approver set: {exc.message}"
        if status == "not configured" and new.version == 1 and self.genesis is not None:
            self.second_genesis.append(index)
        if self.current is None and self.genesis is not None and problem is None:
            status = "genesis"  # configured: trusted as the chain's head whatever its version
        if status in ("genesis", "follows"):
            self.current = new
            self.known[bytes(new.set_hash)] = new
        self.audits.append(
            ApproverSetAudit(
                log_index=index,
                version=new.version,
                set_hash=new.set_hash.hex(),
                threshold=new.threshold,
                members=tuple((a.approver_id, a.name, a.role) for a in new.approvers),
                status=status,
            )
        )
        return problem


def audit_access_log(
    entries: Iterable[bytes], *, now: int, bounds: LawfulAccessBounds | None = None
) -> AuditReport:
    """Recompute the lawful-access transparency report from the log's entries, in log order."""
    return audit_access_entries(enumerate(entries), now=now, bounds=bounds)


def audit_access_entries(
    indexed: Iterable[tuple[int, bytes]],
    *,
    now: int,
    bounds: LawfulAccessBounds | None = None,
) -> AuditReport:
    """`audit_access_log` over (log index, entry) pairs in increasing index order, for callers
    that keep only the lawful-access entries of a long log. ``bounds`` are the deployment's
    (the genesis approver set and the disclosure delay cap); without them the chain starts at
    the first version 1 in the log and the default cap applies."""
    genesis = None if bounds is None else bounds.approver_genesis_set
    max_disclosure_delay_s = (
        DEFAULT_MAX_DISCLOSURE_DELAY_S if bounds is None else bounds.max_disclosure_delay_s
    )
    commitments: dict[bytes, tuple[int, WarrantCommitmentEntry]] = {}
    disclosed: set[bytes] = set()
    counts: dict[bytes, RecordCountEntry] = {}
    invalid: list[tuple[int, str]] = []
    pending_disclosures: list[tuple[int, WarrantDisclosureEntry]] = []
    extensions: list[tuple[int, DisclosureExtensionEntry]] = []
    chain = _SetChain(genesis)
    agencies: list[AgencyAudit] = []
    for index, data in indexed:
        if not is_access_entry(data):
            continue
        try:
            entry = parse_access_entry(data)
        except InvalidInput as exc:
            invalid.append((index, exc.message))
            continue
        if isinstance(entry, ApproverSetEntry):
            problem = chain.take(index, entry)
            if problem is not None:
                invalid.append((index, problem))
        elif isinstance(entry, AgencyKeyEntry):
            agencies.append(_audit_agency(index, entry, chain, invalid))
        elif isinstance(entry, DisclosureExtensionEntry):
            extensions.append((index, entry))
        elif isinstance(entry, WarrantCommitmentEntry):
            if entry.commitment in commitments:
                invalid.append((index, "commitment logged twice"))
                continue
            commitments[entry.commitment] = (index, entry)
            if bytes(entry.approver_set) not in chain.known:
                invalid.append((index, "warrant approved under an approver set not in the chain"))
            try:
                check_disclosure_delay(
                    entry.end_time, entry.disclosure_time, max_delay_s=max_disclosure_delay_s
                )
            except AuthorizationError as exc:
                invalid.append((index, f"{exc.code}: {exc.message}"))
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
    due = {c: e.disclosure_time for c, (_, e) in commitments.items()}
    extended: dict[bytes, int] = {}
    for index, extension in extensions:
        found = commitments.get(extension.commitment)
        approver_set = chain.known.get(bytes(extension.approver_set))
        if found is None or found[0] > index or approver_set is None:
            invalid.append((index, "extension of a commitment not logged before it, or its set"))
            continue
        try:
            due[extension.commitment] = verify_disclosure_extension(
                extension,
                found[1],
                approver_set,
                due=due[extension.commitment],
                max_delay_s=max_disclosure_delay_s,
            )
        except AccordError as exc:
            invalid.append((index, f"{exc.code}: {exc.message}"))
            continue
        extended[extension.commitment] = extended.get(extension.commitment, 0) + 1

    warrants: list[WarrantAudit] = []
    by_approver: dict[str, int] = {}
    for commitment, (index, e) in commitments.items():
        status = "upcoming" if now < e.start_time else "active" if now < e.end_time else "past"
        is_disclosed = commitment in disclosed
        for approver_id in e.approver_ids:
            by_approver[approver_id] = by_approver.get(approver_id, 0) + 1
        count = counts.get(commitment)
        in_chain = chain.known.get(bytes(e.approver_set))
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
                disclosure_overdue=not is_disclosed and now >= due[commitment],
                record_count=0 if count is None else count.record_count,
                approver_set=e.approver_set.hex(),
                approver_set_version=None if in_chain is None else in_chain.version,
                disclosure_due=due[commitment],
                extensions=extended.get(commitment, 0),
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
        approver_sets=tuple(chain.audits),
        agencies=tuple(agencies),
        second_genesis=tuple(chain.second_genesis),
    )


def _audit_agency(
    index: int, entry: AgencyKeyEntry, chain: _SetChain, invalid: list[tuple[int, str]]
) -> AgencyAudit:
    key = entry.signed.key
    approver_set = chain.known.get(bytes(key.approver_set))
    valid = False
    if approver_set is None:
        invalid.append((index, "agency key registered under an approver set not in the chain"))
    else:
        try:
            verify_agency_key(entry.signed, approver_set)
            valid = True
        except VerificationError as exc:
            invalid.append((index, f"agency key: {exc.message}"))
    return AgencyAudit(
        log_index=index,
        agency_id=key.agency_id,
        name=key.name,
        key_id=key.key_id.hex(),
        approver_set=key.approver_set.hex(),
        valid=valid,
    )

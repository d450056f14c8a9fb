"""Authorities' objects (docs/lawful-access.md §3-4): approver sets (the first signed by k of
its own members, each next one by k members of the current set), agency keys (signed by k
approvers) and warrants (signed by k approvers of the current set), each checked, then
committed to the transparency log. A warrant's entry is a hiding commitment: never the target.

Every refusal is a 403 with the stable code of the check that failed (`threshold_not_met`,
`approver_not_member`, `agency_key_unregistered`, `warrant_expired`...).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from accord.clock import SYSTEM_CLOCK, Clock, now_s
from accord.errors import (
    AccordError,
    AuthorizationError,
    Conflict,
    NotFound,
    ProtocolError,
    VerificationError,
)
from accord.protocols.access.agency import AgencyKey, SignedAgencyKey, verify_agency_key
from accord.protocols.access.approvers import (
    ApproverSet,
    SignedApproverSet,
    verify_approver_set_update,
    verify_genesis_approver_set,
)
from accord.protocols.access.audit import verify_disclosure_extension
from accord.protocols.access.device import verify_warrant_submission
from accord.protocols.access.log_entries import (
    AgencyKeyEntry,
    ApproverSetEntry,
    DisclosureExtensionEntry,
    WarrantCommitmentEntry,
)
from accord.protocols.access.timeparse import parse_duration
from accord.protocols.access.warrant import (
    DEFAULT_MAX_DISCLOSURE_DELAY_S,
    DEFAULT_MAX_START_SKEW_S,
    WARRANT_MAX_DURATION_S,
    Scope,
    SignedWarrant,
    commit_warrant,
)
from accord.server.access.ledger import (
    KIND_AGENCY_KEY,
    KIND_APPROVER_SET,
    KIND_COMMITMENT,
    KIND_EXTENSION,
    AccessLedger,
)
from accord.server.access.metadata import DeliveryMetadata
from accord.storage.schema import access_warrants, accounts
from accord.wire.access import (
    MAX_DELIVERIES_PER_SYNC,
    AgencyKeyRegistered,
    ApproverSetPublished,
    ApproverSets,
    DisclosureExtended,
    WarrantSubmitted,
)

WARRANT_MAX_DURATION_ENV = "ACCORD_WARRANT_MAX_DURATION"
START_SKEW_ENV = "ACCORD_WARRANT_MAX_START_SKEW"
DISCLOSURE_DELAY_ENV = "ACCORD_WARRANT_MAX_DISCLOSURE_DELAY"
_ZERO_REF = bytes(32)


def _duration_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw is None else parse_duration(raw)


def warrant_max_duration_from_env() -> int:
    """The longest window this provider accepts: ACCORD_WARRANT_MAX_DURATION, else 30 days."""
    return _duration_from_env(WARRANT_MAX_DURATION_ENV, WARRANT_MAX_DURATION_S)


def refused(exc: AccordError) -> AuthorizationError:
    """A check of an authority's object failed: 403 with that check's code and message."""
    return AuthorizationError(exc.message, code=exc.code)


def _scope_text(scope: Sequence[Scope]) -> str:
    return ",".join(s.value for s in scope)


class Authorities:
    def __init__(
        self,
        ledger: AccessLedger,
        metadata: DeliveryMetadata,
        *,
        max_duration_s: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.ledger = ledger
        self.metadata = metadata
        self.max_duration_s = max_duration_s
        # The provider's own bounds (W11, W12). Devices apply theirs whatever these say.
        self.max_start_skew_s = _duration_from_env(START_SKEW_ENV, DEFAULT_MAX_START_SKEW_S)
        self.max_disclosure_delay_s = _duration_from_env(
            DISCLOSURE_DELAY_ENV, DEFAULT_MAX_DISCLOSURE_DELAY_S
        )
        self.clock = clock

    def current_approver_set(self) -> ApproverSet | None:
        sets = self.ledger.logged(KIND_APPROVER_SET)
        if not sets:
            return None
        entry: ApproverSetEntry = self.ledger.parsed_entry(sets[-1][0])
        return entry.signed.approver_set

    def require_approver_set(self) -> ApproverSet:
        current = self.current_approver_set()
        if current is None:
            raise Conflict("no approver set has been published", code="no_approver_set")
        return current

    def publish_approver_set(self, signed: SignedApproverSet) -> ApproverSetPublished:
        """The first set must be signed by k of its own members; each next one by k members of
        the current set (docs/lawful-access.md §3)."""
        current = self.current_approver_set()
        try:
            if current is None:
                new, ref = verify_genesis_approver_set(signed), _ZERO_REF
            else:
                new, ref = verify_approver_set_update(current, signed), current.set_hash
        except VerificationError as exc:
            raise refused(exc) from None
        index = self.ledger.publish(
            KIND_APPROVER_SET, ref, ApproverSetEntry(signed).to_bytes(), version=new.version
        )
        return ApproverSetPublished(index=index, version=new.version, set_hash=new.set_hash.hex())

    def approver_sets(self, since: int) -> ApproverSets:
        note, size = self.ledger.checkpoint()
        return ApproverSets(
            checkpoint=note,
            consistency_proof=self.ledger.consistency(since, size),
            sets=[
                self.ledger.proven(i, size)
                for i, _ in self.ledger.logged(KIND_APPROVER_SET)
                if i < size
            ],
        )

    def register_agency_key(self, signed: SignedAgencyKey) -> AgencyKeyRegistered:
        current = self.require_approver_set()
        try:
            key = verify_agency_key(signed, current)
        except VerificationError as exc:
            raise refused(exc) from None
        index = self.ledger.publish(KIND_AGENCY_KEY, key.key_id, AgencyKeyEntry(signed).to_bytes())
        return AgencyKeyRegistered(index=index, key_id=key.key_id.hex())

    def agency_key(self, key_id: bytes) -> tuple[int, AgencyKey] | None:
        found = self.ledger.logged(KIND_AGENCY_KEY, ref=key_id)
        if not found:
            return None
        entry: AgencyKeyEntry = self.ledger.parsed_entry(found[0][0])
        return found[0][0], entry.signed.key

    def extend_disclosure(self, extension: DisclosureExtensionEntry) -> DisclosureExtended:
        """k approvers of the warrant's set postpone its disclosure: checked as every device
        and auditor will check it (`verify_disclosure_extension`), logged, then applied."""
        with self.ledger.db.read() as conn:
            row = conn.execute(
                select(access_warrants).where(access_warrants.c.commitment == extension.commitment)
            ).first()
        if row is None or row.commitment_index is None:
            raise NotFound("no such warrant")
        if row.disclosure_index is not None:
            raise Conflict("this warrant is already disclosed", code="already_disclosed")
        current = self.require_approver_set()
        committed = self.ledger.parsed_entry(int(row.commitment_index))
        try:
            due = verify_disclosure_extension(
                extension,
                committed,
                current,
                due=int(row.disclosure_time),
                max_delay_s=self.max_disclosure_delay_s,
            )
        except (VerificationError, AuthorizationError) as exc:
            raise refused(exc) from None
        data = extension.to_bytes()

        def _apply(conn: Connection, index: int | None) -> None:
            if index is not None:
                conn.execute(
                    update(access_warrants)
                    .where(access_warrants.c.id == row.id)
                    .values(disclosure_time=due)
                )

        index = self.ledger.publish(
            KIND_EXTENSION, hashlib.sha256(data).digest(), data, also=_apply
        )
        return DisclosureExtended(index=index, disclosure_time=due)

    def submit_warrant(self, signed: SignedWarrant) -> WarrantSubmitted:
        """Flow step 4: check, commit in the log (public fields only), then it is delivered."""
        now = now_s(self.clock)
        current = self.require_approver_set()
        warrant = signed.warrant
        found = self.agency_key(warrant.delivery_key_id)
        if found is None or found[1].approver_set != current.set_hash:
            raise AuthorizationError(
                "warrant names an agency key that is not registered under the current approver set",
                code="agency_key_unregistered",
            )
        key_index, key = found
        try:
            approver_ids = verify_warrant_submission(
                signed,
                approver_set=current,
                agency_key=key,
                now=now,
                max_duration_s=self.max_duration_s,
                max_start_skew_s=self.max_start_skew_s,
                max_disclosure_delay_s=self.max_disclosure_delay_s,
            )
        except (VerificationError, ProtocolError) as exc:
            raise refused(exc) from None
        commitment, nonce = commit_warrant(signed)
        entry = WarrantCommitmentEntry(
            commitment=commitment,
            start_time=warrant.start_time,
            end_time=warrant.end_time,
            disclosure_time=warrant.disclosure_time,
            scope=warrant.scope,
            approver_ids=approver_ids,
            approver_set=warrant.approver_set,
            delivery_key_id=warrant.delivery_key_id,
        )

        def _rows(conn: Connection, index: int | None) -> None:
            if index is not None:
                # The append returned once a checkpoint containing the entry went to the
                # witnesses: that checkpoint dates the commitment for the devices (W11).
                conn.execute(
                    update(access_warrants)
                    .where(access_warrants.c.commitment == commitment)
                    .values(
                        commitment_index=index, commitment_checkpoint=self.ledger.log.checkpoint()
                    )
                )
                return
            row = conn.execute(
                select(accounts.c.id).where(accounts.c.name == warrant.target_identifier)
            ).first()
            if row is None:
                raise NotFound("no such account")
            open_now = conn.execute(
                select(func.count())
                .select_from(access_warrants)
                .where(
                    access_warrants.c.target_account_id == row.id,
                    access_warrants.c.end_time > now,
                )
            ).scalar_one()
            if open_now >= MAX_DELIVERIES_PER_SYNC:
                raise Conflict("too many open warrants for this account", code="too_many_warrants")
            existing = conn.execute(
                select(access_warrants.c.id).where(
                    access_warrants.c.warrant_id == signed.warrant_id
                )
            ).first()
            if existing is not None:
                raise Conflict("this warrant was already submitted", code="warrant_replayed")
            conn.execute(
                insert(access_warrants).values(
                    warrant_id=signed.warrant_id,
                    commitment=commitment,
                    target_account_id=row.id,
                    signed_warrant=signed.to_bytes().decode("utf-8"),
                    nonce=nonce,
                    scope=_scope_text(warrant.scope),
                    start_time=warrant.start_time,
                    end_time=warrant.end_time,
                    disclosure_time=warrant.disclosure_time,
                    commitment_index=None,
                    agency_key_index=key_index,
                    disclosure_index=None,
                    final_count_index=None,
                    counted_records=0,
                    counted_at=now,
                    created_at=now,
                )
            )

        try:
            index = self.ledger.publish(KIND_COMMITMENT, commitment, entry.to_bytes(), also=_rows)
        except IntegrityError:  # the same warrant submitted twice at once
            raise Conflict("this warrant was already submitted", code="warrant_replayed") from None
        self.metadata.refresh_targets()
        return WarrantSubmitted(
            warrant_id=signed.warrant_id.hex(), commitment=commitment.hex(), index=index
        )

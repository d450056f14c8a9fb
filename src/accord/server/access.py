"""Accountable lawful access on the server: the provider's part of docs/lawful-access.md §5.

The provider publishes approver sets (operator, signed by k approvers) and agency keys (signed by
k approvers) as log entries; accepts a warrant signed by k approvers of the current set, commits
to it in the log (a hiding commitment, never the target) and delivers it with its proofs to the
target's devices on their ordinary sync; stores the records those devices seal to the agency
(it holds no key to them) and refuses records outside the window; records delivery metadata of
a metadata-scope target during the window only (no delivery history otherwise); publishes
record counts after each window and, after the disclosure time, the opening of the warrant.

Every refusal of an authority's object is a 403 with the stable code of the check that failed
(`threshold_not_met`, `approver_not_member`, `agency_key_unregistered`, `warrant_expired`...).
`AccessService` holds the logic; routes/access.py maps it to HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.exc import IntegrityError

from accord.errors import (
    AccordError,
    AuthenticationError,
    AuthorizationError,
    Conflict,
    InvalidInput,
    NotFound,
    ProtocolError,
    TooLarge,
    VerificationError,
)
from accord.primitives.encoding import b64encode, canonical_json
from accord.primitives.hpke import hpke_seal
from accord.protocols.access.agency import AgencyKey, SignedAgencyKey, verify_agency_key
from accord.protocols.access.approvers import (
    ApproverSet,
    SignedApproverSet,
    verify_approver_set_update,
    verify_genesis_approver_set,
)
from accord.protocols.access.device import WarrantDelivery, verify_warrant_submission
from accord.protocols.access.log_entries import (
    AgencyKeyEntry,
    ApproverSetEntry,
    RecordCountEntry,
    WarrantCommitmentEntry,
    WarrantDisclosureEntry,
    parse_access_entry,
)
from accord.protocols.access.records import SealedRecord, check_record_upload
from accord.protocols.access.timeparse import parse_duration
from accord.protocols.access.warrant import (
    WARRANT_MAX_DURATION_S,
    Scope,
    SignedWarrant,
    Warrant,
    WarrantCommitment,
    commit_warrant,
)
from accord.server.messaging import AuthedDevice, MessagingService
from accord.server.translog import LogService
from accord.storage.db import Database
from accord.storage.schema import (
    access_delivery_metadata,
    access_log_index,
    access_records,
    access_warrants,
    accounts,
)
from accord.wire.access import (
    MAX_DELIVERIES_PER_SYNC,
    MAX_DISCLOSURES_PER_SYNC,
    MAX_ENTRIES_PER_PAGE,
    MAX_METADATA_PER_PAGE,
    MAX_RECORDS_PER_PAGE,
    AccessEntries,
    AccessSync,
    AgencyChallenge,
    AgencyKeyRegistered,
    AgencyWarrant,
    ApproverSetPublished,
    ApproverSets,
    DeliveryMetadata,
    LoggedEntry,
    MetadataPage,
    ProvenDisclosure,
    ProvenEntry,
    RecordPage,
    RecordsStored,
    StoredRecord,
    WarrantSubmitted,
    agency_challenge_info,
)
from accord.wire.messaging import SendAccepted, SendRequest

log = logging.getLogger("accord.server.access")

ACCESS_KEY_FILE = "access-token-key"
WARRANT_MAX_DURATION_ENV = "ACCORD_WARRANT_MAX_DURATION"
MAX_SIGNED_OBJECT_BYTES = 64 * 1024
MAX_RECORD_OBJECT_BYTES = 512 * 1024
"""A sealed record as it travels: up to 256 KiB of ciphertext, in base64, and its labels."""
HOUSEKEEPING_INTERVAL_S = 1.0
RECORD_COUNT_GRACE_S = 1
"""The final record count is published this long after the window ends (uploads accepted just
before the end have committed by then)."""
RECORD_COUNT_INTERVAL_S = 3600
"""While a window is open, its record count is published at most this often (if it changed)."""
AGENCY_TOKEN_TTL_S = 600
AGENCY_TOKEN_PURPOSE = b"accord-agency-token-v1\n"
_AGENCY_TOKEN_BYTES = 32 + 8 + 32
_ZERO_REF = bytes(32)

KIND_APPROVER_SET = "approver_set"
KIND_AGENCY_KEY = "agency_key"
KIND_COMMITMENT = "commitment"
KIND_DISCLOSURE = "disclosure"
KIND_RECORD_COUNT = "record_count"


def now_s() -> int:
    return int(time.time())


def warrant_max_duration_from_env() -> int:
    """The longest window this provider accepts: ACCORD_WARRANT_MAX_DURATION, else 30 days."""
    raw = os.environ.get(WARRANT_MAX_DURATION_ENV)
    return WARRANT_MAX_DURATION_S if raw is None else parse_duration(raw)


def load_or_create_secret(data_dir: FsPath) -> bytes:
    """DATA_DIR/access-token-key (mode 0600): the MAC key of agency fetch tokens."""
    path = data_dir / ACCESS_KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except ValueError:
        secret = b""
    if len(secret) != 32:
        raise InvalidInput(f"{path} is not a 32-byte hex key")
    return secret


def parse_signed_object(
    obj: dict[str, Any],
    reader: Callable[[object], Any],
    what: str,
    *,
    max_bytes: int = MAX_SIGNED_OBJECT_BYTES,
) -> Any:
    """Re-encode a signed object canonically (bounding its size) and read it strictly."""
    data = canonical_json(obj)
    if len(data) > max_bytes:
        raise TooLarge(f"{what} exceeds {max_bytes} bytes")
    return reader(obj)


def refused(exc: AccordError) -> AuthorizationError:
    """A check of an authority's object failed: 403 with that check's code and message."""
    return AuthorizationError(exc.message, code=exc.code)


def _b64_size(text: str) -> int:
    """Decoded length of standard padded base64, without decoding it."""
    return len(text) * 3 // 4 - (2 if text.endswith("==") else 1 if text.endswith("=") else 0)


def _scope_text(scope: Sequence[Scope]) -> str:
    return ",".join(s.value for s in scope)


@dataclass(frozen=True)
class _Target:
    warrant_pk: int
    start_time: int
    end_time: int


class AccessService:
    def __init__(
        self,
        db: Database,
        log_service: LogService,
        messaging: MessagingService,
        data_dir: FsPath,
        *,
        max_duration_s: int | None = None,
        housekeeping: bool = True,
    ) -> None:
        self.db = db
        self.log = log_service
        self.max_duration_s = (
            warrant_max_duration_from_env() if max_duration_s is None else max_duration_s
        )
        self._secret = load_or_create_secret(data_dir)
        self._parsed: dict[int, Any] = {}  # log index -> parsed entry (entries never change)
        self._warrants: dict[int, Warrant] = {}  # warrant pk -> warrant
        # account -> warrants with metadata in scope that are upcoming or open (see observe_send)
        self._metadata_targets: dict[str, tuple[_Target, ...]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        messaging.send_observers.append(self.observe_send)
        if housekeeping:
            self._thread = threading.Thread(
                target=self._housekeep_forever, name="accord-access", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # --- the log ------------------------------------------------------------------------------

    def _entry(self, index: int) -> bytes:
        return self.log.store.entries(index, index + 1)[0]

    def _parsed_entry(self, index: int) -> Any:
        entry = self._parsed.get(index)
        if entry is None:
            entry = parse_access_entry(self._entry(index))
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            self._parsed[index] = entry
        return entry

    def _checkpoint(self) -> tuple[str, int]:
        note = self.log.checkpoint()
        return note, int(note.split("\n", 2)[1])

    def _proven(self, index: int, size: int) -> ProvenEntry:
        return ProvenEntry(
            index=index,
            entry=b64encode(self._entry(index)),
            proof=[h.hex() for h in self.log.store.inclusion_proof(index, size)],
        )

    def _consistency(self, since: int, size: int) -> list[str]:
        if 0 < since < size:
            return [h.hex() for h in self.log.store.consistency_proof(since, size)]
        return []

    def _publish_blocking(
        self,
        kind: str,
        ref: bytes,
        entry: bytes,
        *,
        version: int | None = None,
        also: Callable[[Connection, int | None], None] | None = None,
    ) -> int:
        """Reserve (kind, ref), append the entry, then record where it went.

        The reservation's unique key refuses a second publication of the same thing, across
        server processes, before anything reaches the log. ``also`` runs in the reserving
        transaction (with None) and in the completing one (with the log index).
        """

        def _reserve(conn: Connection) -> int:
            inserted = conn.execute(
                insert(access_log_index).values(
                    kind=kind, ref=ref, version=version, log_index=None, created_at=now_s()
                )
            ).inserted_primary_key
            assert inserted is not None
            if also is not None:
                also(conn, None)
            return int(inserted[0])

        try:
            pk = self.db.transact(_reserve)
        except IntegrityError:
            raise Conflict(
                f"this {kind.replace('_', ' ')} is already published", code=f"{kind}_exists"
            ) from None
        try:
            index = self.log.append([entry])
        except BaseException:
            self.db.transact(
                lambda conn: conn.execute(
                    sa_delete(access_log_index).where(access_log_index.c.id == pk)
                )
            )
            raise

        def _complete(conn: Connection) -> None:
            conn.execute(
                update(access_log_index).where(access_log_index.c.id == pk).values(log_index=index)
            )
            if also is not None:
                also(conn, index)

        self.db.transact(_complete)
        return index

    def _logged(self, kind: str, *, ref: bytes | None = None) -> list[tuple[int, int | None]]:
        """(log index, version) of published entries of one kind, in log order."""
        query = select(access_log_index.c.log_index, access_log_index.c.version).where(
            access_log_index.c.kind == kind, access_log_index.c.log_index.is_not(None)
        )
        if ref is not None:
            query = query.where(access_log_index.c.ref == ref)
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(access_log_index.c.log_index)).all()
        return [(int(r.log_index), r.version) for r in rows]

    # --- approver sets and agency keys --------------------------------------------------------

    def current_approver_set(self) -> ApproverSet | None:
        sets = self._logged(KIND_APPROVER_SET)
        if not sets:
            return None
        entry: ApproverSetEntry = self._parsed_entry(sets[-1][0])
        return entry.signed.approver_set

    def _require_approver_set(self) -> ApproverSet:
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
        index = self._publish_blocking(
            KIND_APPROVER_SET, ref, ApproverSetEntry(signed).to_bytes(), version=new.version
        )
        return ApproverSetPublished(index=index, version=new.version, set_hash=new.set_hash.hex())

    def approver_sets(self, since: int) -> ApproverSets:
        note, size = self._checkpoint()
        return ApproverSets(
            checkpoint=note,
            consistency_proof=self._consistency(since, size),
            sets=[self._proven(i, size) for i, _ in self._logged(KIND_APPROVER_SET) if i < size],
        )

    def register_agency_key(self, signed: SignedAgencyKey) -> AgencyKeyRegistered:
        current = self._require_approver_set()
        try:
            key = verify_agency_key(signed, current)
        except VerificationError as exc:
            raise refused(exc) from None
        index = self._publish_blocking(
            KIND_AGENCY_KEY, key.key_id, AgencyKeyEntry(signed).to_bytes()
        )
        return AgencyKeyRegistered(index=index, key_id=key.key_id.hex())

    def _agency_key(self, key_id: bytes) -> tuple[int, AgencyKey] | None:
        found = self._logged(KIND_AGENCY_KEY, ref=key_id)
        if not found:
            return None
        entry: AgencyKeyEntry = self._parsed_entry(found[0][0])
        return found[0][0], entry.signed.key

    # --- warrants -----------------------------------------------------------------------------

    def submit_warrant(self, signed: SignedWarrant) -> WarrantSubmitted:
        """Flow step 4: check, commit in the log (public fields only), then it is delivered."""
        now = now_s()
        current = self._require_approver_set()
        warrant = signed.warrant
        found = self._agency_key(warrant.delivery_key_id)
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
                conn.execute(
                    update(access_warrants)
                    .where(access_warrants.c.commitment == commitment)
                    .values(commitment_index=index)
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
            index = self._publish_blocking(
                KIND_COMMITMENT, commitment, entry.to_bytes(), also=_rows
            )
        except IntegrityError:  # the same warrant submitted twice at once
            raise Conflict("this warrant was already submitted", code="warrant_replayed") from None
        self.refresh_metadata_targets()
        return WarrantSubmitted(
            warrant_id=signed.warrant_id.hex(), commitment=commitment.hex(), index=index
        )

    def access_entries(self, start: int) -> AccessEntries:
        """Every lawful-access entry the provider appended, from log index ``start`` on."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(access_log_index.c.log_index)
                .where(
                    access_log_index.c.log_index.is_not(None),
                    access_log_index.c.log_index >= start,
                )
                .order_by(access_log_index.c.log_index)
                .limit(MAX_ENTRIES_PER_PAGE + 1)
            ).all()
        indexes = [int(r.log_index) for r in rows]
        return AccessEntries(
            entries=[
                LoggedEntry(index=i, entry=b64encode(self._entry(i)))
                for i in indexes[:MAX_ENTRIES_PER_PAGE]
            ],
            more=len(indexes) > MAX_ENTRIES_PER_PAGE,
        )

    def _warrant(self, row: Any) -> Warrant:
        warrant = self._warrants.get(int(row.id))
        if warrant is None:
            warrant = SignedWarrant.from_bytes(row.signed_warrant.encode("utf-8")).warrant
            if len(self._warrants) > 10_000:
                self._warrants.clear()
            self._warrants[int(row.id)] = warrant
        return warrant

    # --- the target's devices -----------------------------------------------------------------

    def sync(
        self, dev: AuthedDevice, *, since: int, sets_after: int, disclosures_from: int
    ) -> AccessSync:
        """Flow step 5 and 9, for one device: new approver sets, this account's open warrants
        as deliveries, and published disclosures, all proven against one checkpoint."""
        now = now_s()
        note, size = self._checkpoint()
        consistency = self._consistency(since, size)
        sets = [
            self._proven(i, size)
            for i, version in self._logged(KIND_APPROVER_SET)
            if i < size and (version or 0) > sets_after
        ]
        with self.db.read() as conn:
            rows = conn.execute(
                select(access_warrants)
                .where(
                    access_warrants.c.target_account_id == dev.account_id,
                    access_warrants.c.commitment_index.is_not(None),
                    access_warrants.c.commitment_index < size,
                    access_warrants.c.start_time <= now,
                    access_warrants.c.end_time > now,
                )
                .order_by(access_warrants.c.id)
                .limit(MAX_DELIVERIES_PER_SYNC)
            ).all()
            disclosed = conn.execute(
                select(access_log_index.c.log_index, access_warrants.c.commitment_index)
                .join(access_warrants, access_warrants.c.commitment == access_log_index.c.ref)
                .where(
                    access_log_index.c.kind == KIND_DISCLOSURE,
                    access_log_index.c.log_index.is_not(None),
                    access_log_index.c.log_index >= disclosures_from,
                    access_log_index.c.log_index < size,
                )
                .order_by(access_log_index.c.log_index)
                .limit(MAX_DISCLOSURES_PER_SYNC + 1)
            ).all()
        deliveries = []
        for row in rows:
            ci, ki = int(row.commitment_index), int(row.agency_key_index)
            delivery = WarrantDelivery(
                signed_warrant=SignedWarrant.from_bytes(row.signed_warrant.encode("utf-8")),
                nonce=bytes(row.nonce),
                commitment_entry=self._entry(ci),
                commitment_index=ci,
                commitment_proof=tuple(self.log.store.inclusion_proof(ci, size)),
                agency_key_entry=self._entry(ki),
                agency_key_index=ki,
                agency_key_proof=tuple(self.log.store.inclusion_proof(ki, size)),
                checkpoint_note=note,
                consistency_proof=tuple(bytes.fromhex(h) for h in consistency),
            )
            deliveries.append(delivery.to_obj())
        return AccessSync(
            checkpoint=note,
            consistency_proof=consistency,
            approver_sets=sets,
            deliveries=deliveries,
            disclosures=[
                ProvenDisclosure(
                    disclosure=self._proven(int(d.log_index), size),
                    commitment=self._proven(int(d.commitment_index), size),
                )
                for d in disclosed[:MAX_DISCLOSURES_PER_SYNC]
            ],
            more_disclosures=len(disclosed) > MAX_DISCLOSURES_PER_SYNC,
        )

    def store_records(self, dev: AuthedDevice, records: Sequence[SealedRecord]) -> RecordsStored:
        """Flow step 7: keep a device's sealed records for a warrant on its own account, inside
        the window only. Re-sending a stored record is harmless; a different one at the same
        place is refused."""
        now = now_s()

        def _tx(conn: Connection) -> int:
            stored = 0
            rows: dict[bytes, Any] = {}
            for record in records:
                row = rows.get(record.warrant_id)
                if row is None:
                    row = conn.execute(
                        select(access_warrants).where(
                            access_warrants.c.warrant_id == record.warrant_id
                        )
                    ).first()
                    if (
                        row is None
                        or row.commitment_index is None
                        or row.target_account_id != dev.account_id
                    ):
                        raise NotFound()
                    rows[record.warrant_id] = row
                if not hmac.compare_digest(record.device_id.encode(), dev.device_id.encode()):
                    raise AuthorizationError(
                        "a device uploads its own records only", code="record_wrong_device"
                    )
                check_record_upload(self._warrant(row), record, now=now)
                data = record.to_bytes()
                existing = conn.execute(
                    select(access_records.c.record).where(
                        access_records.c.warrant_pk == row.id,
                        access_records.c.device_id == record.device_id,
                        access_records.c.seq == record.seq,
                    )
                ).first()
                if existing is not None:
                    if not hmac.compare_digest(bytes(existing.record), data):
                        raise Conflict(
                            "another record is stored at this sequence number",
                            code="record_conflict",
                        )
                    continue
                conn.execute(
                    insert(access_records).values(
                        warrant_pk=row.id,
                        device_id=record.device_id,
                        seq=record.seq,
                        record=data,
                        received_at=now,
                    )
                )
                stored += 1
            return stored

        return RecordsStored(stored=self.db.transact(_tx))

    # --- delivery metadata (metadata scope) ---------------------------------------------------

    def refresh_metadata_targets(self) -> None:
        now = now_s()
        with self.db.read() as conn:
            rows = conn.execute(
                select(
                    access_warrants.c.id,
                    access_warrants.c.scope,
                    access_warrants.c.start_time,
                    access_warrants.c.end_time,
                    accounts.c.name,
                )
                .join(accounts, accounts.c.id == access_warrants.c.target_account_id)
                .where(
                    access_warrants.c.commitment_index.is_not(None),
                    access_warrants.c.end_time > now,
                )
            ).all()
        targets: dict[str, tuple[_Target, ...]] = {}
        for r in rows:
            if Scope.METADATA.value in r.scope.split(","):
                target = _Target(int(r.id), int(r.start_time), int(r.end_time))
                targets[r.name] = (*targets.get(r.name, ()), target)
        self._metadata_targets = targets

    async def observe_send(
        self, dev: AuthedDevice, req: SendRequest, accepted: SendAccepted
    ) -> None:
        """A send observer: for a target under a metadata warrant, during its window only,
        record counterpart, time and size of each delivery to or from it. Nothing otherwise."""
        targets = self._metadata_targets
        if not targets:
            return
        try:
            rows = self._metadata_rows(dev, req, accepted, targets)
            if rows:

                def _tx(conn: Connection) -> None:
                    conn.execute(insert(access_delivery_metadata), rows)

                await self.db.transact_async(_tx)
        except Exception as exc:  # never fail a send that has already been stored
            log.warning("delivery metadata not recorded (%s)", type(exc).__name__)

    @staticmethod
    def _metadata_rows(
        dev: AuthedDevice,
        req: SendRequest,
        accepted: SendAccepted,
        targets: dict[str, tuple[_Target, ...]],
    ) -> list[dict[str, Any]]:
        at_ms = accepted.accepted_at
        at_s = at_ms // 1000
        others = sorted({r.account for r in req.recipients} - {dev.account})

        def size_for(account: str | None) -> int:
            if req.megolm is not None:
                return _b64_size(req.megolm)
            sizes = [_b64_size(c.olm.body) for c in req.copies if account in (None, c.account)]
            return max(sizes, default=0)

        rows: list[dict[str, Any]] = []
        for t in targets.get(dev.account, ()):
            if t.start_time <= at_s < t.end_time:
                rows += [
                    {
                        "warrant_pk": t.warrant_pk,
                        "direction": "sent",
                        "counterpart": other,
                        "occurred_at": at_ms,
                        "size": size_for(other),
                    }
                    for other in others
                ]
        for other in others:
            for t in targets.get(other, ()):
                if t.start_time <= at_s < t.end_time:
                    rows.append(
                        {
                            "warrant_pk": t.warrant_pk,
                            "direction": "received",
                            "counterpart": dev.account,
                            "occurred_at": at_ms,
                            "size": size_for(other),
                        }
                    )
        return rows

    # --- the agency ---------------------------------------------------------------------------

    def _warrant_row(self, warrant_id: bytes) -> Any:
        with self.db.read() as conn:
            row = conn.execute(
                select(access_warrants).where(access_warrants.c.warrant_id == warrant_id)
            ).first()
        if row is None or row.commitment_index is None:
            raise NotFound()
        return row

    def agency_challenge(self, warrant_id: bytes) -> AgencyChallenge:
        """A fetch token for one warrant, sealed to the agency key the warrant names: whoever
        opens it holds that key. The token is a MAC, so no server state is kept."""
        row = self._warrant_row(warrant_id)
        key_entry: AgencyKeyEntry = self._parsed_entry(int(row.agency_key_index))
        key = key_entry.signed.key
        expires = now_s() + AGENCY_TOKEN_TTL_S
        token = make_agency_token(self._secret, warrant_id, expires)
        sealed = hpke_seal(
            key.public_key,
            token,
            info=agency_challenge_info(),
            aad=warrant_id,
            aead=key.aead,
        )
        return AgencyChallenge(
            enc=b64encode(sealed.enc), ciphertext=b64encode(sealed.ciphertext), expires_at=expires
        )

    def check_agency_token(self, warrant_id: bytes, token: str) -> None:
        check_agency_token(self._secret, warrant_id, token, now=now_s())

    def agency_warrant(self, warrant_id: bytes) -> AgencyWarrant:
        row = self._warrant_row(warrant_id)
        ki = int(row.agency_key_index)
        return AgencyWarrant(
            signed_warrant=SignedWarrant.from_bytes(row.signed_warrant.encode("utf-8")).to_obj(),
            commitment=bytes(row.commitment).hex(),
            commitment_index=int(row.commitment_index),
            agency_key=LoggedEntry(index=ki, entry=b64encode(self._entry(ki))),
        )

    def agency_records(self, warrant_id: bytes, *, after: int, limit: int) -> RecordPage:
        """Flow step 8: the records in the order they were stored."""
        row = self._warrant_row(warrant_id)
        limit = max(1, min(limit, MAX_RECORDS_PER_PAGE))
        with self.db.read() as conn:
            rows = conn.execute(
                select(access_records)
                .where(access_records.c.warrant_pk == row.id, access_records.c.id > after)
                .order_by(access_records.c.id)
                .limit(limit + 1)
            ).all()
        return RecordPage(
            records=[
                StoredRecord(
                    id=int(r.id),
                    received_at=int(r.received_at),
                    record=SealedRecord.from_bytes(bytes(r.record)).to_obj(),
                )
                for r in rows[:limit]
            ],
            more=len(rows) > limit,
        )

    def agency_metadata(self, warrant_id: bytes, *, after: int, limit: int) -> MetadataPage:
        row = self._warrant_row(warrant_id)
        limit = max(1, min(limit, MAX_METADATA_PER_PAGE))
        with self.db.read() as conn:
            rows = conn.execute(
                select(access_delivery_metadata)
                .where(
                    access_delivery_metadata.c.warrant_pk == row.id,
                    access_delivery_metadata.c.id > after,
                )
                .order_by(access_delivery_metadata.c.id)
                .limit(limit + 1)
            ).all()
        return MetadataPage(
            items=[
                DeliveryMetadata(
                    id=int(r.id),
                    direction=r.direction,
                    counterpart=r.counterpart,
                    at=int(r.occurred_at),
                    size=int(r.size),
                )
                for r in rows[:limit]
            ],
            more=len(rows) > limit,
        )

    # --- record counts and disclosures (flow step 9) --------------------------------------------

    def _housekeep_forever(self) -> None:
        while not self._stop.wait(HOUSEKEEPING_INTERVAL_S):
            try:
                self.housekeep()
            except Exception as exc:  # try again on the next tick
                log.warning("lawful-access housekeeping failed (%s)", type(exc).__name__)

    def housekeep(self) -> None:
        """Publish what is due: record counts (after each window, and periodically while it is
        open) and, after the disclosure time, the warrant's opening."""
        now = now_s()
        self.refresh_metadata_targets()
        with self.db.read() as conn:
            rows = conn.execute(
                select(access_warrants).where(
                    access_warrants.c.commitment_index.is_not(None),
                    (
                        (access_warrants.c.final_count_index.is_(None))
                        & (access_warrants.c.end_time + RECORD_COUNT_GRACE_S <= now)
                    )
                    | (
                        (access_warrants.c.disclosure_index.is_(None))
                        & (access_warrants.c.disclosure_time <= now)
                    )
                    | (
                        (access_warrants.c.start_time <= now)
                        & (access_warrants.c.end_time > now)
                        & (access_warrants.c.counted_at + RECORD_COUNT_INTERVAL_S <= now)
                    ),
                )
            ).all()
        for row in rows:
            if row.final_count_index is None and row.end_time + RECORD_COUNT_GRACE_S <= now:
                self._publish_count(row, now, final=True)
            elif (
                row.start_time <= now < row.end_time
                and row.counted_at + RECORD_COUNT_INTERVAL_S <= now
            ):
                self._publish_count(row, now, final=False)
            if row.disclosure_index is None and row.disclosure_time <= now:
                self._publish_disclosure(row)

    def _publish_count(self, row: Any, now: int, *, final: bool) -> None:
        with self.db.read() as conn:
            count = int(
                conn.execute(
                    select(func.count())
                    .select_from(access_records)
                    .where(access_records.c.warrant_pk == row.id)
                ).scalar_one()
            )
        if not final and count == row.counted_records:
            self.db.transact(
                lambda conn: conn.execute(
                    update(access_warrants)
                    .where(access_warrants.c.id == row.id)
                    .values(counted_at=now)
                )
            )
            return
        entry = RecordCountEntry(
            commitment=WarrantCommitment(bytes(row.commitment)), record_count=count, as_of=now
        )
        data = entry.to_bytes()

        def _also(conn: Connection, index: int | None) -> None:
            if index is None:
                return
            values: dict[str, Any] = {"counted_records": count, "counted_at": now}
            if final:
                values["final_count_index"] = index
            conn.execute(
                update(access_warrants).where(access_warrants.c.id == row.id).values(**values)
            )

        try:
            self._publish_blocking(
                KIND_RECORD_COUNT, hashlib.sha256(data).digest(), data, also=_also
            )
        except Conflict:
            pass  # another server process published this very count

    def _publish_disclosure(self, row: Any) -> None:
        entry = WarrantDisclosureEntry(
            commitment=WarrantCommitment(bytes(row.commitment)),
            signed_warrant=SignedWarrant.from_bytes(row.signed_warrant.encode("utf-8")),
            nonce=bytes(row.nonce),
        )

        def _also(conn: Connection, index: int | None) -> None:
            if index is not None:
                conn.execute(
                    update(access_warrants)
                    .where(access_warrants.c.id == row.id)
                    .values(disclosure_index=index)
                )

        try:
            self._publish_blocking(
                KIND_DISCLOSURE, bytes(row.commitment), entry.to_bytes(), also=_also
            )
        except Conflict:
            pass  # another server process published it


def make_agency_token(secret: bytes, warrant_id: bytes, expires: int) -> bytes:
    """warrant id (32) || expiry (8, big-endian) || HMAC-SHA256(secret, purpose || both)."""
    body = warrant_id + expires.to_bytes(8, "big")
    return body + hmac.new(secret, AGENCY_TOKEN_PURPOSE + body, "sha256").digest()


def check_agency_token(secret: bytes, warrant_id: bytes, token: str, *, now: int) -> None:
    """The bearer opened the challenge for this warrant, and it has not expired. The MAC and
    the warrant id are compared in constant time; every failure looks the same."""
    raw = b""
    if isinstance(token, str) and len(token) <= 128:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raw = b""
    if len(raw) != _AGENCY_TOKEN_BYTES:
        raise AuthenticationError("agency token required")
    body, mac = raw[:40], raw[40:]
    expected = hmac.new(secret, AGENCY_TOKEN_PURPOSE + body, "sha256").digest()
    good = hmac.compare_digest(mac, expected) & hmac.compare_digest(body[:32], warrant_id)
    if not good or int.from_bytes(body[32:], "big") <= now:
        raise AuthenticationError("agency token required")

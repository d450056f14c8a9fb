"""Lawful access on the target's device (docs/lawful-access.md §5 steps 5-7 and 9, §6).

`AccessClient` is the device's side. On every sync (`sync`, run at the start of each receive)
it:

1. verifies the checkpoint the server sends (signed by the pinned log key, cosigned by the
   configured witness quorum, consistent with the last one this device accepted);
2. follows the approver set: pinned to the genesis set of the deployment's bounds
   (`lawful_access_bounds`: never a set the server chooses; without one, lawful access is
   refused with `approver_set_required`), then advanced only by versions signed by k members
   of the current one; every set must be in the log;
3. runs the checks W1-W12 (`verify_warrant_for_device`) on each warrant delivered for this
   account; a warrant that passes is active until its window ends, and copies only what
   happens from the later of its start and the moment this device verified it (nothing
   earlier, not even in the same second);
4. scans every log entry since its last sync for disclosures (`client.disclosures`), instead
   of trusting the server's choice, and turns those naming this account into notices; a
   warrant it accepted whose disclosure date passes unpublished (and not extended by k
   approvers in the log) is shown to the user by the device itself.

While a warrant is active, every message this device sends or receives is sealed to the
agency (`RecordSealer`) in the same local transaction that stores the message, queued, and
uploaded at once (`flush`). At the end of the window the device stops: the sealer refuses, and
the warrant is dropped. Nothing is copied from before the window or under a warrant that
failed any check; with no active warrant each hook costs one attribute test.

The state (pinned set, warrant ids seen, active warrants with their sequence numbers, the
upload queue, the disclosure position) is one sealed record of the local store: `AccessState`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from accord.client.context import ClientContext
from accord.client.disclosures import DisclosureWatch, scan_for_disclosures
from accord.client.log_trust import LogTrust, ProofEncoding, decode_proof
from accord.client.received import ReceivedMessage
from accord.client.store import decode_checkpoint, encode_checkpoint
from accord.clock import now_ms, now_s
from accord.errors import (
    AccordError,
    AuthorizationError,
    ConfigurationError,
    Conflict,
    InvalidInput,
    NotFound,
    ProtocolError,
    VerificationError,
)
from accord.primitives.encoding import b64decode, canonical_json
from accord.protocols.access import _codec as c
from accord.protocols.access.agency import AgencyKey
from accord.protocols.access.approvers import (
    ApproverSet,
    ApproverSetHash,
    pin_approver_set,
    verify_approver_set_update,
)
from accord.protocols.access.audit import DisclosureNotice
from accord.protocols.access.device import (
    VerifiedWarrant,
    WarrantDelivery,
    verify_warrant_for_device,
)
from accord.protocols.access.log_entries import (
    ApproverSetEntry,
    parse_access_entry,
)
from accord.protocols.access.records import (
    Direction,
    InterceptedAttachment,
    InterceptedMessage,
    RecordSealer,
    SealedRecord,
)
from accord.protocols.access.timeparse import format_duration, format_time
from accord.protocols.access.warrant import (
    DEFAULT_MAX_DISCLOSURE_DELAY_S,
    DEFAULT_MAX_START_SKEW_S,
    WARRANT_MAX_DURATION_S,
    SignedWarrant,
    Warrant,
    WarrantCommitment,
)
from accord.protocols.manifest import LawfulAccessBounds
from accord.protocols.translog.note import Checkpoint
from accord.wire.messaging import Content

# The lawful-access wire models are imported where the server is asked (a sync, the approver
# sets, an upload): a send on a device with no warrant never needs them.
if TYPE_CHECKING:
    from accord.wire.access import ProvenEntry

APPROVER_SET_ENV = "ACCORD_APPROVER_SET"
MAX_REFUSALS_KEPT = 100
UPLOAD_BATCH_BYTES = 3 << 20
"""Ciphertext per upload request (base64 makes it 4 MiB, well within a request's limit)."""
# Refusals the user is not told about: a genuine warrant delivered a little early or late
# would otherwise be revealed before its disclosure date.
QUIET_REFUSALS = frozenset({"warrant_not_started", "warrant_expired"})


def lawful_access_bounds(ctx: ClientContext | None = None) -> LawfulAccessBounds:
    """The bounds this device holds every warrant to: the approvers' genesis set, the
    disclosure delay cap and the start skew (docs/lawful-access.md §3, §6).

    They are the pinned deployment manifest's (`LogTrust.manifest`). In insecure development
    mode (no manifest) the genesis set is the hash this device was configured with at account
    creation (the library's ``approver_set=``, which the CLI takes from
    ``ACCORD_APPROVER_SET``), else ``ACCORD_APPROVER_SET`` now, and the delays are the
    documented defaults. Never from the server: without a configured set lawful access is
    refused (`ConfigurationError` ``approver_set_required``).
    """
    if ctx is not None:
        manifest = ctx.log_trust.manifest()
        if manifest is not None:  # the deployment's anchors, pinned with the client
            return manifest.lawful_access
    configured = None
    if ctx is not None:
        raw = ctx.store.access_state()
        if raw is not None:
            configured = AccessState.from_json(raw).configured_set
    configured = configured or os.environ.get(APPROVER_SET_ENV) or None
    if configured is None:
        raise ConfigurationError(
            f"no approver genesis set is configured (set {APPROVER_SET_ENV})",
            code="approver_set_required",
        )
    return LawfulAccessBounds(
        approver_genesis_set=_set_hash_hex(configured),
        max_disclosure_delay_s=DEFAULT_MAX_DISCLOSURE_DELAY_S,
        max_start_skew_s=DEFAULT_MAX_START_SKEW_S,
    )


def configured_bounds() -> LawfulAccessBounds | None:
    """The bounds an auditor holds the log to: `lawful_access_bounds` without a device, or None
    where no genesis set is configured (the audit then follows the log's first version 1)."""
    try:
        return lawful_access_bounds(None)
    except ConfigurationError:
        return None


def _set_hash_hex(value: str) -> str:
    return c.parse_hex(value.strip().lower(), "the approver set hash", size=32).hex()


@dataclass(frozen=True)
class Refusal:
    """A warrant (or approver set, or disclosure) this device refused, and why."""

    what: str  # "warrant <id>", "approver set", "disclosure at <index>", "sync"
    code: str
    message: str

    def line(self) -> str:
        return f"{self.what} refused: {self.code}: {self.message}"


@dataclass
class SyncResult:
    accepted: list[str] = field(default_factory=list)  # warrant ids (hex)
    refused: list[Refusal] = field(default_factory=list)
    disclosures: list[DisclosureNotice] = field(default_factory=list)


def describe_notice(notice: DisclosureNotice) -> str:
    """What the user is told once a warrant against their account is disclosed."""
    approvers = ", ".join(
        f"{who} ({role.value.replace('_', ' ')}, {format_time(at)})"
        for who, role, at in notice.approvals
    )
    overdue = (
        f" (overdue: the provider had not published it by {format_time(notice.disclosure_time)};"
        " shown by this device from the warrant it verified)"
        if notice.overdue
        else ""
    )
    return (
        f"lawful-access disclosure{overdue}: a warrant covered this account from "
        f"{format_time(notice.start_time)} to {format_time(notice.end_time)} "
        f"({format_duration(notice.end_time - notice.start_time)}); scope: "
        f"{', '.join(s.value for s in notice.scope)}; approved by {approvers}; "
        f"authorisation {notice.authorisation_reference} ({notice.legal_type}), "
        f"case {notice.case_reference}"
    )


@dataclass
class ActiveWarrant:
    """A warrant that passed W1-W12 on this device, and the number of its next record.

    ``copy_from_ms`` is the later of the window's start and the moment this device verified
    the warrant: nothing dated earlier is copied."""

    verified: VerifiedWarrant
    copy_from_ms: int
    next_seq: int = 0

    @property
    def warrant(self) -> Warrant:
        return self.verified.signed_warrant.warrant

    def to_obj(self) -> dict[str, Any]:
        verified = self.verified
        return {
            "warrant": verified.signed_warrant.to_obj(),
            "commitment": verified.commitment.hex(),
            "approver_ids": list(verified.approver_ids),
            "agency_key": verified.agency_key.to_obj(),
            "log_origin": verified.checkpoint.origin,
            "checkpoint": encode_checkpoint(verified.checkpoint),
            "committed_at": verified.committed_at,
            "copy_from_ms": self.copy_from_ms,
            "next_seq": self.next_seq,
        }

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> ActiveWarrant:
        """As stored: it passed W1-W12 on this device before it was stored."""
        verified = VerifiedWarrant(
            signed_warrant=SignedWarrant.from_obj(obj["warrant"]),
            commitment=WarrantCommitment(bytes.fromhex(obj["commitment"])),
            approver_ids=tuple(obj["approver_ids"]),
            agency_key=AgencyKey.from_obj(obj["agency_key"]),
            checkpoint=_stored_checkpoint(obj["checkpoint"], obj.get("log_origin", "")),
            committed_at=obj.get("committed_at"),
        )
        start_ms = verified.signed_warrant.warrant.start_time * 1000
        return cls(verified, int(obj.get("copy_from_ms", start_ms)), int(obj["next_seq"]))


def _stored_checkpoint(value: str | dict[str, Any], origin: str) -> Checkpoint:
    if isinstance(value, dict):  # as stored before one encoding served every checkpoint
        return Checkpoint(value["origin"], value["size"], bytes.fromhex(value["root"]))
    return decode_checkpoint(value, origin)


@dataclass
class AccessState:
    """The device's lawful-access state: one sealed record of the local store (JSON)."""

    approver_set: ApproverSet | None = None  # the set trusted now (None until one is pinned)
    configured_set: str | None = None  # the set hash (hex) given at account creation
    seen: list[str] = field(default_factory=list)  # ids (hex) of every warrant accepted here
    active: list[ActiveWarrant] = field(default_factory=list)
    outbox: list[SealedRecord] = field(default_factory=list)  # records not uploaded yet
    disclosures_from: int = 0  # the log index from which to ask for disclosures
    watch: DisclosureWatch = field(default_factory=DisclosureWatch)  # the log scan

    @property
    def busy(self) -> bool:
        return bool(self.active or self.outbox)

    def drop_ended(self, now: int) -> None:
        """At the end of its window a warrant stops: it is no longer acted on (its id stays
        seen)."""
        self.active = [a for a in self.active if a.warrant.end_time > now]

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "approver_set": None if self.approver_set is None else self.approver_set.to_obj(),
                "configured_set": self.configured_set,
                "seen": self.seen,
                "active": [a.to_obj() for a in self.active],
                "outbox": [r.to_obj() for r in self.outbox],
                "disclosures_from": self.disclosures_from,
                "watch": self.watch.to_obj(),
            }
        ).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> AccessState:
        obj = json.loads(raw)
        pinned = obj["approver_set"]
        return cls(
            approver_set=None if pinned is None else ApproverSet.from_obj(pinned),
            configured_set=obj["configured_set"],
            seen=list(obj["seen"]),
            active=[ActiveWarrant.from_obj(a) for a in obj["active"]],
            outbox=[SealedRecord.from_bytes(canonical_json(r)) for r in obj["outbox"]],
            disclosures_from=int(obj["disclosures_from"]),
            watch=DisclosureWatch.from_obj(obj.get("watch")),
        )


def _proven_entry(proven: ProvenEntry, checkpoint: Checkpoint) -> bytes:
    """An entry the server says is in the log, checked against the verified checkpoint (V4)."""
    entry = b64decode(proven.entry, max_bytes=64 * 1024, what="log entry")
    proof = decode_proof(proven.proof, ProofEncoding.HEX)
    LogTrust.verify_inclusion(entry, proven.index, checkpoint, proof)
    return entry


class AccessClient:
    """One device's lawful-access state and duties; see the module docstring."""

    def __init__(self, ctx: ClientContext, *, max_duration_s: int = WARRANT_MAX_DURATION_S) -> None:
        self._ctx = ctx
        self.max_duration_s = max_duration_s
        self._busy: bool | None = None  # any active warrant or queued record? None: unknown
        self.last_sync: SyncResult | None = None
        self.refusals: list[Refusal] = []

    # --- state --------------------------------------------------------------------------------

    def _load(self) -> AccessState:
        raw = self._ctx.store.access_state()
        state = AccessState() if raw is None else AccessState.from_json(raw)
        self._busy = state.busy
        return state

    def _save(self, state: AccessState) -> None:
        self._ctx.store.set_access_state(state.to_json())
        self._busy = state.busy

    def _busy_now(self) -> bool:
        if self._busy is None:
            self._load()
        return bool(self._busy)

    def approver_set(self) -> ApproverSet | None:
        """The approver set this device trusts now (None until one is pinned)."""
        return self._load().approver_set

    def active_warrants(self) -> list[VerifiedWarrant]:
        """Warrants this device is acting on (the user interface must not show these)."""
        now = now_s(self._ctx.clock)
        return [a.verified for a in self._load().active if a.verified.is_active(now)]

    def _refuse(self, result: SyncResult, what: str, exc: AccordError) -> None:
        refusal = Refusal(what, exc.code, exc.message)
        result.refused.append(refusal)
        self.refusals = [*self.refusals, refusal][-MAX_REFUSALS_KEPT:]

    # --- the checkpoint -----------------------------------------------------------------------

    def _accept_checkpoint(
        self, note: str, consistency_proof: Sequence[str], last: Checkpoint | None
    ) -> Checkpoint:
        """Transparency V1-V3 on the answer's checkpoint (the same rules as for device lists);
        kept only once the answer has been taken in."""
        return self._ctx.log_trust.verify_checkpoint(
            note, last=last, consistency_proof=decode_proof(consistency_proof, ProofEncoding.HEX)
        )

    # --- approver sets ------------------------------------------------------------------------

    def pin_approver_set(self, configured_hash: str | None = None) -> None:
        """At account creation (or when configured later): keep the configured genesis set
        hash and pin that set if the server shows it. Without a configured set nothing is
        pinned: lawful access is then refused (`approver_set_required`), never trusted to a
        set the server chooses."""
        state = self._load()
        if configured_hash is not None:
            state.configured_set = _set_hash_hex(configured_hash)
            with self._ctx.store.transaction():
                self._save(state)
        last = self._ctx.log_trust.last_checkpoint()
        params = {"since": last.size if last else 0}
        result = SyncResult()
        from accord.wire.access import ApproverSets

        try:
            answer = self._ctx.api.call(
                ApproverSets, "GET", "/v1/access/approver-sets", params=params, auth=False
            )
            checkpoint = self._accept_checkpoint(answer.checkpoint, answer.consistency_proof, last)
            entries = [_proven_entry(p, checkpoint) for p in answer.sets]
            self._adopt_sets(state, entries, result)
        except NotFound:
            pass  # a server without lawful access
        except (VerificationError, InvalidInput, ProtocolError) as exc:
            self._refuse(result, "approver set", exc)
        else:
            self._ctx.log_trust.advance(checkpoint, last=last)
        with self._ctx.store.transaction():
            self._save(state)

    def _adopt_sets(self, state: AccessState, entries: list[bytes], result: SyncResult) -> None:
        """Pin (if nothing is pinned yet) and advance the trusted set through ``entries``."""
        shown: list[ApproverSetEntry] = []
        for data in entries:
            entry = parse_access_entry(data)
            if not isinstance(entry, ApproverSetEntry):
                raise ProtocolError("the server sent another entry as an approver set")
            shown.append(entry)
        if not shown:
            return
        current = before = state.approver_set
        if current is None:
            try:
                configured = lawful_access_bounds(self._ctx).approver_genesis_set
            except ConfigurationError:
                return  # nothing is pinned; a warrant is then refused (approver_set_required)
            matching = [
                i for i, e in enumerate(shown)
                if e.signed.approver_set.set_hash.hex() == configured
            ]  # fmt: skip
            if not matching:
                return  # the configured set is not published yet
            first = matching[0]
            current = pin_approver_set(
                shown[first].signed, configured_hash=ApproverSetHash(bytes.fromhex(configured))
            )
            shown = shown[first + 1 :]
        for entry in shown:
            if entry.signed.approver_set.version <= current.version:
                continue
            try:
                current = verify_approver_set_update(current, entry.signed)
            except VerificationError as exc:
                self._refuse(result, "approver set", exc)
                break
        if current != before:
            state.approver_set = current
            # Warrants approved under a set this device has moved on from stop here.
            state.active = [a for a in state.active if a.warrant.approver_set == current.set_hash]

    # --- sync ---------------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        """One sync with the server (see the module docstring). Never raises for a refusal;
        raises only if the server cannot be reached or answers malformed data."""
        from accord.wire.access import AccessSync

        ctx = self._ctx
        result = SyncResult()
        state = self._load()
        last = ctx.log_trust.last_checkpoint()
        params = {
            "since": last.size if last else 0,
            "sets_after": 0 if state.approver_set is None else state.approver_set.version,
            "disclosures_from": state.disclosures_from,
        }
        try:
            answer = ctx.api.call(AccessSync, "GET", "/v1/access/sync", params=params)
        except NotFound:
            self.last_sync = result
            return result  # a server without lawful access
        try:
            checkpoint = self._accept_checkpoint(answer.checkpoint, answer.consistency_proof, last)
        except (VerificationError, InvalidInput) as exc:
            self._refuse(result, "sync", exc)  # nothing from this answer is used
            self.last_sync = result
            return result
        now = now_s(ctx.clock)
        try:
            entries = [_proven_entry(p, checkpoint) for p in answer.approver_sets]
            self._adopt_sets(state, entries, result)
        except (VerificationError, InvalidInput, ProtocolError) as exc:
            self._refuse(result, "approver set", exc)
        for obj in answer.deliveries:
            self._take_delivery(state, obj, last, now, result)
        self._scan_log(state, checkpoint, now, result)  # not the server's list of disclosures
        state.drop_ended(now)
        with ctx.store.transaction():
            ctx.log_trust.advance(checkpoint, last=last)
            self._save(state)
        self.flush()
        self.last_sync = result
        return result

    def sync_notices(self) -> list[str]:
        """`sync` for the receive path: the lines to show the user."""
        try:
            result = self.sync()
        except AccordError as exc:
            return [f"lawful-access sync failed: {exc.diagnostics()}"]
        lines = [describe_notice(n) for n in result.disclosures]
        lines += [r.line() for r in result.refused if r.code not in QUIET_REFUSALS]
        return lines

    def _take_delivery(
        self,
        state: AccessState,
        obj: dict[str, Any],
        last: Checkpoint | None,
        now: int,
        result: SyncResult,
    ) -> None:
        ctx = self._ctx
        try:
            delivery = WarrantDelivery.from_bytes(canonical_json(obj))
        except InvalidInput as exc:
            self._refuse(result, "warrant", exc)
            return
        wid = delivery.signed_warrant.warrant_id.hex()
        delivered = delivery.signed_warrant.to_obj()
        if any(a.verified.signed_warrant.to_obj() == delivered for a in state.active):
            return  # already acting on it; its sequence continues
        try:
            if wid in state.seen:
                # W6, before anything else: a warrant this device has used is never restarted.
                raise ProtocolError(
                    "warrant was already delivered and used", code="warrant_replayed"
                )
            bounds = lawful_access_bounds(ctx)
            if state.approver_set is None:
                raise VerificationError(
                    "no approver set is pinned on this device", code="approver_set_mismatch"
                )
            verified = verify_warrant_for_device(
                delivery,
                account=ctx.identity.account_name,
                approver_set=state.approver_set,
                log_policy=ctx.log_trust.policy(),
                last_checkpoint=last,
                now=now,
                seen_warrant_ids={bytes.fromhex(s) for s in state.seen},
                max_duration_s=self.max_duration_s,
                max_start_skew_s=bounds.max_start_skew_s,
                max_disclosure_delay_s=bounds.max_disclosure_delay_s,
            )
        except AccordError as exc:
            self._refuse(result, f"warrant {wid[:16]}", exc)
            return
        # Prospective only: nothing from before the later of the start and this moment, not
        # even a message of the same second (times are compared in milliseconds).
        copy_from_ms = max(verified.signed_warrant.warrant.start_time * 1000, now_ms(ctx.clock))
        state.watch.hold(verified)  # its user is told at its disclosure date, in any case
        state.seen.append(wid)
        state.active.append(ActiveWarrant(verified, copy_from_ms))
        result.accepted.append(wid)

    def _scan_log(
        self, state: AccessState, checkpoint: Checkpoint, now: int, result: SyncResult
    ) -> None:
        """Disclosures from the log itself (`scan_for_disclosures`); a log whose entries do not
        match the checkpoint is a refusal, and the scan is tried again on the next sync."""
        try:
            bounds = lawful_access_bounds(self._ctx)
        except ConfigurationError:
            bounds = None
        watch = DisclosureWatch.from_obj(state.watch.to_obj())  # changed only on success
        try:
            scanned = scan_for_disclosures(
                self._ctx.api,
                watch,
                checkpoint,
                account=self._ctx.identity.account_name,
                approver_set=state.approver_set,
                now=now,
                max_delay_s=DEFAULT_MAX_DISCLOSURE_DELAY_S
                if bounds is None
                else bounds.max_disclosure_delay_s,
            )
        except AccordError as exc:  # a bad or unreachable log: tried again on the next sync
            self._refuse(result, "log scan", exc)
            return
        state.watch = watch
        state.disclosures_from = watch.position.size
        result.disclosures += scanned.notices
        for what, why in scanned.refused:
            self._refuse(result, what, why)

    # --- interception -------------------------------------------------------------------------

    def _intercepted(
        self, content: Content, direction: Direction, *, sender: str | None = None
    ) -> InterceptedMessage:
        ctx = self._ctx
        to = content.to
        if to.account is not None:
            recipients: tuple[str, ...] = (to.account,)
            conversation = f"account:{to.account}"
        else:
            assert to.group is not None
            raw = ctx.store.group_state(to.group)
            members = json.loads(raw)["members"] if raw else []
            recipients = tuple(sorted(set(members) - {sender or ctx.identity.account_name}))
            conversation = f"group:{to.group}"
        return InterceptedMessage(
            direction=direction,
            occurred_at=content.sent_at // 1000,
            sender=sender or ctx.identity.account_name,
            recipients=recipients,
            conversation_id=conversation,
            message_id=content.message_id,
            plaintext=content.text.encode("utf-8"),
            attachments=tuple(
                InterceptedAttachment(
                    b64decode(a.key, max_bytes=64), b64decode(a.sha256, max_bytes=64)
                )
                for a in content.attachments
            ),
        )

    def _seal_into(
        self,
        state: AccessState,
        active: Iterable[ActiveWarrant],
        message: InterceptedMessage,
        now: int,
        *,
        at_ms: int,
    ) -> None:
        device_id = self._ctx.identity.device_id
        for warrant in active:
            if at_ms < warrant.copy_from_ms:
                continue  # before this device verified the warrant: never copied
            sealer = RecordSealer(
                warrant.verified,
                device_id=device_id,
                sign=self._ctx.identity.sign,
                next_seq=warrant.next_seq,
            )
            try:
                record = sealer.seal(message, now=now)
            except (AuthorizationError, InvalidInput):
                continue  # outside the window (the device stops), or too large to copy
            warrant.next_seq = sealer.next_seq
            state.outbox.append(record)

    def on_sent(self, content: Content) -> None:
        """Hook: a message this device sent was stored (inside that local transaction)."""
        if not self._busy_now():
            return
        now = now_s(self._ctx.clock)
        state = self._load()
        state.drop_ended(now)
        try:
            message = self._intercepted(content, Direction.SENT)
        except (InvalidInput, ValueError):
            return
        self._seal_into(state, state.active, message, now, at_ms=content.sent_at)
        self._save(state)

    def on_received(self, message: ReceivedMessage) -> None:
        """Hook: a received message was stored (inside that local transaction).

        The record is dated when this device received the message, not when its sender says
        it was written, so nothing received before the window is copied.
        """
        if not self._busy_now() or message.evidence is None:
            return
        at_ms = now_ms(self._ctx.clock)
        now = at_ms // 1000
        state = self._load()
        state.drop_ended(now)
        content = message.evidence.content.model_copy(update={"sent_at": at_ms})
        try:
            intercepted = self._intercepted(content, Direction.RECEIVED, sender=message.sender)
        except (InvalidInput, ValueError):
            return
        self._seal_into(state, state.active, intercepted, now, at_ms=at_ms)
        self._save(state)

    def flush(self) -> None:
        """Upload queued records, oldest first. Records the server can never accept (the
        window is over, the warrant is unknown) are dropped; on a network error the rest
        waits for the next flush."""
        if not self._busy_now():
            return
        from accord.wire.access import MAX_RECORDS_PER_UPLOAD, RecordsStored

        state = self._load()
        queue = state.outbox
        done: set[tuple[bytes, str, int]] = set()
        start = 0
        while start < len(queue):
            wid = queue[start].warrant_id
            batch = [queue[start]]
            size = len(queue[start].ciphertext)
            while (
                start + len(batch) < len(queue)
                and len(batch) < MAX_RECORDS_PER_UPLOAD
                and queue[start + len(batch)].warrant_id == wid
                and size + len(queue[start + len(batch)].ciphertext) <= UPLOAD_BATCH_BYTES
            ):
                size += len(queue[start + len(batch)].ciphertext)
                batch.append(queue[start + len(batch)])
            try:
                self._ctx.api.call(
                    RecordsStored,
                    "POST",
                    "/v1/access/records",
                    json={"v": 1, "records": [r.to_obj() for r in batch]},
                )
            except (AuthorizationError, NotFound, InvalidInput, Conflict) as exc:
                self._refuse(SyncResult(), f"records of warrant {wid.hex()[:16]}", exc)
            except AccordError:
                break
            done |= {(r.warrant_id, r.device_id, r.seq) for r in batch}
            start += len(batch)
        if not done:
            return
        with self._ctx.store.transaction():
            state = self._load()
            state.outbox = [
                r for r in state.outbox if (r.warrant_id, r.device_id, r.seq) not in done
            ]
            self._save(state)

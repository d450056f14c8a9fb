"""Lawful-access entries of the transparency log: one canonical byte encoding each, type-tagged.

Every entry is ``canonical_json({"type": <tag>, ...fields})``; `parse_access_entry` accepts only
that exact encoding of a known tag with exactly its fields, so an entry's bytes (and its Merkle
leaf hash) determine its meaning and vice versa.

Types (tag: payload; who publishes it, when):

- ``accord.access.approver_set.v1``: a signed approver set; when the approvers adopt it.
- ``accord.access.agency_key.v1``: a signed agency key registration; on registration.
- ``accord.access.warrant_commitment.v1``: commitment and public fields, never the target;
  when the provider accepts a warrant.
- ``accord.access.warrant_disclosure.v1``: commitment, signed warrant and nonce; after the
  disclosure time.
- ``accord.access.record_count.v1``: commitment, records received so far, as-of time;
  periodically and when the window ends.
- ``accord.access.disclosure_extension.v1``: commitment, new disclosure time, the approvers'
  date and k signatures of the warrant's approver set; when the approvers postpone a
  disclosure (the only way to: a disclosure not published by its logged date is overdue).

The provider publishes all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from accord.errors import InvalidInput
from accord.primitives.encoding import canonical_json
from accord.protocols.access import _codec as c
from accord.protocols.access.agency import AgencyKeyId, SignedAgencyKey
from accord.protocols.access.approvers import (
    HASH_BYTES,
    MAX_APPROVERS,
    ApproverSetHash,
    ApproverSignature,
    SignedApproverSet,
)
from accord.protocols.access.tags import (
    ACCESS_TAG_PREFIX,
    TAG_AGENCY_KEY,
    TAG_APPROVER_SET,
    TAG_DISCLOSURE_EXTENSION,
    TAG_RECORD_COUNT,
    TAG_WARRANT_COMMITMENT,
    TAG_WARRANT_DISCLOSURE,
)
from accord.protocols.access.warrant import (
    WARRANT_COMMITMENT_NONCE_BYTES,
    Scope,
    SignedWarrant,
    WarrantCommitment,
    normalise_scope,
)

EXTENSION_PURPOSE = "accord-disclosure-extension-v1"


def _encode(tag: str, fields: dict[str, Any]) -> bytes:
    return canonical_json({"type": tag, **fields})


def _check_hashes(entry: object, *names: str) -> None:
    for name in names:
        value = getattr(entry, name)
        if not isinstance(value, bytes) or len(value) != HASH_BYTES:
            raise InvalidInput(f"{name} must be 32 bytes")


@dataclass(frozen=True)
class ApproverSetEntry:
    TYPE: ClassVar[str] = TAG_APPROVER_SET
    signed: SignedApproverSet

    def to_bytes(self) -> bytes:
        return _encode(self.TYPE, {"signed_approver_set": self.signed.to_obj()})


@dataclass(frozen=True)
class AgencyKeyEntry:
    TYPE: ClassVar[str] = TAG_AGENCY_KEY
    signed: SignedAgencyKey

    def to_bytes(self) -> bytes:
        return _encode(self.TYPE, {"signed_agency_key": self.signed.to_obj()})


@dataclass(frozen=True)
class WarrantCommitmentEntry:
    """The public face of an accepted warrant: everything an auditor may count, not the target."""

    TYPE: ClassVar[str] = TAG_WARRANT_COMMITMENT
    commitment: WarrantCommitment
    start_time: int
    end_time: int
    disclosure_time: int
    scope: tuple[Scope, ...]
    approver_ids: tuple[str, ...]
    approver_set: ApproverSetHash
    delivery_key_id: AgencyKeyId

    def __post_init__(self) -> None:
        _check_hashes(self, "commitment", "approver_set", "delivery_key_id")
        for name in ("start_time", "end_time", "disclosure_time"):
            c.check_int(getattr(self, name), name)
        if not self.start_time < self.end_time <= self.disclosure_time:
            raise InvalidInput("commitment entry has an inconsistent window")
        if list(self.scope) != [s for s in normalise_scope(self.scope)] or not self.scope:
            raise InvalidInput("scope must be sorted, non-empty and without repeats")
        if not self.approver_ids or len(self.approver_ids) > MAX_APPROVERS:
            raise InvalidInput("approver ids out of range")
        for approver_id in self.approver_ids:
            c.check_ident(approver_id, "approver id")
        if list(self.approver_ids) != sorted(set(self.approver_ids)):
            raise InvalidInput("approver ids must be sorted and distinct")

    def to_bytes(self) -> bytes:
        return _encode(
            self.TYPE,
            {
                "commitment": self.commitment.hex(),
                "timespan": {"start_time": self.start_time, "end_time": self.end_time},
                "disclosure_time": self.disclosure_time,
                "scope": [s.value for s in self.scope],
                "approver_ids": list(self.approver_ids),
                "approver_set": self.approver_set.hex(),
                "delivery_key_id": self.delivery_key_id.hex(),
            },
        )

    @property
    def duration_s(self) -> int:
        return self.end_time - self.start_time


@dataclass(frozen=True)
class WarrantDisclosureEntry:
    """The opening of a commitment: the signed warrant and the nonce."""

    TYPE: ClassVar[str] = TAG_WARRANT_DISCLOSURE
    commitment: WarrantCommitment
    signed_warrant: SignedWarrant
    nonce: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.commitment, bytes) or len(self.commitment) != HASH_BYTES:
            raise InvalidInput("commitment must be 32 bytes")
        if not isinstance(self.nonce, bytes) or len(self.nonce) != WARRANT_COMMITMENT_NONCE_BYTES:
            raise InvalidInput("nonce must be 32 bytes")

    def to_bytes(self) -> bytes:
        return _encode(
            self.TYPE,
            {
                "commitment": self.commitment.hex(),
                "signed_warrant": self.signed_warrant.to_obj(),
                "nonce": self.nonce.hex(),
            },
        )


@dataclass(frozen=True)
class RecordCountEntry:
    """How many intercepted records the provider has received for a warrant, as of a time."""

    TYPE: ClassVar[str] = TAG_RECORD_COUNT
    commitment: WarrantCommitment
    record_count: int
    as_of: int

    def __post_init__(self) -> None:
        if not isinstance(self.commitment, bytes) or len(self.commitment) != HASH_BYTES:
            raise InvalidInput("commitment must be 32 bytes")
        c.check_int(self.record_count, "record count")
        c.check_int(self.as_of, "as_of")

    def to_bytes(self) -> bytes:
        return _encode(
            self.TYPE,
            {
                "commitment": self.commitment.hex(),
                "record_count": self.record_count,
                "as_of": self.as_of,
            },
        )


def extension_message(
    commitment: WarrantCommitment,
    disclosure_time: int,
    extended_at: int,
    approver_set: ApproverSetHash,
) -> bytes:
    """What each approver signs to postpone a warrant's disclosure."""
    return canonical_json(
        {
            "purpose": EXTENSION_PURPOSE,
            "commitment": commitment.hex(),
            "disclosure_time": disclosure_time,
            "extended_at": extended_at,
            "approver_set": approver_set.hex(),
        }
    )


@dataclass(frozen=True)
class DisclosureExtensionEntry:
    """k approvers of the warrant's set postpone its disclosure to ``disclosure_time``, signed
    at ``extended_at`` (`verify_disclosure_extension` in `audit` says when that is allowed)."""

    TYPE: ClassVar[str] = TAG_DISCLOSURE_EXTENSION
    commitment: WarrantCommitment
    disclosure_time: int
    extended_at: int
    approver_set: ApproverSetHash
    signatures: tuple[ApproverSignature, ...]

    def __post_init__(self) -> None:
        _check_hashes(self, "commitment", "approver_set")
        c.check_int(self.disclosure_time, "disclosure_time")
        c.check_int(self.extended_at, "extended_at")
        if not self.signatures or len(self.signatures) > MAX_APPROVERS:
            raise InvalidInput("signatures out of range")

    @classmethod
    def from_obj(cls, obj: object) -> DisclosureExtensionEntry:
        """Read an extension as it travels (its fields without the type tag), strictly."""
        o = c.require_keys(
            obj,
            {"commitment", "disclosure_time", "extended_at", "approver_set", "signatures"},
            what="disclosure extension",
        )
        entry = _parse_fields(TAG_DISCLOSURE_EXTENSION, o)
        assert isinstance(entry, DisclosureExtensionEntry)
        return entry

    def to_obj(self) -> dict[str, Any]:
        return {
            "commitment": self.commitment.hex(),
            "disclosure_time": self.disclosure_time,
            "extended_at": self.extended_at,
            "approver_set": self.approver_set.hex(),
            "signatures": [sig.to_obj() for sig in self.signatures],
        }

    @property
    def message(self) -> bytes:
        return extension_message(
            self.commitment, self.disclosure_time, self.extended_at, self.approver_set
        )

    def to_bytes(self) -> bytes:
        return _encode(self.TYPE, self.to_obj())


AccessLogEntry = (
    ApproverSetEntry
    | AgencyKeyEntry
    | WarrantCommitmentEntry
    | WarrantDisclosureEntry
    | RecordCountEntry
    | DisclosureExtensionEntry
)


def _commitment(o: dict[str, Any]) -> WarrantCommitment:
    return WarrantCommitment(c.get_hex(o, "commitment", size=HASH_BYTES))


def _parse_scope(o: dict[str, Any]) -> tuple[Scope, ...]:
    items = c.get_list(o, "scope", max_items=2)
    if not all(isinstance(s, str) for s in items):
        raise InvalidInput("scope items must be strings")
    return normalise_scope(items)


def _parse_fields(tag: str, o: dict[str, Any]) -> AccessLogEntry:
    if tag == TAG_APPROVER_SET:
        c.require_keys(o, {"signed_approver_set"}, what="approver set entry")
        return ApproverSetEntry(SignedApproverSet.from_obj(o["signed_approver_set"]))
    if tag == TAG_AGENCY_KEY:
        c.require_keys(o, {"signed_agency_key"}, what="agency key entry")
        return AgencyKeyEntry(SignedAgencyKey.from_obj(o["signed_agency_key"]))
    if tag == TAG_WARRANT_COMMITMENT:
        keys = {
            "commitment", "timespan", "disclosure_time", "scope", "approver_ids",
            "approver_set", "delivery_key_id",
        }  # fmt: skip
        c.require_keys(o, keys, what="warrant commitment entry")
        span = c.require_keys(o["timespan"], {"start_time", "end_time"}, what="timespan")
        ids = c.get_list(o, "approver_ids", max_items=MAX_APPROVERS)
        return WarrantCommitmentEntry(
            commitment=_commitment(o),
            start_time=c.get_int(span, "start_time"),
            end_time=c.get_int(span, "end_time"),
            disclosure_time=c.get_int(o, "disclosure_time"),
            scope=_parse_scope(o),
            approver_ids=tuple(c.check_ident(i, "approver id") for i in ids),
            approver_set=ApproverSetHash(c.get_hex(o, "approver_set", size=HASH_BYTES)),
            delivery_key_id=AgencyKeyId(c.get_hex(o, "delivery_key_id", size=HASH_BYTES)),
        )
    if tag == TAG_WARRANT_DISCLOSURE:
        c.require_keys(o, {"commitment", "signed_warrant", "nonce"}, what="disclosure entry")
        return WarrantDisclosureEntry(
            commitment=_commitment(o),
            signed_warrant=SignedWarrant.from_obj(o["signed_warrant"]),
            nonce=c.get_hex(o, "nonce", size=WARRANT_COMMITMENT_NONCE_BYTES),
        )
    if tag == TAG_RECORD_COUNT:
        c.require_keys(o, {"commitment", "record_count", "as_of"}, what="record count entry")
        return RecordCountEntry(
            commitment=_commitment(o),
            record_count=c.get_int(o, "record_count"),
            as_of=c.get_int(o, "as_of"),
        )
    if tag == TAG_DISCLOSURE_EXTENSION:
        keys = {"commitment", "disclosure_time", "extended_at", "approver_set", "signatures"}
        c.require_keys(o, keys, what="disclosure extension entry")
        sigs = c.get_list(o, "signatures", max_items=MAX_APPROVERS)
        return DisclosureExtensionEntry(
            commitment=_commitment(o),
            disclosure_time=c.get_int(o, "disclosure_time"),
            extended_at=c.get_int(o, "extended_at"),
            approver_set=ApproverSetHash(c.get_hex(o, "approver_set", size=HASH_BYTES)),
            signatures=tuple(ApproverSignature.from_obj(sig) for sig in sigs),
        )
    raise InvalidInput("unknown lawful-access entry type")


def parse_access_entry(data: bytes) -> AccessLogEntry:
    """Parse one log entry; only the canonical encoding of a known type is accepted.

    The result is *parsed*, not verified: signatures, thresholds and openings are checked by
    `verify_agency_key`, `verify_approver_set_update`, `verify_warrant_opening` and friends.
    """
    obj = c.decode_canonical(data, what="log entry")
    tag = obj.pop("type", None)
    if not isinstance(tag, str):
        raise InvalidInput("log entry has no type")
    entry = _parse_fields(tag, obj)
    if entry.to_bytes() != bytes(data):  # defence in depth: one meaning, one encoding
        raise InvalidInput("log entry is not in canonical form")
    return entry


def is_access_entry(data: bytes) -> bool:
    """Cheap test: does this log entry claim a lawful-access type (without validating it)?"""
    try:
        obj = c.decode_canonical(data, what="log entry")
    except InvalidInput:
        return False
    tag = obj.get("type")
    return isinstance(tag, str) and tag.startswith(ACCESS_TAG_PREFIX)

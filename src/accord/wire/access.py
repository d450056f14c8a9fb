"""Wire models of accountable lawful access (docs/lawful-access.md).

The signed objects themselves (approver sets, agency keys, warrants, deliveries, records) have
one canonical encoding each, defined and parsed strictly in `accord.protocols.access`; here they
travel as JSON objects (``dict``) that the receiver re-encodes canonically and parses with those
readers. These models bound everything around them: counts, string lengths, index ranges.
Log entries travel as standard base64 of their exact bytes, proof hashes as lowercase hex.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from accord.primitives.encoding import canonical_json
from accord.wire.common import AccountName, Version, WireModel

MAX_SIGNED_OBJECT_ITEMS = 16
"""Top-level keys of a signed object as it travels (the strict readers check the exact set)."""

MAX_ENTRY_B64_CHARS = 4 * ((64 * 1024 + 2) // 3)
"""A log entry of at most 64 KiB, in base64."""

MAX_PROOF_HASHES = 64
MAX_SETS_PER_SYNC = 64
MAX_DELIVERIES_PER_SYNC = 16
MAX_DISCLOSURES_PER_SYNC = 50
MAX_RECORDS_PER_UPLOAD = 16
MAX_RECORDS_PER_PAGE = 100
MAX_METADATA_PER_PAGE = 500
MAX_ENTRIES_PER_PAGE = 500

Hex32 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
EntryB64 = Annotated[str, StringConstraints(min_length=4, max_length=MAX_ENTRY_B64_CHARS)]
LogIndex = Annotated[int, Field(ge=0, le=2**62)]
ProofHashes = Annotated[list[Hex32], Field(max_length=MAX_PROOF_HASHES)]
SignedObject = Annotated[dict[str, Any], Field(max_length=MAX_SIGNED_OBJECT_ITEMS)]
CheckpointNote = Annotated[str, StringConstraints(min_length=1, max_length=65536)]


# --- authorities: approver sets, agency keys, warrants ------------------------------------


class PublishApproverSetRequest(WireModel):
    """Operator: publish a signed approver set (the first, or the next version)."""

    v: Version = 1
    signed_approver_set: SignedObject


class ApproverSetPublished(WireModel):
    index: LogIndex
    version: int
    set_hash: Hex32


class RegisterAgencyKeyRequest(WireModel):
    """An agency key registration signed by k approvers of the current set."""

    v: Version = 1
    signed_agency_key: SignedObject


class AgencyKeyRegistered(WireModel):
    index: LogIndex
    key_id: Hex32


class SubmitWarrantRequest(WireModel):
    """A warrant signed by k approvers, submitted by the agency."""

    v: Version = 1
    signed_warrant: SignedObject


class ExtendDisclosureRequest(WireModel):
    """k approvers of a warrant's set postpone its disclosure (a `DisclosureExtensionEntry`)."""

    v: Version = 1
    extension: SignedObject


class DisclosureExtended(WireModel):
    index: LogIndex
    disclosure_time: int


class WarrantSubmitted(WireModel):
    warrant_id: Hex32
    commitment: Hex32
    index: LogIndex


class LoggedEntry(WireModel):
    """A log entry (its exact bytes, base64) and its index."""

    index: LogIndex
    entry: EntryB64


class AccessEntries(WireModel):
    """The lawful-access entries of the log, in log order (the public view)."""

    entries: Annotated[list[LoggedEntry], Field(max_length=MAX_ENTRIES_PER_PAGE)]
    more: bool


class ProvenEntry(WireModel):
    """A log entry with its inclusion proof at the size of the checkpoint it comes with."""

    index: LogIndex
    entry: EntryB64
    proof: ProofHashes


class ApproverSets(WireModel):
    """Every published approver set, oldest first, proven against one checkpoint."""

    checkpoint: CheckpointNote
    consistency_proof: ProofHashes = []
    sets: Annotated[list[ProvenEntry], Field(max_length=MAX_SETS_PER_SYNC)]


# --- the target's devices -----------------------------------------------------------------


class ProvenDisclosure(WireModel):
    disclosure: ProvenEntry
    commitment: ProvenEntry


class AccessSync(WireModel):
    """What a device learns on each sync, proven against one checkpoint.

    ``consistency_proof`` runs from the size the device said it last saw; ``deliveries`` are
    `WarrantDelivery` objects (for this account's current warrants only); ``disclosures`` are
    every published opening after the index the device gave (not only its own).
    """

    checkpoint: CheckpointNote
    consistency_proof: ProofHashes
    approver_sets: Annotated[list[ProvenEntry], Field(max_length=MAX_SETS_PER_SYNC)]
    deliveries: Annotated[list[SignedObject], Field(max_length=MAX_DELIVERIES_PER_SYNC)]
    disclosures: Annotated[list[ProvenDisclosure], Field(max_length=MAX_DISCLOSURES_PER_SYNC)]
    more_disclosures: bool


class RecordUpload(WireModel):
    """Sealed records (`SealedRecord` objects) from the target's device, in sequence order."""

    v: Version = 1
    records: Annotated[list[SignedObject], Field(min_length=1, max_length=MAX_RECORDS_PER_UPLOAD)]


class RecordsStored(WireModel):
    stored: int


# --- the agency -----------------------------------------------------------------------------


class AgencyChallengeRequest(WireModel):
    v: Version = 1
    warrant_id: Hex32


class AgencyChallenge(WireModel):
    """A fetch token sealed (HPKE) to the warrant's agency key: only its holder can open it."""

    enc: Annotated[str, StringConstraints(min_length=44, max_length=44)]
    ciphertext: Annotated[str, StringConstraints(min_length=4, max_length=512)]
    expires_at: int


class AgencyWarrant(WireModel):
    """The warrant as submitted, and the agency key entry it is delivered to."""

    signed_warrant: SignedObject
    commitment: Hex32
    commitment_index: LogIndex
    agency_key: LoggedEntry


class StoredRecord(WireModel):
    id: Annotated[int, Field(ge=1, le=2**62)]
    received_at: int
    record: SignedObject


class RecordPage(WireModel):
    records: Annotated[list[StoredRecord], Field(max_length=MAX_RECORDS_PER_PAGE)]
    more: bool


class DeliveryMetadata(WireModel):
    """One delivery to or from the target, recorded by the server under a metadata warrant."""

    id: Annotated[int, Field(ge=1, le=2**62)]
    direction: Literal["sent", "received"]
    counterpart: AccountName
    at: int
    size: Annotated[int, Field(ge=0)]


class MetadataPage(WireModel):
    items: Annotated[list[DeliveryMetadata], Field(max_length=MAX_METADATA_PER_PAGE)]
    more: bool


AGENCY_CHALLENGE_INFO_PURPOSE = "accord-agency-challenge-v1"


def agency_challenge_info() -> bytes:
    """HPKE ``info`` of the agency fetch challenge (the warrant id is its associated data)."""
    return canonical_json({"purpose": AGENCY_CHALLENGE_INFO_PURPOSE})

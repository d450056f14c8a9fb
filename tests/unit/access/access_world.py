"""Test helper: an in-memory lawful-access world (approvers, an agency, a log, witnesses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from accord.primitives.hpke import HpkePrivateKey, generate_hpke_key_pair
from accord.primitives.olm import DeviceAccount
from accord.protocols.access.agency import AgencyKey, SignedAgencyKey, sign_agency_key
from accord.protocols.access.approvers import (
    ApproverRole,
    ApproverSet,
    ApproverSigner,
    sign_approver_set,
)
from accord.protocols.access.device import WarrantDelivery
from accord.protocols.access.log_entries import (
    AgencyKeyEntry,
    ApproverSetEntry,
    WarrantCommitmentEntry,
)
from accord.protocols.access.records import RecordSigner
from accord.protocols.access.warrant import (
    SignedWarrant,
    Warrant,
    approve_warrant,
    commit_warrant,
    draft_warrant,
)
from accord.protocols.translog import merkle
from accord.protocols.translog import note as tn
from accord.protocols.translog.note import Checkpoint
from accord.protocols.translog.verify import LogTrustPolicy

NOW = 1_750_000_000
DAY = 86400
ORIGIN = "log.example/accord"
TARGET = "alice"
WITNESSED_AT = NOW - 3600
"""When the witnesses cosign: the default window starts then (W11)."""

# Key generation is the slow part: do it once per test session.
SIGNERS = {
    "judge": ApproverSigner.generate("judge"),
    "commissioner": ApproverSigner.generate("commissioner"),
    "oversight": ApproverSigner.generate("oversight"),
    "newcomer": ApproverSigner.generate("newcomer"),
}
ROLES = {
    "judge": ApproverRole.ISSUING_AUTHORITY,
    "commissioner": ApproverRole.JUDICIAL_COMMISSIONER,
    "oversight": ApproverRole.OVERSIGHT_BODY,
    "newcomer": ApproverRole.OVERSIGHT_BODY,
}
LOG_SIGNER = tn.parse_skey(tn.generate_signer(ORIGIN)[0])
WITNESSES = [tn.parse_skey(tn.generate_cosigner(f"w{i}.example")[0]) for i in range(3)]
POLICY = LogTrustPolicy(
    origin=ORIGIN,
    log_verifiers=(LOG_SIGNER.verifier,),
    witness_verifiers=tuple(w.verifier for w in WITNESSES),
    witness_quorum=2,
)
AGENCY_PRIVATE = generate_hpke_key_pair()
DEVICES = {d: DeviceAccount() for d in ("dev1", "dev2", "d", "DEVICE1", "phone", "laptop")}
"""The target's devices: their Ed25519 keys are what the log would hold (records are signed)."""
DEVICE_KEYS = {d: a.ed25519 for d, a in DEVICES.items()}


def sign_as(device_id: str) -> RecordSigner:
    return DEVICES[device_id].sign


def make_set(
    ids: list[str], threshold: int = 2, version: int = 1, previous: bytes | None = None
) -> ApproverSet:
    approvers = tuple(SIGNERS[i].approver(name=i.title(), role=ROLES[i]) for i in sorted(ids))
    return ApproverSet(version, threshold, approvers, previous)  # type: ignore[arg-type]


@dataclass
class Log:
    entries: list[bytes] = field(default_factory=list)

    def append(self, entry: bytes) -> int:
        self.entries.append(entry)
        return len(self.entries) - 1

    def leaves(self, size: int | None = None) -> list[bytes]:
        return [merkle.leaf_hash(e) for e in self.entries[: size or len(self.entries)]]

    def checkpoint(self, witnesses: int = 2, size: int | None = None) -> tuple[str, Checkpoint]:
        size = len(self.entries) if size is None else size
        cp = Checkpoint(ORIGIN, size, merkle.root_hash(self.leaves(size)))
        body = cp.to_text()
        signed = tn.sign_note(body, [LOG_SIGNER])
        return tn.add_signatures(
            signed, [w.sign(body, timestamp=WITNESSED_AT) for w in WITNESSES[:witnesses]]
        ), cp

    def proof(self, index: int, size: int | None = None) -> tuple[bytes, ...]:
        return tuple(merkle.inclusion_proof(self.leaves(size), index))


@dataclass
class World:
    approver_set: ApproverSet
    agency_key: AgencyKey
    signed_agency_key: SignedAgencyKey
    agency_private: HpkePrivateKey
    log: Log
    agency_index: int

    def draft(self, **overrides: object) -> Warrant:
        fields: dict[str, object] = {
            "authorisation_reference": "AUTH-2025-0042",
            "legal_type": "interception-warrant",
            "case_reference": "CASE-77",
            "target_identifier": TARGET,
            "start_time": NOW - 3600,
            "end_time": NOW + 7 * DAY,
            "delivery_key_id": self.agency_key.key_id,
            "scope": ["content", "metadata"],
            "disclosure_time": NOW + 180 * DAY,
            "approver_set": self.approver_set,
        }
        fields.update(overrides)
        return draft_warrant(**fields)  # type: ignore[arg-type]

    def approve(self, warrant: Warrant | SignedWarrant, *ids: str) -> SignedWarrant:
        signed = warrant if isinstance(warrant, SignedWarrant) else SignedWarrant(warrant)
        at = min(NOW - 7200, signed.warrant.start_time)  # approvals precede the window (W11)
        for i in ids:
            signed = approve_warrant(signed, SIGNERS[i], self.approver_set, now=at)
        return signed

    def commit(
        self, signed: SignedWarrant, approver_ids: tuple[str, ...] | None = None
    ) -> tuple[bytes, bytes, int]:
        commitment, nonce = commit_warrant(signed)
        w = signed.warrant
        entry = WarrantCommitmentEntry(
            commitment=commitment,
            start_time=w.start_time,
            end_time=w.end_time,
            disclosure_time=w.disclosure_time,
            scope=w.scope,
            approver_ids=approver_ids or tuple(sorted({a.approver_id for a in signed.approvals})),
            approver_set=w.approver_set,
            delivery_key_id=w.delivery_key_id,
        ).to_bytes()
        return entry, nonce, self.log.append(entry)

    def deliver(self, signed: SignedWarrant, *, witnesses: int = 2) -> WarrantDelivery:
        entry, nonce, index = self.commit(signed)
        note, _ = self.log.checkpoint(witnesses)
        return WarrantDelivery(
            signed_warrant=signed,
            nonce=nonce,
            commitment_entry=entry,
            commitment_index=index,
            commitment_proof=self.log.proof(index),
            agency_key_entry=self.log.entries[self.agency_index],
            agency_key_index=self.agency_index,
            agency_key_proof=self.log.proof(self.agency_index),
            checkpoint_note=note,
            commitment_checkpoint_note=note,
            commitment_checkpoint_proof=self.log.proof(index),
        )


def make_world(approver_set: ApproverSet | None = None) -> World:
    aset = approver_set or make_set(["commissioner", "judge", "oversight"])
    key = AgencyKey(
        agency_id="nca",
        name="National Crime Agency",
        public_key=AGENCY_PRIVATE.public_key(),
        approver_set=aset.set_hash,
        registered_at=NOW - 30 * DAY,
    )
    signed_key = sign_agency_key(sign_agency_key(key, SIGNERS["judge"]), SIGNERS["oversight"])
    log = Log()
    first = [i for i in ("commissioner", "judge", "oversight") if aset.member(i)][:2]
    signed_set = sign_approver_set(sign_approver_set(aset, SIGNERS[first[0]]), SIGNERS[first[1]])
    log.append(ApproverSetEntry(signed_set).to_bytes())  # the genesis set, as the log holds it
    log.append(b"device key registration 0")
    index = log.append(AgencyKeyEntry(signed_key).to_bytes())
    log.append(b"device key registration 1")
    return World(aset, key, signed_key, AGENCY_PRIVATE, log, index)

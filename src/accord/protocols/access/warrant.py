"""Warrants: the ETSI TS 103 120 authorisation and task fields, approvals, and the commitment.

A `Warrant` is the agency's draft: what is authorised (legal type, references), against whom
(one account), when (start and end, at most `WARRANT_MAX_DURATION_S` apart), what (scope:
content and/or metadata), delivered to which registered agency key, under which approver set,
and when it must be disclosed. Its id (`Warrant.warrant_id`) is the SHA-256 of its canonical
encoding; a random `object_identifier` (a UUID, as ETSI objects carry) keeps ids of otherwise
equal drafts apart and unguessable. A renewal is a new warrant.

Each approval (`Approval`: approver, role, time, signature) is an Ed25519 signature over the
canonical encoding of ``{purpose, warrant_id, approver_id, role, approved_at}``; the warrant id
covers every warrant field, so changing any field invalidates every approval.

Commitment. The provider logs ``HMAC-SHA256(key = nonce, message = domain || canonical(signed
warrant))`` with a fresh 32-byte random nonce (`commit_warrant`). HMAC keyed by a uniformly
random secret key is a PRF, so the commitment is hiding (it reveals nothing about the warrant,
target included, until the nonce is published) under the standard PRF assumption rather than a
random-oracle view of SHA-256 over a concatenation; it is binding because two openings of one
value would give a SHA-256 collision (HMAC's outer call hashes a fixed-length block). Openings are
checked in constant time (`verify_warrant_opening`).
"""

from __future__ import annotations

import enum
import hmac
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NewType

from accord.errors import AuthorizationError, InvalidInput, VerificationError
from accord.primitives.encoding import canonical_json
from accord.protocols.access import _codec as c
from accord.protocols.access.agency import AgencyKeyId
from accord.protocols.access.approvers import (
    ED25519_SIGNATURE_BYTES,
    HASH_BYTES,
    MAX_APPROVERS,
    ApproverRole,
    ApproverSet,
    ApproverSetHash,
    ApproverSigner,
    digest,
)

WarrantId = NewType("WarrantId", bytes)
"""SHA-256 over the canonical encoding of a warrant (32 bytes)."""

WarrantCommitment = NewType("WarrantCommitment", bytes)
"""HMAC-SHA256 keyed by the nonce over the signed warrant (32 bytes)."""

WARRANT_VERSION = 1
WARRANT_MAX_DURATION_S = 30 * 86400
"""Default maximum window (30 days). A longer interception needs a new warrant."""

DEFAULT_MAX_START_SKEW_S = 300
"""How long before the witnesses first cosigned its commitment a window may start (5 minutes):
the time it takes to submit and log a warrant drafted to start now."""
DEFAULT_MAX_DISCLOSURE_DELAY_S = 365 * 86400
"""How long after its window ends a warrant (or an extension) may set its disclosure (1 year)."""

WARRANT_COMMITMENT_NONCE_BYTES = 32
WARRANT_ID_PURPOSE = "accord-warrant-id-v1"
APPROVAL_PURPOSE = "accord-warrant-approval-v1"
COMMITMENT_DOMAIN = b"accord-warrant-commitment-v1\n"
MAX_TEXT_CHARS = 200
MAX_ACCOUNT_CHARS = 256


class Scope(enum.StrEnum):
    """What is intercepted: TS 103 120 DeliveryType CC (content) and IRI (metadata)."""

    CONTENT = "content"
    METADATA = "metadata"


def _check_scope(scope: object) -> tuple[Scope, ...]:
    if not isinstance(scope, tuple) or not scope or not all(isinstance(s, Scope) for s in scope):
        raise InvalidInput("scope must be a non-empty tuple of Scope")
    if list(scope) != sorted(set(scope)):
        raise InvalidInput("scope must be sorted and without repeats")
    return scope


def normalise_scope(values: Iterable[str | Scope]) -> tuple[Scope, ...]:
    """``["metadata", "content"]`` -> ``(Scope.CONTENT, Scope.METADATA)``."""
    try:
        return tuple(sorted({Scope(v) for v in values}))
    except ValueError:
        raise InvalidInput("scope items are 'content' and 'metadata'") from None


@dataclass(frozen=True)
class Warrant:
    """A warrant draft (unsigned). Field names follow ETSI TS 103 120; see docs."""

    object_identifier: str
    authorisation_reference: str
    legal_type: str
    case_reference: str
    start_time: int
    end_time: int
    target_identifier: str
    delivery_key_id: AgencyKeyId
    scope: tuple[Scope, ...]
    disclosure_time: int
    approver_set: ApproverSetHash
    version: int = WARRANT_VERSION

    def __post_init__(self) -> None:
        if self.version != WARRANT_VERSION:
            raise InvalidInput("unsupported warrant version")
        try:
            parsed = uuid.UUID(self.object_identifier)
        except (ValueError, TypeError, AttributeError):
            raise InvalidInput("object identifier must be a UUID") from None
        if str(parsed) != self.object_identifier:
            raise InvalidInput("object identifier must be a lowercase hyphenated UUID")
        c.check_text(
            self.authorisation_reference, "authorisation reference", max_len=MAX_TEXT_CHARS
        )
        c.check_text(self.legal_type, "legal type", max_len=MAX_TEXT_CHARS)
        c.check_text(self.case_reference, "case reference", max_len=MAX_TEXT_CHARS)
        c.check_text(self.target_identifier, "target identifier", max_len=MAX_ACCOUNT_CHARS)
        c.check_int(self.start_time, "start time")
        c.check_int(self.end_time, "end time")
        c.check_int(self.disclosure_time, "disclosure time")
        if self.end_time <= self.start_time:
            raise InvalidInput("the window must end after it starts")
        if self.disclosure_time < self.end_time:
            raise InvalidInput("disclosure must not come before the window ends")
        for name, value in (
            ("delivery key id", self.delivery_key_id),
            ("approver set", self.approver_set),
        ):
            if not isinstance(value, bytes) or len(value) != HASH_BYTES:
                raise InvalidInput(f"{name} must be 32 bytes")
        _check_scope(self.scope)

    @property
    def duration_s(self) -> int:
        return self.end_time - self.start_time

    def to_obj(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "object_identifier": self.object_identifier,
            "authorisation_reference": self.authorisation_reference,
            "legal_type": self.legal_type,
            "case_reference": self.case_reference,
            "timespan": {"start_time": self.start_time, "end_time": self.end_time},
            "target_identifier": self.target_identifier,
            "delivery_key_id": self.delivery_key_id.hex(),
            "scope": [s.value for s in self.scope],
            "disclosure_time": self.disclosure_time,
            "approver_set": self.approver_set.hex(),
        }

    @classmethod
    def from_obj(cls, obj: object) -> Warrant:
        keys = {
            "version", "object_identifier", "authorisation_reference", "legal_type",
            "case_reference", "timespan", "target_identifier", "delivery_key_id", "scope",
            "disclosure_time", "approver_set",
        }  # fmt: skip
        o = c.require_keys(obj, keys, what="warrant")
        span = c.require_keys(o["timespan"], {"start_time", "end_time"}, what="timespan")
        scope_items = c.get_list(o, "scope", max_items=2)
        if not all(isinstance(s, str) for s in scope_items):
            raise InvalidInput("scope items must be strings")
        scope = normalise_scope(scope_items)
        if [s.value for s in scope] != scope_items:
            raise InvalidInput("scope must be sorted and without repeats")
        return cls(
            version=c.get_int(o, "version"),
            object_identifier=c.get_str(o, "object_identifier", max_len=36),
            authorisation_reference=c.get_str(o, "authorisation_reference", max_len=MAX_TEXT_CHARS),
            legal_type=c.get_str(o, "legal_type", max_len=MAX_TEXT_CHARS),
            case_reference=c.get_str(o, "case_reference", max_len=MAX_TEXT_CHARS),
            start_time=c.get_int(span, "start_time"),
            end_time=c.get_int(span, "end_time"),
            target_identifier=c.get_str(o, "target_identifier", max_len=MAX_ACCOUNT_CHARS),
            delivery_key_id=AgencyKeyId(c.get_hex(o, "delivery_key_id", size=HASH_BYTES)),
            scope=scope,
            disclosure_time=c.get_int(o, "disclosure_time"),
            approver_set=ApproverSetHash(c.get_hex(o, "approver_set", size=HASH_BYTES)),
        )

    @cached_property
    def warrant_id(self) -> WarrantId:
        return WarrantId(digest(WARRANT_ID_PURPOSE, self.to_obj()))


def draft_warrant(
    *,
    authorisation_reference: str,
    legal_type: str,
    case_reference: str,
    target_identifier: str,
    start_time: int,
    end_time: int,
    delivery_key_id: AgencyKeyId,
    scope: Iterable[str | Scope],
    disclosure_time: int,
    approver_set: ApproverSet,
    max_duration_s: int = WARRANT_MAX_DURATION_S,
) -> Warrant:
    """The agency's draft, with a fresh random object identifier; refuses an over-long window."""
    warrant = Warrant(
        object_identifier=str(uuid.uuid4()),
        authorisation_reference=authorisation_reference,
        legal_type=legal_type,
        case_reference=case_reference,
        start_time=start_time,
        end_time=end_time,
        target_identifier=target_identifier,
        delivery_key_id=delivery_key_id,
        scope=normalise_scope(scope),
        disclosure_time=disclosure_time,
        approver_set=approver_set.set_hash,
    )
    check_warrant_duration(warrant, max_duration_s=max_duration_s)
    return warrant


def check_warrant_duration(
    warrant: Warrant, *, max_duration_s: int = WARRANT_MAX_DURATION_S
) -> None:
    if warrant.duration_s > max_duration_s:
        raise AuthorizationError(
            f"warrant window of {warrant.duration_s} s exceeds the maximum of {max_duration_s} s",
            code="warrant_too_long",
        )


def check_disclosure_delay(end_time: int, disclosure_time: int, *, max_delay_s: int) -> None:
    """The disclosure follows the window's end by at most ``max_delay_s`` (else
    `AuthorizationError` ``disclosure_too_late``)."""
    if disclosure_time - end_time > max_delay_s:
        raise AuthorizationError(
            f"disclosure is set more than {max_delay_s} s after the window ends",
            code="disclosure_too_late",
        )


def check_warrant_prospective(start_time: int, committed_at: int, *, max_skew_s: int) -> None:
    """The window starts no earlier than ``max_skew_s`` before ``committed_at`` (the time the
    warrant's commitment was first witnessed), else `AuthorizationError` ``warrant_retroactive``."""
    if start_time + max_skew_s < committed_at:
        raise AuthorizationError(
            "warrant window starts before the warrant was logged", code="warrant_retroactive"
        )


@dataclass(frozen=True)
class Approval:
    """TS 103 120 ApprovalDetails: approver, role, time, digital signature."""

    approver_id: str
    role: ApproverRole
    approved_at: int
    signature: bytes

    def __post_init__(self) -> None:
        c.check_ident(self.approver_id, "approver id")
        if not isinstance(self.role, ApproverRole):
            raise InvalidInput("unknown approver role")
        c.check_int(self.approved_at, "approval time")
        if not isinstance(self.signature, bytes) or len(self.signature) != ED25519_SIGNATURE_BYTES:
            raise InvalidInput("approval signature must be 64 bytes")

    def to_obj(self) -> dict[str, Any]:
        return {
            "approver_id": self.approver_id,
            "role": self.role.value,
            "approved_at": self.approved_at,
            "signature": c.b64(self.signature),
        }

    @classmethod
    def from_obj(cls, obj: object) -> Approval:
        o = c.require_keys(
            obj, {"approver_id", "role", "approved_at", "signature"}, what="approval"
        )
        role = c.get_str(o, "role", max_len=64)
        if role not in ApproverRole.__members__.values():
            raise InvalidInput("unknown approver role")
        return cls(
            approver_id=c.get_str(o, "approver_id", max_len=64),
            role=ApproverRole(role),
            approved_at=c.get_int(o, "approved_at"),
            signature=c.get_b64(o, "signature", max_bytes=64, size=ED25519_SIGNATURE_BYTES),
        )


def approval_message(
    warrant_id: WarrantId, approver_id: str, role: ApproverRole, approved_at: int
) -> bytes:
    """The canonical bytes one approver signs for one warrant."""
    return canonical_json(
        {
            "purpose": APPROVAL_PURPOSE,
            "warrant_id": warrant_id.hex(),
            "approver_id": approver_id,
            "role": role.value,
            "approved_at": approved_at,
        }
    )


@dataclass(frozen=True)
class SignedWarrant:
    """A warrant and its approvals (not yet verified: see `verify_warrant_approvals`)."""

    warrant: Warrant
    approvals: tuple[Approval, ...] = field(default=())

    @property
    def warrant_id(self) -> WarrantId:
        return self.warrant.warrant_id

    def to_obj(self) -> dict[str, Any]:
        return {
            "warrant": self.warrant.to_obj(),
            "approvals": [a.to_obj() for a in self.approvals],
        }

    @classmethod
    def from_obj(cls, obj: object) -> SignedWarrant:
        o = c.require_keys(obj, {"warrant", "approvals"}, what="signed warrant")
        return cls(
            warrant=Warrant.from_obj(o["warrant"]),
            approvals=tuple(
                Approval.from_obj(a) for a in c.get_list(o, "approvals", max_items=MAX_APPROVERS)
            ),
        )

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_obj())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedWarrant:
        return cls.from_obj(c.decode_canonical(data, what="signed warrant"))


def approve_warrant(
    signed: SignedWarrant | Warrant,
    signer: ApproverSigner,
    approver_set: ApproverSet,
    *,
    now: int,
) -> SignedWarrant:
    """An approver signs a warrant draft (or adds to its approvals). The role comes from the set."""
    if isinstance(signed, Warrant):
        signed = SignedWarrant(signed)
    member = approver_set.member(signer.approver_id)
    if member is None or member.public_key != signer.public_key:
        raise AuthorizationError(
            "this key is not a member of the approver set", code="approver_not_member"
        )
    if not hmac.compare_digest(signed.warrant.approver_set, approver_set.set_hash):
        raise AuthorizationError("warrant names another approver set", code="approver_set_mismatch")
    sig = signer.sign(approval_message(signed.warrant_id, member.approver_id, member.role, now))
    approval = Approval(member.approver_id, member.role, now, sig.signature)
    return SignedWarrant(signed.warrant, (*signed.approvals, approval))


def verify_warrant_approvals(signed: SignedWarrant, approver_set: ApproverSet) -> tuple[str, ...]:
    """k distinct members of ``approver_set`` approved this exact warrant, each in their role.

    Fails closed (`VerificationError`) on a non-member, a repeated approver, a role that is not
    the member's, an approval dated after the window started, or a bad signature. Returns
    approver ids.
    """
    warrant = signed.warrant
    if not hmac.compare_digest(warrant.approver_set, approver_set.set_hash):
        raise VerificationError(
            "warrant was approved under an approver set this client does not trust",
            code="approver_set_mismatch",
        )
    seen: set[str] = set()
    for approval in signed.approvals:
        member = approver_set.member(approval.approver_id)
        if member is None:
            raise VerificationError(
                f"warrant: approved by {approval.approver_id!r}, who is not in the approver set",
                code="approver_not_member",
            )
        if approval.approver_id in seen:
            raise VerificationError(
                f"warrant: approver {approval.approver_id!r} signed twice",
                code="duplicate_approver",
            )
        if member.role is not approval.role:
            raise VerificationError(
                f"warrant: approval by {approval.approver_id!r} claims the wrong role",
                code="approver_role_mismatch",
            )
        if approval.approved_at > warrant.start_time:
            # Prospective only: every approval precedes the window it authorises.
            raise VerificationError(
                "warrant: approval dated after the window started", code="approval_after_start"
            )
        message = approval_message(
            signed.warrant_id, approval.approver_id, approval.role, approval.approved_at
        )
        if not member.verify(message, approval.signature):
            raise VerificationError(
                f"warrant: bad signature by {approval.approver_id!r}",
                code="bad_approver_signature",
            )
        seen.add(approval.approver_id)
    if len(seen) < approver_set.threshold:
        raise VerificationError(
            f"warrant: {len(seen)} of the {approver_set.threshold} required approvals",
            code="threshold_not_met",
        )
    return tuple(sorted(seen))


def compute_warrant_commitment(signed: SignedWarrant, nonce: bytes) -> WarrantCommitment:
    """HMAC-SHA256(nonce, domain || canonical(signed warrant))."""
    if not isinstance(nonce, bytes) or len(nonce) != WARRANT_COMMITMENT_NONCE_BYTES:
        raise InvalidInput("commitment nonce must be 32 bytes")
    mac = hmac.new(nonce, COMMITMENT_DOMAIN + signed.to_bytes(), "sha256")
    return WarrantCommitment(mac.digest())


def commit_warrant(signed: SignedWarrant) -> tuple[WarrantCommitment, bytes]:
    """A fresh hiding commitment to ``signed`` and its opening nonce (keep the nonce secret)."""
    nonce = secrets.token_bytes(WARRANT_COMMITMENT_NONCE_BYTES)
    return compute_warrant_commitment(signed, nonce), nonce


def verify_warrant_opening(commitment: bytes, signed: SignedWarrant, nonce: bytes) -> None:
    """(signed, nonce) opens ``commitment``; compared in constant time."""
    try:
        expected = compute_warrant_commitment(signed, nonce)
    except InvalidInput:
        raise VerificationError("malformed commitment opening", code="bad_commitment") from None
    if not hmac.compare_digest(expected, commitment):
        raise VerificationError(
            "warrant does not match its logged commitment", code="bad_commitment"
        )

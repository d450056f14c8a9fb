"""Approver sets: n named approvers with Ed25519 keys and a threshold k (docs/lawful-access.md §3).

Rules:

- A set has a version, a threshold ``2 <= k <= n`` (no approver acts alone), approvers sorted by
  id with distinct ids and distinct keys, and the hash of the set it replaces (none for
  version 1).
- Version 1 is signed by k of its own members. A client pins it: by the hash in its
  configuration when one is given, otherwise the set the server shows when the account is
  created (`pin_approver_set`).
- Version v+1 is accepted only if it names version v's hash and k distinct members of version v
  signed it (`verify_approver_set_update`). A removed approver's signature counts for nothing
  from then on.
- A threshold signature check (`verify_threshold_signatures`) fails closed: any signature by a
  non-member, any second signature by one member, or any invalid signature rejects the whole
  object, even when k good signatures remain.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NewType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from accord.errors import InvalidInput, VerificationError
from accord.primitives.encoding import canonical_json
from accord.protocols.access import _codec as c

ApproverSetHash = NewType("ApproverSetHash", bytes)
"""SHA-256 over the canonical encoding of an approver set (32 bytes)."""

ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
HASH_BYTES = 32
MIN_APPROVER_THRESHOLD = 2
MAX_APPROVERS = 64

APPROVER_SET_PURPOSE = "accord-approver-set-v1"
APPROVER_SET_HASH_PURPOSE = "accord-approver-set-hash-v1"


class ApproverRole(enum.StrEnum):
    """Who an approver is; ETSI TS 103 120 ApproverDetails/ApproverRole."""

    ISSUING_AUTHORITY = "issuing_authority"
    JUDICIAL_COMMISSIONER = "judicial_commissioner"
    OVERSIGHT_BODY = "oversight_body"


def digest(purpose: str, value: Any) -> bytes:
    """SHA-256 of the canonical encoding of ``{"purpose": purpose, "value": value}``."""
    return hashlib.sha256(canonical_json({"purpose": purpose, "value": value})).digest()


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Approver:
    """One member of an approver set."""

    approver_id: str
    name: str
    role: ApproverRole
    public_key: bytes

    def __post_init__(self) -> None:
        c.check_ident(self.approver_id, "approver id")
        c.check_text(self.name, "approver name", max_len=200)
        if not isinstance(self.role, ApproverRole):
            raise InvalidInput("unknown approver role")
        if not isinstance(self.public_key, bytes) or len(self.public_key) != ED25519_KEY_BYTES:
            raise InvalidInput("approver key must be 32 bytes of Ed25519")

    def to_obj(self) -> dict[str, Any]:
        return {
            "approver_id": self.approver_id,
            "name": self.name,
            "role": self.role.value,
            "public_key": c.b64(self.public_key),
        }

    @classmethod
    def from_obj(cls, obj: object) -> Approver:
        o = c.require_keys(obj, {"approver_id", "name", "role", "public_key"}, what="approver")
        role = c.get_str(o, "role", max_len=64)
        if role not in ApproverRole.__members__.values():
            raise InvalidInput("unknown approver role")
        return cls(
            approver_id=c.get_str(o, "approver_id", max_len=64),
            name=c.get_str(o, "name", max_len=200),
            role=ApproverRole(role),
            public_key=c.get_b64(o, "public_key", max_bytes=32, size=ED25519_KEY_BYTES),
        )

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != ED25519_SIGNATURE_BYTES:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class ApproverSet:
    """k of n approvers; ``previous`` is the hash of the set this one replaces."""

    version: int
    threshold: int
    approvers: tuple[Approver, ...]
    previous: ApproverSetHash | None = None

    def __post_init__(self) -> None:
        c.check_int(self.version, "approver set version", minimum=1)
        if not isinstance(self.approvers, tuple) or not all(
            isinstance(a, Approver) for a in self.approvers
        ):
            raise InvalidInput("approvers must be a tuple of Approver")
        n = len(self.approvers)
        if not 0 < n <= MAX_APPROVERS:
            raise InvalidInput(f"an approver set has 1..{MAX_APPROVERS} approvers")
        c.check_int(self.threshold, "threshold", minimum=MIN_APPROVER_THRESHOLD, maximum=n)
        ids = [a.approver_id for a in self.approvers]
        if ids != sorted(set(ids)):
            raise InvalidInput("approvers must be sorted by id, with distinct ids")
        if len({a.public_key for a in self.approvers}) != n:
            raise InvalidInput("two approvers share a key")
        if (self.version == 1) != (self.previous is None):
            raise InvalidInput("version 1 has no previous set; later versions name one")
        if self.previous is not None and len(self.previous) != HASH_BYTES:
            raise InvalidInput("previous set hash must be 32 bytes")

    def to_obj(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "threshold": self.threshold,
            "approvers": [a.to_obj() for a in self.approvers],
            "previous": None if self.previous is None else self.previous.hex(),
        }

    @classmethod
    def from_obj(cls, obj: object) -> ApproverSet:
        o = c.require_keys(
            obj, {"version", "threshold", "approvers", "previous"}, what="approver set"
        )
        prev = o["previous"]
        return cls(
            version=c.get_int(o, "version", minimum=1),
            threshold=c.get_int(o, "threshold", minimum=0, maximum=MAX_APPROVERS),
            approvers=tuple(
                Approver.from_obj(a) for a in c.get_list(o, "approvers", max_items=MAX_APPROVERS)
            ),
            previous=None
            if prev is None
            else ApproverSetHash(c.parse_hex(prev, "previous", size=HASH_BYTES)),
        )

    @cached_property
    def set_hash(self) -> ApproverSetHash:
        return ApproverSetHash(digest(APPROVER_SET_HASH_PURPOSE, self.to_obj()))

    def member(self, approver_id: str) -> Approver | None:
        for approver in self.approvers:
            if approver.approver_id == approver_id:
                return approver
        return None


@dataclass(frozen=True)
class ApproverSignature:
    """An approver's Ed25519 signature on some canonical message."""

    approver_id: str
    signature: bytes

    def __post_init__(self) -> None:
        c.check_ident(self.approver_id, "approver id")
        if not isinstance(self.signature, bytes) or len(self.signature) != 64:
            raise InvalidInput("signature must be 64 bytes")

    def to_obj(self) -> dict[str, Any]:
        return {"approver_id": self.approver_id, "signature": c.b64(self.signature)}

    @classmethod
    def from_obj(cls, obj: object) -> ApproverSignature:
        o = c.require_keys(obj, {"approver_id", "signature"}, what="signature")
        return cls(
            approver_id=c.get_str(o, "approver_id", max_len=64),
            signature=c.get_b64(o, "signature", max_bytes=64, size=ED25519_SIGNATURE_BYTES),
        )


class ApproverSigner:
    """An approver's private key. The key never appears in `repr`."""

    __slots__ = ("_key", "approver_id")

    def __init__(self, approver_id: str, private_key: Ed25519PrivateKey) -> None:
        self.approver_id = c.check_ident(approver_id, "approver id")
        if not isinstance(private_key, Ed25519PrivateKey):
            raise InvalidInput("approver key must be Ed25519")
        self._key = private_key

    def __repr__(self) -> str:
        return f"ApproverSigner({self.approver_id!r})"

    @classmethod
    def generate(cls, approver_id: str) -> ApproverSigner:
        return cls(approver_id, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, approver_id: str, seed: bytes) -> ApproverSigner:
        if not isinstance(seed, bytes) or len(seed) != ED25519_KEY_BYTES:
            raise InvalidInput("approver seed must be 32 bytes")
        return cls(approver_id, Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        """The 32-byte private seed: store it encrypted, never log it."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    @property
    def public_key(self) -> bytes:
        return _public_bytes(self._key.public_key())

    def approver(self, *, name: str, role: ApproverRole) -> Approver:
        return Approver(self.approver_id, name, role, self.public_key)

    def sign(self, message: bytes) -> ApproverSignature:
        return ApproverSignature(self.approver_id, self._key.sign(message))


def verify_threshold_signatures(
    approver_set: ApproverSet,
    message: bytes,
    signatures: Sequence[ApproverSignature],
    *,
    what: str,
) -> tuple[str, ...]:
    """Require k distinct members of ``approver_set`` to have signed ``message``.

    Fails closed on any non-member, duplicate or invalid signature. Returns the signers' ids.
    """
    seen: set[str] = set()
    for sig in signatures:
        member = approver_set.member(sig.approver_id)
        if member is None:
            raise VerificationError(
                f"{what}: signed by {sig.approver_id!r}, who is not in the approver set",
                code="approver_not_member",
            )
        if sig.approver_id in seen:
            raise VerificationError(
                f"{what}: approver {sig.approver_id!r} signed twice", code="duplicate_approver"
            )
        if not member.verify(message, sig.signature):
            raise VerificationError(
                f"{what}: bad signature by {sig.approver_id!r}", code="bad_approver_signature"
            )
        seen.add(sig.approver_id)
    if len(seen) < approver_set.threshold:
        raise VerificationError(
            f"{what}: {len(seen)} of the {approver_set.threshold} required approvals",
            code="threshold_not_met",
        )
    return tuple(sorted(seen))


@dataclass(frozen=True)
class SignedApproverSet:
    """An approver set and the signatures that authorise it (see module rules)."""

    approver_set: ApproverSet
    signatures: tuple[ApproverSignature, ...] = field(default=())

    def to_obj(self) -> dict[str, Any]:
        return {
            "approver_set": self.approver_set.to_obj(),
            "signatures": [s.to_obj() for s in self.signatures],
        }

    @classmethod
    def from_obj(cls, obj: object) -> SignedApproverSet:
        o = c.require_keys(obj, {"approver_set", "signatures"}, what="signed approver set")
        return cls(
            approver_set=ApproverSet.from_obj(o["approver_set"]),
            signatures=tuple(
                ApproverSignature.from_obj(s)
                for s in c.get_list(o, "signatures", max_items=MAX_APPROVERS)
            ),
        )


def approver_set_message(approver_set: ApproverSet) -> bytes:
    """The bytes approvers sign to adopt ``approver_set``."""
    return canonical_json(
        {"purpose": APPROVER_SET_PURPOSE, "approver_set": approver_set.set_hash.hex()}
    )


def sign_approver_set(
    signed: SignedApproverSet | ApproverSet, signer: ApproverSigner
) -> SignedApproverSet:
    """Add ``signer``'s signature to an approver set (new or partly signed)."""
    if isinstance(signed, ApproverSet):
        signed = SignedApproverSet(signed)
    sig = signer.sign(approver_set_message(signed.approver_set))
    return SignedApproverSet(signed.approver_set, (*signed.signatures, sig))


def verify_genesis_approver_set(signed: SignedApproverSet) -> ApproverSet:
    """Version 1: k of its own members signed it."""
    new = signed.approver_set
    if new.version != 1:
        raise VerificationError("not a first approver set", code="approver_set_not_genesis")
    verify_threshold_signatures(
        new, approver_set_message(new), signed.signatures, what="approver set"
    )
    return new


def pin_approver_set(
    shown: SignedApproverSet, *, configured_hash: ApproverSetHash | None = None
) -> ApproverSet:
    """The set a client trusts when its account is created.

    With ``configured_hash`` (from the client's configuration) the shown set must have exactly
    that hash (it may be any version: configuration is trusted). Without it, the client trusts
    the first set the server shows, which must be a correctly signed version 1.
    """
    if configured_hash is not None:
        if not hmac.compare_digest(shown.approver_set.set_hash, configured_hash):
            raise VerificationError(
                "approver set differs from the configured one", code="approver_set_mismatch"
            )
        return shown.approver_set
    return verify_genesis_approver_set(shown)


def verify_approver_set_update(current: ApproverSet, signed: SignedApproverSet) -> ApproverSet:
    """Accept the next set only if k members of ``current`` signed it and it follows it."""
    new = signed.approver_set
    if new.version != current.version + 1 or new.previous is None:
        raise VerificationError(
            "approver set update is not the next version", code="approver_set_out_of_order"
        )
    if not hmac.compare_digest(new.previous, current.set_hash):
        raise VerificationError(
            "approver set update does not follow the current set", code="approver_set_fork"
        )
    verify_threshold_signatures(
        current, approver_set_message(new), signed.signatures, what="approver set update"
    )
    return new


def advance_approver_set(current: ApproverSet, updates: Sequence[SignedApproverSet]) -> ApproverSet:
    """Apply a chain of updates in order; the result is the newest trusted set."""
    for update in updates:
        current = verify_approver_set_update(current, update)
    return current

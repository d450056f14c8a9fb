"""Agency keys: an agency's HPKE public key, registered in the log and signed by k approvers.

An `AgencyKey` names the agency, its HPKE key (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, and the
AEAD it expects) and the approver set under which it was registered. Its id is a hash of its
canonical encoding; warrants name that id as their delivery destination. A client uses a key only
if k members of its *current* approver set signed the registration
(`verify_agency_key`) and the registration is included in the log; after an approver-set change
agencies register their keys again.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NewType

from accord.errors import InvalidInput, VerificationError
from accord.primitives.encoding import canonical_json
from accord.primitives.hpke import HPKE_PUBLIC_KEY_BYTES, HpkeAead, HpkePublicKey
from accord.protocols.access import _codec as c
from accord.protocols.access.approvers import (
    HASH_BYTES,
    MAX_APPROVERS,
    ApproverSet,
    ApproverSetHash,
    ApproverSignature,
    ApproverSigner,
    digest,
    verify_threshold_signatures,
)

AgencyKeyId = NewType("AgencyKeyId", bytes)
"""SHA-256 over the canonical encoding of an agency key registration (32 bytes)."""

AGENCY_KEY_PURPOSE = "accord-agency-key-v1"
AGENCY_KEY_ID_PURPOSE = "accord-agency-key-id-v1"
_AEAD_NAMES = {HpkeAead.AES_128_GCM: "aes-128-gcm", HpkeAead.CHACHA20_POLY1305: "chacha20poly1305"}
_AEAD_BY_NAME = {v: k for k, v in _AEAD_NAMES.items()}


@dataclass(frozen=True)
class AgencyKey:
    """An agency's HPKE public key registration."""

    agency_id: str
    name: str
    public_key: HpkePublicKey
    approver_set: ApproverSetHash
    registered_at: int
    aead: HpkeAead = HpkeAead.AES_128_GCM

    def __post_init__(self) -> None:
        c.check_ident(self.agency_id, "agency id")
        c.check_text(self.name, "agency name", max_len=200)
        if not isinstance(self.public_key, HpkePublicKey):
            raise InvalidInput("agency key must be an HPKE public key")
        if not isinstance(self.aead, HpkeAead):
            raise InvalidInput("unsupported AEAD")
        if not isinstance(self.approver_set, bytes) or len(self.approver_set) != HASH_BYTES:
            raise InvalidInput("approver set hash must be 32 bytes")
        c.check_int(self.registered_at, "registered_at")

    def to_obj(self) -> dict[str, Any]:
        return {
            "agency_id": self.agency_id,
            "name": self.name,
            "hpke_suite": {"kem": "dhkem-x25519-hkdf-sha256", "kdf": "hkdf-sha256"}
            | {"aead": _AEAD_NAMES[self.aead]},
            "public_key": c.b64(self.public_key.to_bytes()),
            "approver_set": self.approver_set.hex(),
            "registered_at": self.registered_at,
        }

    @classmethod
    def from_obj(cls, obj: object) -> AgencyKey:
        keys = {"agency_id", "name", "hpke_suite", "public_key", "approver_set", "registered_at"}
        o = c.require_keys(obj, keys, what="agency key")
        suite = c.require_keys(o["hpke_suite"], {"kem", "kdf", "aead"}, what="hpke suite")
        if suite["kem"] != "dhkem-x25519-hkdf-sha256" or suite["kdf"] != "hkdf-sha256":
            raise InvalidInput("unsupported HPKE suite")
        aead = _AEAD_BY_NAME.get(suite["aead"]) if isinstance(suite["aead"], str) else None
        if aead is None:
            raise InvalidInput("unsupported HPKE AEAD")
        raw = c.get_b64(o, "public_key", max_bytes=32, size=HPKE_PUBLIC_KEY_BYTES)
        return cls(
            agency_id=c.get_str(o, "agency_id", max_len=64),
            name=c.get_str(o, "name", max_len=200),
            public_key=HpkePublicKey.from_bytes(raw),
            approver_set=ApproverSetHash(c.get_hex(o, "approver_set", size=HASH_BYTES)),
            registered_at=c.get_int(o, "registered_at"),
            aead=aead,
        )

    @cached_property
    def key_id(self) -> AgencyKeyId:
        return AgencyKeyId(digest(AGENCY_KEY_ID_PURPOSE, self.to_obj()))


def agency_key_message(key: AgencyKey) -> bytes:
    """The bytes approvers sign to register ``key``."""
    return canonical_json({"purpose": AGENCY_KEY_PURPOSE, "agency_key_id": key.key_id.hex()})


@dataclass(frozen=True)
class SignedAgencyKey:
    key: AgencyKey
    signatures: tuple[ApproverSignature, ...] = field(default=())

    def to_obj(self) -> dict[str, Any]:
        return {"key": self.key.to_obj(), "signatures": [s.to_obj() for s in self.signatures]}

    @classmethod
    def from_obj(cls, obj: object) -> SignedAgencyKey:
        o = c.require_keys(obj, {"key", "signatures"}, what="signed agency key")
        return cls(
            key=AgencyKey.from_obj(o["key"]),
            signatures=tuple(
                ApproverSignature.from_obj(s)
                for s in c.get_list(o, "signatures", max_items=MAX_APPROVERS)
            ),
        )


def sign_agency_key(signed: SignedAgencyKey | AgencyKey, signer: ApproverSigner) -> SignedAgencyKey:
    """Add ``signer``'s approval to an agency key registration."""
    if isinstance(signed, AgencyKey):
        signed = SignedAgencyKey(signed)
    sig = signer.sign(agency_key_message(signed.key))
    return SignedAgencyKey(signed.key, (*signed.signatures, sig))


def verify_agency_key(signed: SignedAgencyKey, approver_set: ApproverSet) -> AgencyKey:
    """The registration names ``approver_set`` and k of its members signed it."""
    key = signed.key
    if not hmac.compare_digest(key.approver_set, approver_set.set_hash):
        raise VerificationError(
            "agency key was registered under another approver set",
            code="agency_key_wrong_approver_set",
        )
    verify_threshold_signatures(
        approver_set, agency_key_message(key), signed.signatures, what="agency key"
    )
    return key

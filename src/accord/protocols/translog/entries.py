"""Entries of the transparency log: a type tag, a version, one canonical byte encoding each.

Every entry is ``canonical_json({"type": <tag>, ...fields})``. This module defines the key
transparency entries (device registration and revocation), parses the lawful-access entries with
`accord.protocols.access.log_entries` (imported when it meets one), and reserves the tags of the
other parts of the pipeline, so an auditor can count every entry by type even before it can
parse it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from accord.errors import InvalidInput
from accord.primitives.encoding import canonical_json
from accord.protocols.access.tags import (
    ACCESS_TAG_PREFIX,
    TAG_AGENCY_KEY,
    TAG_APPROVER_SET,
    TAG_RECORD_COUNT,
    TAG_WARRANT_COMMITMENT,
    TAG_WARRANT_DISCLOSURE,
)

# The lawful-access entry types are imported where such an entry is parsed: a client that
# checks device keys never needs the warrant, approver and agency modules.
if TYPE_CHECKING:
    from accord.protocols.access.log_entries import AccessLogEntry

MAX_ENTRY_BYTES = 64 * 1024

TAG_DEVICE_REGISTRATION = "accord.device.registration.v1"
TAG_DEVICE_REVOCATION = "accord.device.revocation.v1"
TAG_MAP_HEAD = "accord.kt.map_head.v1"

# Lawful access (docs/lawful-access.md): parsed by `parse_access_entry`.
ACCESS_TAGS = (
    TAG_APPROVER_SET,
    TAG_AGENCY_KEY,
    TAG_WARRANT_COMMITMENT,
    TAG_WARRANT_DISCLOSURE,
    TAG_RECORD_COUNT,
)

# Reserved for later parts of the pipeline (design: "One log for the whole pipeline").
RESERVED_TAGS = (
    "accord.detection.hash_list_version.v1",
    "accord.detection.threshold_crossing.v1",
    "accord.safety.statistics.v1",
)
# Parsed by `accord.protocols.review_counts` (docs/console.md).
TAG_REVIEW_DAILY_COUNTS = "accord.review.daily_counts.v1"
KNOWN_TAGS = (
    TAG_DEVICE_REGISTRATION,
    TAG_DEVICE_REVOCATION,
    TAG_MAP_HEAD,
    *ACCESS_TAGS,
    TAG_REVIEW_DAILY_COUNTS,
    *RESERVED_TAGS,
)


@dataclass(frozen=True, slots=True)
class DeviceRegistration:
    """A device's keys, as signed by the device (and approved by another device of the account)."""

    TYPE: ClassVar[str] = TAG_DEVICE_REGISTRATION

    account: str
    device_id: str
    ed25519: str
    curve25519: str
    signature: str
    approver_device_id: str | None
    approval_signature: str | None
    registered_at: int

    def fields(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "device_id": self.device_id,
            "ed25519": self.ed25519,
            "curve25519": self.curve25519,
            "signature": self.signature,
            "approver_device_id": self.approver_device_id,
            "approval_signature": self.approval_signature,
            "registered_at": self.registered_at,
        }

    def to_bytes(self) -> bytes:
        return canonical_json({"type": self.TYPE, **self.fields()})


@dataclass(frozen=True, slots=True)
class DeviceRevocation:
    """A device removed from its account, signed by a device of the account (itself or
    another one still in the account's set)."""

    TYPE: ClassVar[str] = TAG_DEVICE_REVOCATION

    account: str
    device_id: str
    revoker_device_id: str
    signature: str
    revoked_at: int

    def fields(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "device_id": self.device_id,
            "revoker_device_id": self.revoker_device_id,
            "signature": self.signature,
            "revoked_at": self.revoked_at,
        }

    def to_bytes(self) -> bytes:
        return canonical_json({"type": self.TYPE, **self.fields()})


@dataclass(frozen=True, slots=True)
class MapHead:
    """The root of the key-transparency map after every entry before this one
    (docs/protocol/transparency.md §8, K5): the last leaf of every checkpoint the log signs."""

    TYPE: ClassVar[str] = TAG_MAP_HEAD

    map_root: str  # base64 of the prefix tree's root value
    accounts: int
    timestamp: int  # milliseconds since the epoch, the server's clock

    def fields(self) -> dict[str, Any]:
        return {"map_root": self.map_root, "accounts": self.accounts, "timestamp": self.timestamp}

    def to_bytes(self) -> bytes:
        return canonical_json({"type": self.TYPE, **self.fields()})


@dataclass(frozen=True, slots=True)
class OtherEntry:
    """An entry of a type this module does not parse (reserved or from a newer version)."""

    type: str


LogEntry: TypeAlias = (
    "DeviceRegistration | DeviceRevocation | MapHead | AccessLogEntry | OtherEntry"
)


def _str(obj: dict[str, Any], key: str, *, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidInput(f"log entry field {key} is malformed")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise InvalidInput(f"log entry field {key} is malformed")
    return value


def entry_type(data: bytes) -> str:
    """The type tag of an encoded entry (InvalidInput if it has none)."""
    return _load(data)[0]


def _load(data: bytes) -> tuple[str, dict[str, Any]]:
    if len(data) > MAX_ENTRY_BYTES:
        raise InvalidInput("log entry too large")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise InvalidInput("log entry is not JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise InvalidInput("log entry has no type")
    return obj["type"], obj


def parse_entry(data: bytes) -> LogEntry:
    """Parse an entry; only the canonical encoding of a known type's fields is accepted."""
    tag, obj = _load(data)
    entry: LogEntry
    if tag == TAG_DEVICE_REGISTRATION:
        entry = DeviceRegistration(
            account=_str(obj, "account"),
            device_id=_str(obj, "device_id"),
            ed25519=_str(obj, "ed25519"),
            curve25519=_str(obj, "curve25519"),
            signature=_str(obj, "signature"),
            approver_device_id=_str(obj, "approver_device_id", optional=True),
            approval_signature=_str(obj, "approval_signature", optional=True),
            registered_at=_int(obj, "registered_at"),
        )
    elif tag == TAG_DEVICE_REVOCATION:
        entry = DeviceRevocation(
            account=_str(obj, "account"),
            device_id=_str(obj, "device_id"),
            revoker_device_id=_str(obj, "revoker_device_id"),
            signature=_str(obj, "signature"),
            revoked_at=_int(obj, "revoked_at"),
        )
    elif tag == TAG_MAP_HEAD:
        entry = MapHead(
            map_root=_str(obj, "map_root"),
            accounts=_int(obj, "accounts"),
            timestamp=_int(obj, "timestamp"),
        )
    elif tag.startswith(ACCESS_TAG_PREFIX):
        from accord.protocols.access.log_entries import parse_access_entry

        return parse_access_entry(data)  # canonical form and fields are checked there
    else:
        return OtherEntry(type=tag[:128])
    if entry.to_bytes() != data:
        raise InvalidInput("log entry is not in canonical form")
    return entry

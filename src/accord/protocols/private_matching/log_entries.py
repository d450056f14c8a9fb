"""Private-matching entries of the transparency log: one canonical byte encoding each.

Every entry is ``canonical_json({"type": <tag>, ...fields})``, and `parse_matching_entry`
accepts only that exact encoding of a known tag with exactly its fields, so an entry's bytes
(and its Merkle leaf hash) determine its meaning.

- ``accord.detection.hash_list_version.v1`` (`HashListVersion`): a published blinded table,
  its SHA-256 digest and the bank versions it was built from. Clients accept a table only if its
  digest is in such an entry, proven included in a checkpoint they verified, so every client
  that accepts a table version accepts the same bytes. A version built from the previous one
  also names the delta that turns the previous table into it (`TableDeltaRef`: the base table's
  digest and the delta file's SHA-256); the field is absent otherwise.
- ``accord.detection.threshold_crossing.v1`` (`ThresholdCrossing`): one account's images crossed
  the threshold in one key epoch. It carries no account, no image and no hash: only the hour it
  happened and a hiding commitment (SHA-256 of a label and 32 random bytes the server keeps), so
  anyone can count crossings, and the commitment can later be opened to an oversight body.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from accord.errors import InvalidInput
from accord.primitives.encoding import canonical_json

TAG_HASH_LIST_VERSION = "accord.detection.hash_list_version.v1"
TAG_THRESHOLD_CROSSING = "accord.detection.threshold_crossing.v1"
MATCHING_TAGS = (TAG_HASH_LIST_VERSION, TAG_THRESHOLD_CROSSING)

MAX_BANKS_PER_TABLE = 64
HOUR_MS = 3_600_000
CROSSING_NONCE_BYTES = 32
_MAX_ENTRY_BYTES = 16 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_BANK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_COMMITMENT_LABEL = b"accord-pm-v1 threshold crossing "


@dataclass(frozen=True, slots=True)
class BankVersionRef:
    """A bank as it was when a table was built: its name and canonical version."""

    name: str
    version: str

    def __post_init__(self) -> None:
        if not _BANK_NAME.match(self.name) or not _HEX64.match(self.version):
            raise InvalidInput("malformed bank reference")

    def to_obj(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


@dataclass(frozen=True, slots=True)
class TableDeltaRef:
    """The delta a table version was built as: from which table, and the delta file's SHA-256."""

    base_digest: str  # lower-case hex
    delta_digest: str  # lower-case hex

    def __post_init__(self) -> None:
        if not _HEX64.match(self.base_digest) or not _HEX64.match(self.delta_digest):
            raise InvalidInput("a delta reference is two 64-hex-digit digests")

    def to_obj(self) -> dict[str, str]:
        return {"base_digest": self.base_digest, "delta_digest": self.delta_digest}


@dataclass(frozen=True, slots=True)
class HashListVersion:
    """A blinded table the server published: what the log promises every client receives."""

    TYPE: ClassVar[str] = TAG_HASH_LIST_VERSION

    table_version: int
    table_digest: str  # SHA-256 of the table file, lower-case hex
    banks: tuple[BankVersionRef, ...]
    published_at: int
    delta: TableDeltaRef | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.table_version < 2**31:
            raise InvalidInput("table version out of range")
        if not _HEX64.match(self.table_digest):
            raise InvalidInput("a table digest is 64 lower-case hex digits")
        if not 1 <= len(self.banks) <= MAX_BANKS_PER_TABLE:
            raise InvalidInput(f"a table is built from 1..{MAX_BANKS_PER_TABLE} banks")
        if len({b.name for b in self.banks}) != len(self.banks):
            raise InvalidInput("a bank is named twice")
        if not 0 <= self.published_at < 2**53:
            raise InvalidInput("publication time out of range")
        if self.delta is not None and self.delta.base_digest == self.table_digest:
            raise InvalidInput("a delta leads from another table")

    @property
    def digest_bytes(self) -> bytes:
        return bytes.fromhex(self.table_digest)

    def to_bytes(self) -> bytes:
        obj: dict[str, Any] = {
            "type": self.TYPE,
            "table_version": self.table_version,
            "table_digest": self.table_digest,
            "banks": [b.to_obj() for b in self.banks],
            "published_at": self.published_at,
        }
        if self.delta is not None:
            obj["delta"] = self.delta.to_obj()
        return canonical_json(obj)


def crossing_commitment(nonce: bytes) -> str:
    """The hiding commitment a crossing entry carries (hex)."""
    if len(nonce) != CROSSING_NONCE_BYTES:
        raise InvalidInput("a crossing nonce is 32 bytes")
    return hashlib.sha256(_COMMITMENT_LABEL + nonce).hexdigest()


@dataclass(frozen=True, slots=True)
class ThresholdCrossing:
    """One threshold crossing, counted; no account, image or hash."""

    TYPE: ClassVar[str] = TAG_THRESHOLD_CROSSING

    hour: int  # start of the hour of the crossing, ms since the epoch
    commitment: str

    def __post_init__(self) -> None:
        if not 0 <= self.hour < 2**53 or self.hour % HOUR_MS:
            raise InvalidInput("a crossing hour is a whole hour in ms")
        if not _HEX64.match(self.commitment):
            raise InvalidInput("a crossing commitment is 64 lower-case hex digits")

    @classmethod
    def at(cls, when_ms: int, nonce: bytes) -> ThresholdCrossing:
        return cls(hour=when_ms - when_ms % HOUR_MS, commitment=crossing_commitment(nonce))

    def to_bytes(self) -> bytes:
        return canonical_json({"type": self.TYPE, "hour": self.hour, "commitment": self.commitment})


MatchingEntry = HashListVersion | ThresholdCrossing


def _field(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidInput(f"log entry field {key} is malformed")
    return value


def parse_matching_entry(data: bytes) -> MatchingEntry:
    """Parse a private-matching entry; anything but the canonical encoding of one is refused."""
    if len(data) > _MAX_ENTRY_BYTES:
        raise InvalidInput("log entry too large")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise InvalidInput("log entry is not JSON") from None
    if not isinstance(obj, dict):
        raise InvalidInput("log entry is not an object")
    tag = obj.get("type")
    entry: MatchingEntry
    if tag == TAG_HASH_LIST_VERSION:
        banks = _field(obj, "banks", list)
        if len(banks) > MAX_BANKS_PER_TABLE or not all(isinstance(b, dict) for b in banks):
            raise InvalidInput("log entry field banks is malformed")
        delta = None
        if "delta" in obj:
            ref = _field(obj, "delta", dict)
            delta = TableDeltaRef(
                base_digest=_field(ref, "base_digest", str),
                delta_digest=_field(ref, "delta_digest", str),
            )
        entry = HashListVersion(
            table_version=_field(obj, "table_version", int),
            table_digest=_field(obj, "table_digest", str),
            banks=tuple(
                BankVersionRef(name=_field(b, "name", str), version=_field(b, "version", str))
                for b in banks
            ),
            published_at=_field(obj, "published_at", int),
            delta=delta,
        )
    elif tag == TAG_THRESHOLD_CROSSING:
        entry = ThresholdCrossing(
            hour=_field(obj, "hour", int), commitment=_field(obj, "commitment", str)
        )
    else:
        raise InvalidInput("not a private-matching log entry")
    if entry.to_bytes() != data:
        raise InvalidInput("log entry is not in canonical form")
    return entry

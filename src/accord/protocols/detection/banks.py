"""Banks: named lists of hashes, their entries and their version.

A bank entry has a signal type, the hash, where it came from (`source`), a label (for example
the industry classification A1/A2/B1/B2, or a GIFCT label), an enabled flag, and a `variant`
("original", or for extra hashes derived from a banked image: "trim", "crop-0.8"...).

A bank's *version* is a SHA-256 digest of its content in one canonical encoding (below), so two
parties holding the same bank compute the same version; it is what later parts of the system
write into the transparency log.

Canonical encoding (UTF-8), hashed with SHA-256, version = lowercase hex digest::

    "accord-bank-v1\\n"
    "threshold=<decimal>\\n"
    one line per entry, lines sorted bytewise:
    "<signal_type>\\t<hash text>\\t<variant>\\t<label>\\t<source>\\t<0|1 enabled>\\n"
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from accord.errors import InvalidInput
from accord.protocols.detection.signals import (
    SIGNAL_TYPES,
    AnyHash,
    parse_hash,
    signal_type_named,
    signal_type_of,
)

BANK_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
BANK_LABEL_MAX_CHARS = 128
BANK_SOURCE_MAX_CHARS = 256
BANK_VARIANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9._/-]{0,31}")
BANK_VERSION_DOMAIN = "accord-bank-v1"
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def validate_bank_name(name: str) -> str:
    if not BANK_NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            "a bank name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def validate_threshold(signal_type: str, threshold: int) -> int:
    limit = SIGNAL_TYPES[signal_type_named(signal_type)].max_threshold
    if not 0 <= threshold <= max(limit, 0):
        raise InvalidInput(f"a {signal_type} threshold is between 0 and {limit}")
    return threshold


def _clean_text(value: str, limit: int, what: str) -> str:
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"a {what} is at most {limit} characters")
    if _FORBIDDEN_CHARS.search(value):
        raise InvalidInput(f"a {what} may not contain control characters")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class BankEntry:
    """One hash in a bank. `entry_id` is assigned by the store."""

    signal_type: str
    hash: AnyHash
    source: str = ""
    label: str = ""
    enabled: bool = True
    variant: str = "original"
    entry_id: int | None = None

    def __post_init__(self) -> None:
        canonical = signal_type_named(self.signal_type)
        if canonical != signal_type_of(self.hash):
            raise InvalidInput("hash does not match its signal type")
        object.__setattr__(self, "signal_type", canonical)
        object.__setattr__(self, "label", _clean_text(self.label, BANK_LABEL_MAX_CHARS, "label"))
        object.__setattr__(
            self, "source", _clean_text(self.source, BANK_SOURCE_MAX_CHARS, "source")
        )
        if not BANK_VARIANT_PATTERN.fullmatch(self.variant):
            raise InvalidInput("malformed entry variant")

    @classmethod
    def parse(
        cls,
        signal_type: str,
        hash_text: str,
        *,
        source: str = "",
        label: str = "",
        enabled: bool = True,
        variant: str = "original",
    ) -> BankEntry:
        return cls(
            signal_type=signal_type_named(signal_type),
            hash=parse_hash(signal_type, hash_text),
            source=source,
            label=label,
            enabled=enabled,
            variant=variant,
        )

    @property
    def hash_text(self) -> str:
        return self.hash.hex()

    def canonical_line(self) -> bytes:
        fields = (
            self.signal_type,
            self.hash_text,
            self.variant,
            self.label,
            self.source,
            "1" if self.enabled else "0",
        )
        return ("\t".join(fields) + "\n").encode("utf-8")

    def with_id(self, entry_id: int) -> BankEntry:
        return replace(self, entry_id=entry_id)

    def __repr__(self) -> str:
        return f"BankEntry(id={self.entry_id}, {self.signal_type}, variant={self.variant})"


@dataclass(frozen=True, slots=True, kw_only=True)
class BankInfo:
    """A bank's settings and summary (`counts_by_type` is None where the store does not say)."""

    name: str
    threshold: int
    version: str
    entry_count: int = 0
    enabled_count: int = 0
    counts_by_type: dict[str, int] | None = field(default_factory=dict)


class BankVersion:
    """Incremental computation of the canonical version over sorted canonical lines."""

    def __init__(self, threshold: int) -> None:
        self._digest = hashlib.sha256()
        self._digest.update(f"{BANK_VERSION_DOMAIN}\nthreshold={int(threshold)}\n".encode())
        self._last: bytes | None = None

    def update_sorted(self, line: bytes) -> None:
        """Feed canonical lines in bytewise sorted order (checked)."""
        if self._last is not None and line < self._last:
            raise InvalidInput("canonical lines must be fed in sorted order")
        self._last = line
        self._digest.update(line)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def compute_bank_version(threshold: int, entries: Iterable[BankEntry]) -> str:
    """The version of a bank holding `entries` (any order) with `threshold`."""
    version = BankVersion(threshold)
    for line in sorted(e.canonical_line() for e in entries):
        version.update_sorted(line)
    return version.hexdigest()
